"""The control plane's identity core: users, service principals, groups, and who a credential belongs to.

The database is the source of truth and this process its only writer, so principals, memberships and
credential records are kept in memory (write-through): `authenticate` never queries the database.
Every failed authentication raises the same Unauthenticated error, whatever the reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from services.common.errors import AlreadyExists, InvalidParameter, PermissionDenied, ResourceDoesNotExist, Unauthenticated
from services.common.principals import (
    ADMINS_GROUP, GROUP, SERVICE, SERVICE_PRINCIPAL, USER, Principal, require_service_credential, require_unscoped,
)
from services.control_plane import credentials, scim
from services.control_plane.crypto import KeyRing, KeyUnavailable
from services.control_plane.identity_store import IdentityStore

log = logging.getLogger(__name__)

INVALID_CREDENTIAL = "Invalid access token."   # one message for every failure: nothing leaks about why
BOOTSTRAP_COMMENT = "created by podium up"
OAUTH_SIGNING_PURPOSE = "oauth-jwt"
PODIUM_SERVICE = Principal(id="0", name="podium-internal", kind=SERVICE)
REPLICA = "replica"   # the kind of a replica credential's record (tokens.py issues them)
REPLICA_CLAIM = "podium_replica"   # in an access token minted from one: its record's token id


@dataclass(frozen=True)
class AuthSettings:
    internal_token: str = ""            # Podium's own services present it; empty: none accepted
    issuer: str = "podium"              # `iss` of the JWTs Podium signs (HS256)
    jwks: str = ""                      # an identity provider's JWKS URL or file (RS256/ES256)
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwt_claim: str = "sub"              # the claim naming the Podium user (userName) or SP (applicationId)
    bootstrap_admin_token: str = ""     # `podium up`'s admin token, registered for user "admin"


class IdentityService:
    def __init__(self, store: IdentityStore, keyring: KeyRing, settings: AuthSettings, clock=time.time):
        self._store = store
        self._keyring = keyring
        self._settings = settings
        self._clock = clock
        self._jwks = credentials.JwksKeys(settings.jwks) if settings.jwks else None
        self.principals: dict[str, dict] = {}
        self._by_name: dict[tuple[str, str], str] = {}
        self.members: dict[str, set[str]] = {}
        self.credentials: dict[str, dict] = {}
        self.write_lock = asyncio.Lock()
        # Whether a deployment still runs (the endpoint core's, set by __main__): a replica credential is
        # valid only while its deployment is live. None: no replica credential is valid.
        self.is_live_deployment: Callable[[str], bool] | None = None

    async def start(self) -> None:
        principals, members, records = await asyncio.to_thread(self._store.load)
        for record in principals:
            self._index(record)
        for group_id, member_id in members:
            self.members.setdefault(group_id, set()).add(member_id)
        self.credentials = {r["token_id"]: r for r in records}
        if (GROUP, ADMINS_GROUP) not in self._by_name:
            await self._insert(GROUP, {"displayName": ADMINS_GROUP}, [])
        if self._settings.bootstrap_admin_token:
            await self._bootstrap_admin(self._settings.bootstrap_admin_token)
        log.info("loaded %d principals and %d credentials", len(self.principals), len(self.credentials))

    # ---- authentication ----

    async def authenticate(self, token: str) -> Principal:
        """The principal a bearer credential belongs to; Unauthenticated for anything else."""
        internal = self._settings.internal_token
        if token and internal and hmac.compare_digest(token.encode(), internal.encode()):
            return PODIUM_SERVICE
        try:
            if credentials.parse(token):
                return self._from_pat(token)
            if credentials.looks_like_jwt(token):
                return await self._from_jwt(token)
        except (jwt.PyJWTError, KeyUnavailable, KeyError, ValueError) as exc:
            log.debug("rejected a credential: %s", type(exc).__name__)
        raise Unauthenticated(INVALID_CREDENTIAL)

    async def authenticate_for_service(self, service_token: str, token: str) -> Principal:
        """Internal (the router's token cache): who `token` belongs to, asked by Podium's own service."""
        self.require_service(service_token)
        return await self.authenticate(token)

    def require_service(self, token: str) -> None:
        """Only Podium's own services (holding the internal token) pass."""
        require_service_credential(token, self._settings.internal_token)

    async def authenticate_person(self, token: str) -> Principal:
        """A user or service principal: Podium's internal services are granted nothing user-facing."""
        caller = await self.authenticate(token)
        if caller.is_service:
            raise PermissionDenied("Podium's internal credential cannot call this API")
        require_unscoped(caller)
        return caller

    async def require_admin(self, token: str, action: str) -> Principal:
        caller = await self.authenticate_person(token)
        if not caller.is_admin:
            raise PermissionDenied(f"Only workspace admins can {action}")
        return caller

    def _from_pat(self, token: str) -> Principal:
        prefix, token_id = credentials.parse(token)  # type: ignore[misc]
        record = self.credentials[token_id]
        if prefix != credentials.PAT_PREFIX or record["kind"] not in ("pat", REPLICA):
            raise ValueError("not a personal access token")
        if not credentials.matches(token, record["salt"], record["digest"]):
            raise ValueError("digest mismatch")
        expires_at = record["expiry_time"] / 1000 if record["expiry_time"] >= 0 else None
        if expires_at is not None and expires_at <= self._clock():
            raise ValueError("expired")
        if record["kind"] == REPLICA:   # one issued as a bearer token (before client credentials)
            return self.replica_principal(record, expires_at)
        return self.principal(record["owner_id"], expires_at)

    def replica_principal(self, record: dict, expires_at: float | None = None) -> Principal:
        """A replica credential's: the config's writer confined to the endpoints the model declared, while its
        deployment is live (KeyError / ValueError otherwise)."""
        scope = json.loads(record["comment"])
        if self.is_live_deployment is None or not self.is_live_deployment(scope["deployment"]):
            raise ValueError("its deployment is gone")
        return dataclasses.replace(self.principal(record["owner_id"], expires_at),
                                   endpoint_scope=frozenset(scope["endpoints"]))

    async def _from_jwt(self, token: str) -> Principal:
        header = credentials.unverified_header(token)
        if header.get("alg") == credentials.PODIUM_JWT_ALGORITHM:
            _, key = self._keyring.derive(OAUTH_SIGNING_PURPOSE, str(header.get("kid", "")))
            claims = credentials.verify_podium_jwt(token, key, self._settings.issuer)
            if REPLICA_CLAIM in claims:   # a replica's: valid only while its credential is (revoked with it)
                record = self.credentials[str(claims[REPLICA_CLAIM])]
                if record["kind"] != REPLICA or record["owner_id"] != str(claims["sub"]):
                    raise ValueError("not a replica credential")
                return self.replica_principal(record, float(claims["exp"]))
            return self.principal(str(claims["sub"]), float(claims["exp"]))
        if header.get("alg") in credentials.EXTERNAL_JWT_ALGORITHMS and self._jwks is not None:
            key = await asyncio.to_thread(self._jwks.signing_key, token)
            claims = credentials.verify_external_jwt(token, key, self._settings.jwt_issuer, self._settings.jwt_audience)
            name = str(claims.get(self._settings.jwt_claim, ""))
            principal_id = self._by_name.get((USER, name)) or self._by_name.get((SERVICE_PRINCIPAL, name))
            if principal_id is None:
                raise ValueError("no Podium principal for the token's subject")
            return self.principal(principal_id, float(claims["exp"]))
        raise ValueError("unsupported JWT")

    def principal(self, principal_id: str, expires_at: float | None = None) -> Principal:
        """The Principal of an active user or service principal (KeyError / ValueError otherwise)."""
        record = self.principals[principal_id]
        if record["kind"] == GROUP or not record.get("active", True):
            raise ValueError("inactive or not a person")
        groups = self.groups_of(principal_id)
        admins = self._by_name.get((GROUP, ADMINS_GROUP))
        return Principal(id=principal_id, name=record["name"], kind=record["kind"],
                         display_name=record.get("displayName", ""), group_ids=frozenset(groups),
                         group_names=frozenset(self.principals[g]["name"] for g in groups if g in self.principals),
                         is_admin=admins in groups, expires_at=expires_at)

    def groups_of(self, principal_id: str, *, direct_only: bool = False) -> set[str]:
        direct = {g for g, members in self.members.items() if principal_id in members}
        if direct_only:
            return direct
        seen, frontier = set(direct), list(direct)
        while frontier:  # nested groups: a member of a member group is a member
            current = frontier.pop()
            for parent, members in self.members.items():
                if current in members and parent not in seen:
                    seen.add(parent)
                    frontier.append(parent)
        return seen

    def find(self, kind: str, name: str) -> str | None:
        return self._by_name.get((kind, name))

    # ---- SCIM: /api/2.0/preview/scim/v2/{Users,Groups,ServicePrincipals} and Me ----

    async def me(self, token: str) -> dict:
        """The caller as a SCIM User; a service principal's userName is its applicationId."""
        caller = await self.authenticate_person(token)
        rendered = self._render(self.principals[caller.id])
        if caller.kind == SERVICE_PRINCIPAL:
            rendered = {"userName": caller.name, **rendered}
        return rendered

    async def create(self, token: str, kind: str, body: object) -> dict:
        await self.require_admin(token, f"create {scim.RESOURCE_OF[kind]}")
        _, doc = scim.validate(kind, body, new_application_id=str(uuid.uuid4()))
        members = scim.member_ids(body) if kind == GROUP else None
        self._require_known(members or [])
        groups = scim.member_ids(body, "groups") if kind != GROUP else None
        self._require_known(groups or [], GROUP)
        record = await self._insert(kind, doc, members or [])
        for group_id in groups or []:
            await self._set_members(group_id, sorted(self.members.get(group_id, set()) | {record["id"]}))
        return self._render(record)

    async def get(self, token: str, kind: str, principal_id: str, query: dict[str, str]) -> dict:
        await self.authenticate_person(token)
        rendered = self._render(self._require(kind, principal_id))
        return scim.project(rendered, query.get("attributes", ""), query.get("excludedAttributes", ""))

    async def list(self, token: str, kind: str, query: dict[str, str]) -> dict:
        await self.authenticate_person(token)
        resources = [self._render(r) for r in self.principals.values() if r["kind"] == kind]
        if query.get("filter"):
            keep = scim.parse_filter(query["filter"])
            resources = [r for r in resources if keep(r)]
        sort_by = query.get("sortBy") or scim.NAME_ATTRIBUTE[kind]
        resources.sort(key=lambda r: str(r.get(sort_by, "")).lower(), reverse=query.get("sortOrder") == "descending")
        resources = [scim.project(r, query.get("attributes", ""), query.get("excludedAttributes", ""))
                     for r in resources]
        return scim.page(resources, _int(query, "startIndex", 1), _int(query, "count", 10000))

    async def replace(self, token: str, kind: str, principal_id: str, body: object) -> dict:
        await self.require_admin(token, f"update {scim.RESOURCE_OF[kind]}")
        record = self._require(kind, principal_id)
        _, doc = scim.validate(kind, body, existing=record)
        members = scim.member_ids(body) if kind == GROUP else None
        self._require_known(members or [])
        return await self._update(record, doc, members)

    async def patch(self, token: str, kind: str, principal_id: str, body: object) -> dict:
        await self.require_admin(token, f"update {scim.RESOURCE_OF[kind]}")
        record = self._require(kind, principal_id)
        document = {k: v for k, v in record.items() if k not in ("id", "kind", "name")}
        result = scim.apply_patch(kind, document, sorted(self.members.get(principal_id, set())),
                                  sorted(self.groups_of(principal_id, direct_only=True)), body)
        _, doc = scim.validate(kind, result.document, existing=record)
        self._require_known(result.members or [])
        self._require_known(result.groups or [], GROUP)
        updated = await self._update(record, doc, result.members)
        if result.groups is not None:
            before = self.groups_of(principal_id, direct_only=True)
            for group_id in before ^ set(result.groups):
                members = self.members.get(group_id, set())
                await self._set_members(group_id, sorted(members ^ {principal_id}))
        return self._render(self.principals[updated["id"]])

    async def delete(self, token: str, kind: str, principal_id: str) -> dict:
        caller = await self.require_admin(token, f"delete {scim.RESOURCE_OF[kind]}")
        record = self._require(kind, principal_id)
        if (kind, record["name"]) == (GROUP, ADMINS_GROUP) or principal_id == caller.id:
            raise InvalidParameter(f"{record['name']} cannot be deleted")
        async with self.write_lock:
            await asyncio.to_thread(self._store.delete_principal, principal_id)
            self._unindex(record)
        return {}

    # ---- credential records (tokens.py issues and revokes them) ----

    @property
    def issuer(self) -> str:
        return self._settings.issuer

    async def add_credential(self, record: dict) -> None:
        async with self.write_lock:
            await asyncio.to_thread(self._store.insert_credential, record)
            self.credentials[record["token_id"]] = record

    async def revoke_credentials(self, token_ids: list[str]) -> None:
        async with self.write_lock:
            await asyncio.to_thread(self._store.delete_credentials, token_ids)
            for token_id in token_ids:
                self.credentials.pop(token_id, None)

    # ---- helpers ----

    def _render(self, record: dict) -> dict:
        if record["kind"] == GROUP:
            members = [scim.reference(self.principals[m]) for m in sorted(self.members.get(record["id"], ()))
                       if m in self.principals]
            direct = self.groups_of(record["id"], direct_only=True)
            return scim.render(record, members=members, groups=[scim.reference(self.principals[g], "direct")
                                                                for g in sorted(direct)])
        direct = self.groups_of(record["id"], direct_only=True)
        groups = [scim.reference(self.principals[g], "direct" if g in direct else "indirect")
                  for g in sorted(self.groups_of(record["id"]))]
        return scim.render(record, groups=groups)

    def _require(self, kind: str, principal_id: str) -> dict:
        record = self.principals.get(principal_id)
        if record is None or record["kind"] != kind:
            raise ResourceDoesNotExist(f"{scim.RESOURCE_OF[kind][:-1]} {principal_id} does not exist.")
        return record

    def _require_known(self, ids: list[str], kind: str | None = None) -> None:
        for principal_id in ids:
            record = self.principals.get(principal_id)
            if record is None or (kind and record["kind"] != kind):
                raise InvalidParameter(f"Principal {principal_id} does not exist")

    async def _insert(self, kind: str, doc: dict, members: list[str]) -> dict:
        name = doc[scim.NAME_ATTRIBUTE[kind]]
        async with self.write_lock:
            if (kind, name) in self._by_name:
                raise AlreadyExists(f"A {kind.replace('_', ' ')} named '{name}' already exists")
            principal_id = str(secrets.randbelow(9 * 10 ** 15) + 10 ** 15)  # numeric, as Databricks ids
            await asyncio.to_thread(self._store.insert_principal, principal_id, kind, name, doc, members)
            record = {**doc, "id": principal_id, "kind": kind, "name": name}
            self._index(record)
            if members:
                self.members[principal_id] = set(members)
        return record

    async def _update(self, record: dict, doc: dict, members: list[str] | None) -> dict:
        kind, name = record["kind"], doc[scim.NAME_ATTRIBUTE[record["kind"]]]
        if kind == GROUP and ADMINS_GROUP in (record["name"], name) and record["name"] != name:
            raise InvalidParameter("the admins group cannot be renamed, nor another group take its name")
        async with self.write_lock:
            other = self._by_name.get((kind, name))
            if other is not None and other != record["id"]:
                raise AlreadyExists(f"A {kind.replace('_', ' ')} named '{name}' already exists")
            await asyncio.to_thread(self._store.update_principal, record["id"], kind, name, doc, members)
            self._unindex(record, keep_links=True)
            updated = {**doc, "id": record["id"], "kind": kind, "name": name}
            self._index(updated)
            if members is not None:
                self.members[record["id"]] = set(members)
        return updated

    async def _set_members(self, group_id: str, members: list[str]) -> None:
        record = self.principals[group_id]
        document = {k: v for k, v in record.items() if k not in ("id", "kind", "name")}
        async with self.write_lock:
            await asyncio.to_thread(self._store.update_principal, group_id, GROUP, record["name"], document, members)
            self.members[group_id] = set(members)

    def _index(self, record: dict) -> None:
        self.principals[record["id"]] = record
        self._by_name[(record["kind"], record["name"])] = record["id"]

    def _unindex(self, record: dict, keep_links: bool = False) -> None:
        self.principals.pop(record["id"], None)
        self._by_name.pop((record["kind"], record["name"]), None)
        if keep_links:
            return
        self.members.pop(record["id"], None)
        for members in self.members.values():
            members.discard(record["id"])
        for token_id in [t for t, r in self.credentials.items() if r["owner_id"] == record["id"]]:
            del self.credentials[token_id]

    async def _bootstrap_admin(self, token: str) -> None:
        """`podium up`'s admin: user `admin` in the admins group, holding exactly this bootstrap token."""
        admin_id = self._by_name.get((USER, "admin"))
        if admin_id is None:
            admin_id = (await self._insert(USER, {"userName": "admin", "displayName": "Podium admin", "active": True},
                                           []))["id"]
        admins = self._by_name[(GROUP, ADMINS_GROUP)]
        if admin_id not in self.members.get(admins, set()):
            await self._set_members(admins, sorted(self.members.get(admins, set()) | {admin_id}))
        issued = credentials.from_value(token)
        existing = self.credentials.get(issued.token_id)
        if existing and credentials.matches(token, existing["salt"], existing["digest"]):
            return  # a restarted control plane: the token is already registered
        stale = [t for t, r in self.credentials.items() if r["owner_id"] == admin_id and r["comment"] == BOOTSTRAP_COMMENT]
        now_ms = int(self._clock() * 1000)
        record = {"token_id": issued.token_id, "kind": "pat", "owner_id": admin_id, "created_by_id": admin_id,
                  "salt": issued.salt, "digest": issued.digest, "comment": BOOTSTRAP_COMMENT,
                  "creation_time": now_ms, "expiry_time": -1}
        async with self.write_lock:
            await asyncio.to_thread(self._store.delete_credentials, stale + ([issued.token_id] if existing else []))
            await asyncio.to_thread(self._store.insert_credential, record)
            for token_id in stale:
                self.credentials.pop(token_id, None)
            self.credentials[issued.token_id] = record


def _int(query: dict[str, str], name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except ValueError:
        raise InvalidParameter(f"{name} must be an integer") from None
