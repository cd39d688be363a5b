"""Secrets at rest, and secret references.

- `Cipher`: AES-256-GCM under the master keys (services/common/master_keys.py: `PODIUM_MASTER_KEY`, or the
  0600 key file `podium up` creates). Tokens carry a key id, `pdm1.<key id>.<base64url(nonce | ciphertext)>`,
  so a keyring with rotated keys can still open old tokens, and `reseal` moves them to the active key.
- `seal_plaintext` / `public_view`: a spec's `*_plaintext` fields are stored only as `*_ciphertext`, and
  neither ever leaves in an answer (GET shows the `{{secrets/scope/key}}` reference, or nothing, as Databricks).
- `SecretResolver`: what the router asks for `{{secrets/scope/key}}` (services/router/backends.py
  ControlPlaneSecrets: the secrets given to the router at start, then the control plane's encrypted secrets
  store behind the Databricks /api/2.0/secrets/* calls).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.common.errors import PodiumError

SECRET_REFERENCE = re.compile(r"^\{\{\s*secrets/([A-Za-z0-9_.@-]+)/([A-Za-z0-9_.@-]+)\s*\}\}$")
PLAINTEXT_SUFFIX, CIPHERTEXT_SUFFIX = "_plaintext", "_ciphertext"
_TOKEN_VERSION = "pdm1"
_NONCE_BYTES = 12


class SecretError(PodiumError):
    """A secret could not be opened or found; the message never holds secret material."""


class Cipher:
    """AES-256-GCM with a keyring: encrypts under the current key, decrypts under any key it holds."""

    def __init__(self, keys: Mapping[str, bytes], current_key_id: str):
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._current = current_key_id

    @classmethod
    def from_key(cls, key: bytes) -> "Cipher":
        if len(key) != 32:
            raise SecretError("the master key must be 32 bytes (AES-256)")
        key_id = key_id_of(key)
        return cls({key_id: key}, key_id)

    @property
    def current_key_id(self) -> str:
        return self._current

    def encrypt(self, plaintext: bytes, context: bytes = b"") -> str:
        """A token that decrypt() opens only with the same `context` (GCM associated data)."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self._current].encrypt(nonce, plaintext, context)
        return f"{_TOKEN_VERSION}.{self._current}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, context: bytes = b"") -> bytes:
        try:
            version, key_id, payload = token.split(".", 2)
            raw = base64.urlsafe_b64decode(payload)
        except (ValueError, binascii.Error):
            raise SecretError("not a Podium ciphertext") from None
        aead = self._keys.get(key_id)
        if version != _TOKEN_VERSION or aead is None:
            raise SecretError(f"no master key with id '{key_id}' to open this ciphertext")
        try:
            return aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context)
        except InvalidTag:
            raise SecretError("ciphertext does not open under the master key (tampered, or another key)") from None


def key_id_of(key: bytes) -> str:
    return hashlib.sha256(b"podium-key-id" + key).hexdigest()[:8]


# ---- sealing spec fields ----

# The secret fields of external-model configs (services/control_plane/spec_external.py `_secret_pair`): only
# these are sealed, and nothing under `environment_vars`, whose names users choose and the model must see as given.
SEALED_FIELDS = frozenset({"openai_api_key", "anthropic_api_key", "token", "value", "microsoft_entra_client_secret",
                           "aws_access_key_id", "aws_secret_access_key", "private_key", "cohere_api_key",
                           "databricks_api_token"})
USER_NAMED = "environment_vars"


def seal_plaintext(value: Any, cipher: Cipher | None) -> Any:
    """A copy of `value` where every `<x>_plaintext` secret field (SEALED_FIELDS) became `<x>_ciphertext`,
    encrypted; `environment_vars` are left as given."""
    if isinstance(value, dict):
        out = {}
        for name, item in value.items():
            field = name.removesuffix(PLAINTEXT_SUFFIX)
            if name.endswith(PLAINTEXT_SUFFIX) and field in SEALED_FIELDS and isinstance(item, str):
                if cipher is None:
                    raise SecretError("this control plane has no master key, so it cannot store plaintext secrets")
                out[field + CIPHERTEXT_SUFFIX] = cipher.encrypt(item.encode(), field.encode())
            else:
                out[name] = item if name == USER_NAMED else seal_plaintext(item, cipher)
        return out
    if isinstance(value, list):
        return [seal_plaintext(item, cipher) for item in value]
    return value


def reseal(value: Any, cipher: Cipher) -> Any:
    """A copy where every `<x>_ciphertext` not sealed under the active key is sealed again under it (after a
    key rotation); the same object when nothing needed it."""
    if isinstance(value, dict):
        out, changed = {}, False
        for name, item in value.items():
            if name == USER_NAMED:
                out[name] = item
            elif name.endswith(CIPHERTEXT_SUFFIX) and isinstance(item, str) and \
                    item.split(".", 2)[1:2] != [cipher.current_key_id]:
                field = name.removesuffix(CIPHERTEXT_SUFFIX)
                out[name] = cipher.encrypt(cipher.decrypt(item, field.encode()), field.encode())
                changed = True
            else:
                out[name] = reseal(item, cipher)
                changed = changed or out[name] is not item
        return out if changed else value
    if isinstance(value, list):
        items = [reseal(item, cipher) for item in value]
        return items if any(a is not b for a, b in zip(items, value)) else value
    return value


def public_view(value: Any) -> Any:
    """A copy without `*_plaintext` and `*_ciphertext` fields: what answers may show."""
    if isinstance(value, dict):
        return {k: v if k == USER_NAMED else public_view(v) for k, v in value.items()
                if not (k.endswith(PLAINTEXT_SUFFIX) or k.endswith(CIPHERTEXT_SUFFIX))}
    if isinstance(value, list):
        return [public_view(item) for item in value]
    return value


def open_ciphertext(cipher: Cipher, field: str, token: str) -> str:
    """The plaintext of a `<field>_ciphertext` value that seal_plaintext wrote."""
    return cipher.decrypt(token, field.encode()).decode()


# ---- secret references ----

def parse_reference(text: str) -> tuple[str, str] | None:
    """(scope, key) of a `{{secrets/scope/key}}` reference; None when text is not one."""
    match = SECRET_REFERENCE.fullmatch(text)
    return (match.group(1), match.group(2)) if match else None


class SecretResolver(Protocol):
    async def resolve(self, scope: str, key: str, endpoint: str) -> str:
        """The secret's value, for endpoint `endpoint`'s provider calls; raises SecretError when the scope or
        key does not exist."""
        ...


