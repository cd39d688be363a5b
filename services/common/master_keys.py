"""The master keys: where they come from, with ids, so every ciphertext names the key that sealed it.

One source for every service that seals or opens data at rest (the control plane's secrets store and spec
credentials, the router's provider keys and inference tables): `PODIUM_MASTER_KEY` (`<base64 32 bytes>`,
or `kid:<base64>,kid2:<base64>` with the active key first) or the key file (default
`DATA_DIR/keys/master-key.json`: `{"active": kid, "keys": {kid: base64}}`, mode 0600 in a 0700
directory), which `podium up` creates and `podium keys rotate` extends with a new active key. Old keys stay,
so whatever they sealed still opens.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.common.secret_box import Cipher, SecretError

KEY_BYTES = 32


class KeyUnavailable(SecretError):
    """A key is missing or malformed (INTERNAL_ERROR); the message names the key id, never key material."""


def new_key_id() -> str:
    return time.strftime("k%Y%m%d%H%M%S", time.gmtime()) + secrets.token_hex(2)


def parse_master_key(value: str) -> tuple[dict[str, bytes], str]:
    """Keys and the active key id from PODIUM_MASTER_KEY."""
    keys: dict[str, bytes] = {}
    active = ""
    for part in (p.strip() for p in value.split(",") if p.strip()):
        kid, _, b64 = part.rpartition(":")  # base64 never holds ':'
        key = _decode_key(b64)
        kid = kid or "env-" + hashlib.sha256(key).hexdigest()[:8]  # stable id for a bare key
        keys[kid] = key
        active = active or kid
    if not keys:
        raise KeyUnavailable("PODIUM_MASTER_KEY holds no key")
    return keys, active


def _decode_key(b64: str) -> bytes:
    try:
        key = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
    except ValueError:
        raise KeyUnavailable("a master key is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise KeyUnavailable(f"a master key must be {KEY_BYTES} bytes (AES-256), not {len(key)}")
    return key


def read_key_file(path: Path) -> tuple[dict[str, bytes], str]:
    if path.exists() and path.stat().st_mode & 0o077:
        raise KeyUnavailable(f"{path} is readable by other users: chmod 600 it")
    try:
        content = json.loads(path.read_text())
        keys = {kid: _decode_key(b64) for kid, b64 in content["keys"].items()}
        active = content["active"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KeyUnavailable(f"cannot read the key file {path}: {type(exc).__name__}") from None
    if active not in keys:
        raise KeyUnavailable(f"the key file {path} names active key {active!r}, which it does not hold")
    return keys, active


def write_key_file(path: Path, keys: dict[str, bytes], active: str) -> None:
    """Atomically, mode 0600, in a 0700 directory."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    content = {"active": active, "keys": {kid: base64.b64encode(key).decode() for kid, key in keys.items()}}
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(content, f, indent=2)
    os.replace(tmp, path)


def ensure_key_file(path: Path) -> bool:
    """Creates a key file with one fresh key unless it exists; True when it created one.

    Several processes may start at once: the file appears complete or not at all (written aside, then
    hard-linked into place, which fails if another process won), so nobody ever reads half a key file.
    """
    if path.exists():
        return False
    kid = new_key_id()
    aside = path.with_name(f".{path.name}.{os.getpid()}")
    write_key_file(aside, {kid: AESGCM.generate_key(bit_length=256)}, kid)
    try:
        os.link(aside, path)
    except FileExistsError:
        return False
    finally:
        aside.unlink()
    return True


def add_key(path: Path) -> str:
    """Rotation step one: a new key becomes active; the old ones stay to decrypt what they sealed."""
    keys, _ = read_key_file(path)
    kid = new_key_id()
    while kid in keys:
        kid = new_key_id()
    keys[kid] = AESGCM.generate_key(bit_length=256)
    write_key_file(path, keys, kid)
    return kid


def load_keys(master_key: str, key_file: Path) -> tuple[dict[str, bytes], str]:
    """(keys by id, active id) from PODIUM_MASTER_KEY if set, else the key file (created if missing)."""
    if master_key:
        return parse_master_key(master_key)
    ensure_key_file(key_file)
    return read_key_file(key_file)


def load_cipher(master_key: str, key_file: Path) -> Cipher:
    """A Cipher over every master key, sealing under the active one."""
    return Cipher(*load_keys(master_key, key_file))
