"""The secrets store: Databricks secret scopes and secrets, encrypted at rest, never returned.

`POST /api/2.0/secrets/scopes/create|delete`, `GET /api/2.0/secrets/scopes/list`, `POST /api/2.0/secrets/put|
delete`, `GET /api/2.0/secrets/list` (shapes: databricks-sdk 0.162.0 `service/workspace.py`). Values are
AES-256-GCM ciphertexts bound to their scope and key; no call returns a value. Podium's own services
resolve `{{secrets/<scope>/<key>}}` references through `resolve` (e.g. external-model API keys).

Access is the scope's ACL (`/api/2.0/secrets/acls/put|get|list|delete`): READ < WRITE < MANAGE. The scope's
creator holds MANAGE, admins hold MANAGE on every scope, a group's entry reaches its (nested) members. READ
lists the scope and its keys and lets a spec reference them; WRITE puts and deletes secrets; MANAGE deletes
the scope and reads and changes its ACL. A scope the caller may not even read answers 404, as an unknown one.
Whoever writes an endpoint config needs READ on every scope it references (`require_references`), and
resolution checks it again: a value is handed out only while a live config referencing it was written by a
principal that still holds READ. References in a served entity's `environment_vars` must name a stored
secret when written, and resolve only per deployment (`resolve_environment`, as the scaler starts one of its
replicas); `resolve` hands out the others (external-model credentials, for the routers).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
from collections.abc import Callable, Iterable

from services.common.errors import InvalidParameter, MalformedRequest, PermissionDenied, ResourceDoesNotExist
from services.common.principals import GROUP, SERVICE_PRINCIPAL, USER, Principal
from services.control_plane.crypto import KeyRing
from services.control_plane.identity import IdentityService
from services.control_plane.identity_store import IdentityStore

SECRET_REFERENCE = re.compile(r"\{\{\s*secrets/([\w.@-]+)/([\w.@-]+)\s*\}\}")
_NAME = re.compile(r"^[\w.@-]{1,128}$")
MAX_SECRET_BYTES = 128 * 1024   # as Databricks
READ, WRITE, MANAGE = "READ", "WRITE", "MANAGE"
ACL_PERMISSIONS = (READ, WRITE, MANAGE)   # weakest first


def scope_permission(caller: Principal, owner_id: str, acl: Iterable[dict]) -> str | None:
    """The strongest permission the caller holds on a scope (pure): admins and the creator MANAGE it,
    others what its ACL grants them directly or through a group; None for no access."""
    if caller.is_service:
        return None
    if caller.is_admin or caller.id == owner_id:
        return MANAGE
    ids = {caller.id, *caller.group_ids}
    held = [ACL_PERMISSIONS.index(e["permission"]) for e in acl
            if e["principal_id"] in ids and e["permission"] in ACL_PERMISSIONS]
    return ACL_PERMISSIONS[max(held)] if held else None


def references_in(document: object) -> set[tuple[str, str]]:
    """Every (scope, key) a `{{secrets/scope/key}}` reference in any string of the document names."""
    if isinstance(document, str):
        return {(m.group(1), m.group(2)) for m in SECRET_REFERENCE.finditer(document)}
    if isinstance(document, dict):
        document = list(document.values())
    if isinstance(document, list):
        return set().union(*(references_in(v) for v in document))
    return set()


def environment_references(config: dict) -> list[tuple[str, str, str]]:
    """(variable, scope, key) of every reference in the config's served entities' `environment_vars`."""
    return sorted((name, scope, key) for entity in config.get("served_entities", ())
                  for name, value in (entity.get("environment_vars") or {}).items()
                  for scope, key in references_in(value))


def provider_references(config: dict) -> set[tuple[str, str]]:
    """The config's references outside `environment_vars`: those `resolve` may hand to a router."""
    entities = [{k: v for k, v in e.items() if k != "environment_vars"} for e in config.get("served_entities", ())]
    return references_in({**config, "served_entities": entities})


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
        # (writer id, config) of every live endpoint config: set by __main__ to the endpoint core's
        # `written_configs`, so `resolve` checks the writers' READ again. None: no check (cores in tests).
        self.written_configs: Callable[[], Iterable[tuple[str, str, dict]]] | None = None
        # (writer id, served entity) of each live config that runs a deployment: the endpoint core's
        # `deployment_entities`, set by __main__. None: no deployment resolves (cores in tests).
        self.deployment_entities: Callable[[str], list[tuple[str, dict]]] | None = None

    async def create_scope(self, token: str, body: object) -> dict:
        caller = await self._identity.authenticate_person(token)
        body = _object(body)
        scope = _name(body.get("scope"), "scope")
        if body.get("initial_manage_principal") not in (None, ""):
            raise InvalidParameter("initial_manage_principal is not supported: the creator and admins manage a scope")
        if body.get("scope_backend_type") not in (None, "DATABRICKS"):
            raise InvalidParameter("scope_backend_type must be DATABRICKS")
        await asyncio.to_thread(self._store.insert_scope, scope, caller.id, self._now_ms())
        await asyncio.to_thread(self._store.put_secret_acl, scope, caller.id, MANAGE)
        return {}

    async def list_scopes(self, token: str) -> dict:
        caller = await self._identity.authenticate_person(token)
        scopes, acls = await asyncio.to_thread(lambda: (self._store.scopes(), self._store.secret_acls()))
        return {"scopes": [{"name": s["name"], "backend_type": "DATABRICKS"} for s in scopes
                           if scope_permission(caller, s["owner_id"], [a for a in acls if a["scope"] == s["name"]])]}

    async def delete_scope(self, token: str, body: object) -> dict:
        caller = await self._identity.authenticate_person(token)
        scope = await self._require_scope(caller, _object(body).get("scope"), MANAGE)
        await asyncio.to_thread(self._store.delete_scope, scope)
        return {}

    async def put(self, token: str, body: object) -> dict:
        caller = await self._identity.authenticate_person(token)
        body = _object(body)
        scope = await self._require_scope(caller, body.get("scope"), WRITE)
        key = _name(body.get("key"), "key")
        value = _value(body)
        async with self._lock:
            await asyncio.to_thread(self._seal_and_store, scope, key, value)
        return {}

    async def delete(self, token: str, body: object) -> dict:
        caller = await self._identity.authenticate_person(token)
        body = _object(body)
        scope = await self._require_scope(caller, body.get("scope"), WRITE)
        key = _name(body.get("key"), "key")
        if not await asyncio.to_thread(self._store.delete_secret, scope, key):
            raise ResourceDoesNotExist(f"Secret {key} does not exist in scope {scope}")
        return {}

    async def list(self, token: str, query: dict[str, str]) -> dict:
        caller = await self._identity.authenticate_person(token)
        scope = await self._require_scope(caller, query.get("scope"), READ)
        return {"secrets": await asyncio.to_thread(self._store.secret_keys, scope)}

    async def get(self, token: str) -> dict:
        """`GET /api/2.0/secrets/get`: refused for everyone; values leave only through `resolve`."""
        await self._identity.authenticate_person(token)
        raise PermissionDenied("Podium never returns secret values through its API")

    async def resolve(self, token: str, texts: list[str], endpoint_name: str) -> list[str]:
        """Each text with its `{{secrets/scope/key}}` references replaced by the values (services only), for
        the provider calls of endpoint `endpoint_name`."""
        self._identity.require_service(token)
        if self.written_configs is not None:
            await self._require_live_reference(references_in(texts), endpoint_name)
        return await asyncio.to_thread(lambda: [self._resolve_text(t) for t in texts])

    async def resolve_environment(self, token: str, deployment_key: str) -> dict[str, str]:
        """The deployment's `environment_vars` with their references resolved (services only), while a live
        config holding it was written by a principal that still holds READ on each referenced scope."""
        self._identity.require_service(token)
        found = self.deployment_entities(deployment_key) if self.deployment_entities is not None else []
        if not found:
            raise ResourceDoesNotExist(f"No live served entity has deployment key '{deployment_key}'")
        environment = dict(found[0][1].get("environment_vars") or {})   # one key, one set of variables
        for scope in sorted({scope for scope, _ in references_in(environment)}):
            if not await self._any_holds({writer for writer, _ in found}, scope):
                raise PermissionDenied(f"No config of this served entity was written by a principal that still "
                                       f"holds READ on secret scope '{scope}'")
        return await asyncio.to_thread(lambda: {name: self._resolve_text(value)
                                                for name, value in environment.items()})

    # ---- ACLs: /api/2.0/secrets/acls/put|get|list|delete (MANAGE on the scope) ----

    async def put_acl(self, token: str, body: object) -> dict:
        caller = await self._identity.authenticate_person(token)
        body = _object(body)
        scope = await self._require_scope(caller, body.get("scope"), MANAGE)
        principal_id = self._principal_id(body.get("principal"))
        if body.get("permission") not in ACL_PERMISSIONS:
            raise InvalidParameter(f"permission must be one of {', '.join(ACL_PERMISSIONS)}")
        await asyncio.to_thread(self._store.put_secret_acl, scope, principal_id, body["permission"])
        return {}

    async def get_acl(self, token: str, query: dict[str, str]) -> dict:
        caller = await self._identity.authenticate_person(token)
        scope = await self._require_scope(caller, query.get("scope"), MANAGE)
        principal = query.get("principal")
        found = [a for a in await self._acl_items(scope) if a["principal"] == principal]
        if not found:
            raise ResourceDoesNotExist(f"Failed to get secret ACL for principal {principal} in scope {scope}")
        return found[0]

    async def list_acls(self, token: str, query: dict[str, str]) -> dict:
        caller = await self._identity.authenticate_person(token)
        scope = await self._require_scope(caller, query.get("scope"), MANAGE)
        return {"items": await self._acl_items(scope)}

    async def delete_acl(self, token: str, body: object) -> dict:
        caller = await self._identity.authenticate_person(token)
        body = _object(body)
        scope = await self._require_scope(caller, body.get("scope"), MANAGE)
        principal_id = self._principal_id(body.get("principal"))
        if not await asyncio.to_thread(self._store.delete_secret_acl, scope, principal_id):
            raise ResourceDoesNotExist(f"Failed to delete secret ACL for principal {body['principal']} in scope {scope}")
        return {}

    # ---- who may reference a scope in an endpoint config ----

    async def require_references(self, writer: Principal, config: dict) -> None:
        """PermissionDenied naming the first scope the config references that the writer may not READ."""
        for scope in sorted({scope for scope, _ in references_in(config)}):
            if not await self._holds(writer, scope, READ):
                raise PermissionDenied(f"User does not have READ permission on secret scope '{scope}', which the "
                                       "config references")
        # A model's variables are resolved when each replica starts: one naming no secret could never start.
        # (Provider keys may be put after the config: each call resolves them.)
        for name, scope, key in environment_references(config):
            if key not in {s["key"] for s in await asyncio.to_thread(self._store.secret_keys, scope)}:
                raise InvalidParameter(f"environment_vars.{name} references secret {{{{secrets/{scope}/{key}}}}}, "
                                       f"which does not exist")

    async def _require_live_reference(self, references: set[tuple[str, str]], endpoint_name: str) -> None:
        """Each reference must come from a live config of the endpoint, outside its `environment_vars`, whose
        writer still holds READ on its scope: another endpoint's writer's READ lends it nothing."""
        written = [(w, config) for name, w, config in self.written_configs() if name == endpoint_name]
        for scope, key in sorted(references):
            if not await self._any_holds({w for w, config in written if (scope, key) in provider_references(config)},
                                         scope):
                raise PermissionDenied(f"No config of endpoint '{endpoint_name}' referencing secret scope '{scope}' "
                                       "was written by a principal that holds READ on it")

    async def _any_holds(self, writer_ids: set[str], scope: str) -> bool:
        """Whether any of these principals (config writers) holds READ on the scope now."""
        for writer_id in sorted(writer_ids):
            try:
                if await self._holds(self._identity.principal(writer_id), scope, READ):
                    return True
            except (KeyError, ValueError):   # deleted or deactivated since: holds nothing
                continue
        return False

    async def _holds(self, caller: Principal, scope: str, needed: str) -> bool:
        scopes, acl = await asyncio.to_thread(lambda: (self._store.scopes(), self._store.secret_acls(scope)))
        found = next((s for s in scopes if s["name"] == scope), None)
        if found is None:
            return caller.is_admin   # a scope not created yet: only an admin may reference it
        held = scope_permission(caller, found["owner_id"], acl)
        return held is not None and ACL_PERMISSIONS.index(held) >= ACL_PERMISSIONS.index(needed)

    async def _acl_items(self, scope: str) -> list[dict]:
        items = []
        for entry in await asyncio.to_thread(self._store.secret_acls, scope):
            record = self._identity.principals.get(entry["principal_id"])
            if record is not None:
                items.append({"principal": record["name"], "permission": entry["permission"]})
        return sorted(items, key=lambda item: item["principal"])

    def _principal_id(self, name: object) -> str:
        """A user's name, a service principal's application id or a group's display name."""
        if not isinstance(name, str) or not name:
            raise InvalidParameter("Missing required field: principal")
        for kind in (USER, SERVICE_PRINCIPAL, GROUP):
            found = self._identity.find(kind, name)
            if found is not None:
                return found
        raise ResourceDoesNotExist(f"Principal {name} does not exist")

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

    async def _require_scope(self, caller: Principal, scope: object, needed: str) -> str:
        """The scope's name once the caller holds `needed` on it: 404 when it may not even read it (as for
        an unknown scope), 403 when it may read it but needs more."""
        scope = _name(scope, "scope")
        scopes, acl = await asyncio.to_thread(lambda: (self._store.scopes(), self._store.secret_acls(scope)))
        found = next((s for s in scopes if s["name"] == scope), None)
        held = None if found is None else scope_permission(caller, found["owner_id"], acl)
        if held is None:
            raise ResourceDoesNotExist(f"Scope {scope} does not exist!")  # a scope one may not use is not shown
        if ACL_PERMISSIONS.index(held) < ACL_PERMISSIONS.index(needed):
            raise PermissionDenied(f"User does not have {needed} permission on scope {scope}")
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
    if not _NAME.fullmatch(value):
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
