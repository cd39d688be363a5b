"""Encryption at rest in the control plane: AES-256-GCM under the master keys (services/common/master_keys.py).

A ciphertext names its key id: `pk1.<kid>.<base64 nonce|ct|tag>`;
the context string (e.g. `secret:scope/key`) is bound as associated data, so a ciphertext moved to
another row does not decrypt.
"""

from __future__ import annotations

import base64
import secrets
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.common.master_keys import (  # noqa: F401 - re-exported for the control plane's callers
    KeyUnavailable, add_key, ensure_key_file, load_keys, parse_master_key, read_key_file, write_key_file,
)

PREFIX = "pk1"
NONCE_BYTES = 12


class KeyRing:
    """The master keys; encrypts under the active one and decrypts under whichever a ciphertext names.

    A key-file ring re-reads its file when it changed on disk (`podium keys rotate` while the stack runs),
    so a rotation is picked up without a restart. File reads are blocking: call from a worker thread.
    """

    def __init__(self, keys: dict[str, bytes], active: str, key_file: Path | None = None):
        if active not in keys:
            raise KeyUnavailable(f"active key {active!r} is not in the key ring")
        self._keys = dict(keys)
        self._active = active
        self._key_file = key_file
        self._mtime = key_file.stat().st_mtime_ns if key_file else 0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, master_key: str, key_file: Path) -> "KeyRing":
        keys, active = load_keys(master_key, key_file)
        return cls(keys, active, None if master_key else key_file)

    @property
    def active_key_id(self) -> str:
        return self._active

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def refresh(self) -> None:
        """Re-reads the key file if it changed since it was last read."""
        if self._key_file is None:
            return
        mtime = self._key_file.stat().st_mtime_ns
        if mtime == self._mtime:
            return
        keys, active = read_key_file(self._key_file)
        with self._lock:
            self._keys.update(keys)  # never forget a key this process may still need to decrypt
            self._active, self._mtime = active, mtime

    def encrypt(self, plaintext: bytes, context: str) -> str:
        kid = self._active
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(self._keys[kid]).encrypt(nonce, plaintext, context.encode())
        return f"{PREFIX}.{kid}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, blob: str, context: str) -> bytes:
        kid = self.key_id_of(blob)
        if kid not in self._keys:
            self.refresh()
        key = self._keys.get(kid)
        if key is None:
            raise KeyUnavailable(f"the master key {kid!r} that encrypted this value is not available")
        raw = base64.urlsafe_b64decode(blob.split(".", 2)[2])
        try:
            return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except InvalidTag:
            raise KeyUnavailable(f"a value encrypted under key {kid!r} failed authentication") from None

    @staticmethod
    def key_id_of(blob: str) -> str:
        parts = blob.split(".", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            raise KeyUnavailable("not a Podium ciphertext")
        return parts[1]

    def derive(self, purpose: str, kid: str | None = None) -> tuple[str, bytes]:
        """A 32-byte key for one purpose (e.g. signing Podium's JWTs), derived from a master key by HKDF."""
        kid = kid or self._active
        if kid not in self._keys:
            raise KeyUnavailable(f"unknown key id {kid!r}")
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"podium:{purpose}".encode())
        return kid, hkdf.derive(self._keys[kid])
