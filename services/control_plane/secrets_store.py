"""The secrets store: Databricks secret scopes and secrets, encrypted at rest, never returned.

`POST /api/2.0/secrets/scopes/create|delete`, `GET /api/2.0/secrets/scopes/list`, `POST /api/2.0/secrets/put|
delete`, `GET /api/2.0/secrets/list` (shapes: databricks-sdk 0.162.0 `service/workspace.py`). Values are
AES-256-GCM ciphertexts bound to their scope and key; no call returns a value. Podium's own services
resolve `{{secrets/<scope>/<key>}}` references through `resolve` (e.g. external-model API keys).
A scope belongs to the principal that created it; admins see and manage every scope.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time

from services.common.errors import InvalidParameter, MalformedRequest, PermissionDenied, ResourceDoesNotExist
from services.common.principals import Principal
from services.control_plane.crypto import KeyRing
from services.control_plane.identity import IdentityService
from services.control_plane.identity_store import IdentityStore

SECRET_REFERENCE = re.compile(r"\{\{\s*secrets/([\w.@-]+)/([\w.@-]+)\s*\}\}")
_NAME = re.compile(r"^[\w.@-]{1,128}$")
MAX_SECRET_BYTES = 128 * 1024   # as Databricks


def secret_context(scope: str, key: str) -> str:
    """The associated data a secret's ciphertext is bound to: it decrypts only as this scope/key."""
    return f"secret:{scope}/{key}"


class SecretsService:
    def __init__(self, store: IdentityStore, identity: IdentityService, keyring: KeyRing, clock=time.time):
        self._store = store
        self._identity = identity
        self._keyring = keyring
        self._clock = clock
        self._lock = asyncio.Lock()

    async def create_scope(self, token: str, body: object) -> dict:
        caller = await self._identity.authenticate_person(token)
        body = _object(body)
        scope = _name(body.get("scope"), "scope")
        if body.get("initial_manage_principal") not in (None, ""):
            raise InvalidParameter("initial_manage_principal is not supported: the creator and admins manage a scope")
        if body.get("scope_backend_type") not in (None, "DATABRICKS"):
            raise InvalidParameter("scope_backend_type must be DATABRICKS")
        await asyncio.to_thread(self._store.insert_scope, scope, caller.id, self._now_ms())
        return {}

    async def list_scopes(self, token: str) -> dict:
        caller = await self._identity.authenticate_person(token)
        scopes = await asyncio.to_thread(self._store.scopes)
        return {"scopes": [{"name": s["name"], "backend_type": "DATABRICKS"} for s in scopes
                           if caller.is_admin or s["owner_id"] == caller.id]}

    async def delete_scope(self, token: str, body: object) -> dict:
        caller = await self._identity.authenticate_person(token)
        scope = await self._require_scope(caller, _object(body).get("scope"))
        await asyncio.to_thread(self._store.delete_scope, scope)
        return {}

    async def put(self, token: str, body: object) -> dict:
        caller = await self._identity.authenticate_person(token)
        body = _object(body)
        scope = await self._require_scope(caller, body.get("scope"))
        key = _name(body.get("key"), "key")
        value = _value(body)
        async with self._lock:
            await asyncio.to_thread(self._seal_and_store, scope, key, value)
        return {}

    async def delete(self, token: str, body: object) -> dict:
        caller = await self._identity.authenticate_person(token)
        body = _object(body)
        scope = await self._require_scope(caller, body.get("scope"))
        key = _name(body.get("key"), "key")
        if not await asyncio.to_thread(self._store.delete_secret, scope, key):
            raise ResourceDoesNotExist(f"Secret {key} does not exist in scope {scope}")
        return {}

    async def list(self, token: str, query: dict[str, str]) -> dict:
        caller = await self._identity.authenticate_person(token)
        scope = await self._require_scope(caller, query.get("scope"))
        return {"secrets": await asyncio.to_thread(self._store.secret_keys, scope)}

    async def get(self, token: str) -> dict:
        """`GET /api/2.0/secrets/get`: refused for everyone; values leave only through `resolve`."""
        await self._identity.authenticate_person(token)
        raise PermissionDenied("Podium never returns secret values through its API")

    async def resolve(self, token: str, texts: list[str]) -> list[str]:
        """Each text with its `{{secrets/scope/key}}` references replaced by the values (services only)."""
        self._identity.require_service(token)
        return await asyncio.to_thread(lambda: [self._resolve_text(t) for t in texts])

    # ---- helpers (blocking ones run in a worker thread) ----

    def _seal_and_store(self, scope: str, key: str, value: bytes) -> None:
        self._keyring.refresh()  # encrypt under the active key, even right after `podium keys rotate`
        ciphertext = self._keyring.encrypt(value, secret_context(scope, key))
        self._store.put_secret(scope, key, ciphertext, self._now_ms())

    def _resolve_text(self, text: str) -> str:
        def value(match: re.Match) -> str:
            scope, key = match.group(1), match.group(2)
            ciphertext = self._store.secret_value(scope, key)
            if ciphertext is None:
                raise InvalidParameter(f"Secret reference {{{{secrets/{scope}/{key}}}}} names no stored secret")
            try:
                return self._keyring.decrypt(ciphertext, secret_context(scope, key)).decode()
            except UnicodeDecodeError:
                raise InvalidParameter(f"Secret {scope}/{key} holds bytes that are not UTF-8 text") from None
        return SECRET_REFERENCE.sub(value, text)

    async def _require_scope(self, caller: Principal, scope: object) -> str:
        scope = _name(scope, "scope")
        scopes = {s["name"]: s for s in await asyncio.to_thread(self._store.scopes)}
        found = scopes.get(scope)
        if found is None or not (caller.is_admin or found["owner_id"] == caller.id):
            raise ResourceDoesNotExist(f"Scope {scope} does not exist!")  # a scope one may not use is not shown
        return scope

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def reencrypt_secrets(store: IdentityStore, keyring: KeyRing) -> int:
    """Re-encrypts every secret not sealed under the active key (blocking); returns how many it changed."""
    changed = 0
    for scope, key, ciphertext in store.all_secret_values():
        if KeyRing.key_id_of(ciphertext) == keyring.active_key_id:
            continue
        context = secret_context(scope, key)
        fresh = keyring.encrypt(keyring.decrypt(ciphertext, context), context)
        changed += store.replace_secret_value(scope, key, ciphertext, fresh)
    return changed


def _object(body: object) -> dict:
    if not isinstance(body, dict):
        raise MalformedRequest("The request body must be a JSON object")
    return body


def _name(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidParameter(f"Missing required field: {field}")
    if not _NAME.match(value):
        raise InvalidParameter(f"{field} must be 1-128 letters, digits, '-', '_', '.' or '@'")
    return value


def _value(body: dict) -> bytes:
    """The secret from exactly one of string_value and bytes_value (base64); never echoed in errors."""
    has_string, has_bytes = body.get("string_value") is not None, body.get("bytes_value") is not None
    if has_string == has_bytes:
        raise InvalidParameter("Exactly one of string_value and bytes_value must be given")
    if has_string:
        if not isinstance(body["string_value"], str):
            raise InvalidParameter("string_value must be a string")
        value = body["string_value"].encode()
    else:
        try:
            value = base64.b64decode(str(body["bytes_value"]), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidParameter("bytes_value must be base64") from None
    if len(value) > MAX_SECRET_BYTES:
        raise InvalidParameter(f"A secret may hold at most {MAX_SECRET_BYTES} bytes")
    return value
