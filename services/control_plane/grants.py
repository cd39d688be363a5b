"""Unity Catalog grants on registered models: who may serve `catalog.schema.model`.

The wire is databricks-sdk 0.162.0's `GrantsAPI` (`service/catalog.py`; docs/identity-wire.md §7):
`GET|PATCH /api/2.1/unity-catalog/permissions/{securable_type}/{full_name}` and
`GET /api/2.1/unity-catalog/effective-permissions/{securable_type}/{full_name}`. Securables are a catalog,
a schema (`catalog.schema`) and a registered model (`catalog.schema.model`, securable type `function`,
`registered_model` or `model`); a privilege granted on one is inherited by everything below it.

Privileges: EXECUTE (serve the model: creating or updating an endpoint that serves it needs it),
ALL_PRIVILEGES (includes EXECUTE) and MANAGE (grant and revoke; as in Unity Catalog it does not include
EXECUTE). Podium cannot know who registered a model in the MLflow registry, so there is no owner: workspace
admins hold every privilege everywhere, and anyone else grants only with MANAGE on the securable or above it.

The pure part (`effective_privileges`, `holds`) takes rows and decides; `GrantsService` stores rows in the
control plane's database (table `podium_grants`), keeps a write-through copy in memory and answers the API.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from services.common.errors import InvalidParameter, MalformedRequest, PermissionDenied
from services.common.principals import GROUP, SERVICE_PRINCIPAL, USER, Principal
from services.control_plane.identity import IdentityService

EXECUTE, MANAGE, ALL_PRIVILEGES = "EXECUTE", "MANAGE", "ALL_PRIVILEGES"
PRIVILEGES = (EXECUTE, MANAGE, ALL_PRIVILEGES)
# What holding a privilege lets one do: ALL_PRIVILEGES covers EXECUTE, but MANAGE only grants.
IMPLIED_BY = {EXECUTE: (EXECUTE, ALL_PRIVILEGES), MANAGE: (MANAGE,), ALL_PRIVILEGES: (ALL_PRIVILEGES,)}
CATALOG, SCHEMA, MODEL = "CATALOG", "SCHEMA", "FUNCTION"   # SecurableType names, one per depth
DEPTH_TYPE = {1: CATALOG, 2: SCHEMA, 3: MODEL}
SECURABLE_TYPES = {"catalog": CATALOG, "schema": SCHEMA, "function": MODEL, "registered_model": MODEL,
                   "model": MODEL}
_PART = re.compile(r"^[^.\s/{}\x00-\x1f\x7f]{1,255}$")   # no control characters: PostgreSQL refuses NUL

metadata = sa.MetaData()
grants_table = sa.Table(
    "podium_grants", metadata,
    sa.Column("full_name", sa.String(800), primary_key=True),   # lower case: catalog[.schema[.model]]
    sa.Column("principal_id", sa.String(20), primary_key=True),
    sa.Column("privilege", sa.String(32), primary_key=True),
)


@dataclass(frozen=True)
class Grant:
    full_name: str       # lower case
    principal_id: str
    privilege: str


def ancestors(full_name: str) -> list[str]:
    """The securable and those above it, nearest first: `c.s.m` → [`c.s.m`, `c.s`, `c`]."""
    parts = full_name.lower().split(".")
    return [".".join(parts[:n]) for n in range(len(parts), 0, -1)]


def effective_privileges(full_name: str, principal_ids: Iterable[str], grants: Iterable[Grant]) -> dict[str, str]:
    """{privilege: the securable it comes from} for these principals (a caller and its groups) on
    `full_name`, inherited downwards; the nearest securable wins when several grant the same privilege."""
    chain = ancestors(full_name)
    ids = set(principal_ids)
    found: dict[str, str] = {}
    for grant in sorted((g for g in grants if g.full_name in chain and g.principal_id in ids),
                        key=lambda g: chain.index(g.full_name)):
        found.setdefault(grant.privilege, grant.full_name)
    return found


def holds(caller: Principal, full_name: str, privilege: str, grants: Iterable[Grant]) -> bool:
    """Whether the caller may use `privilege` on `full_name`: admins always, others through a grant."""
    if caller.is_service:
        return False
    if caller.is_admin:
        return True
    held = effective_privileges(full_name, {caller.id, *caller.group_ids}, grants)
    return any(p in held for p in IMPLIED_BY[privilege])


def is_catalog_model(entity_name: str) -> bool:
    """A Unity Catalog model (`catalog.schema.model`) rather than a workspace-registry name."""
    return len(entity_name.split(".")) == 3


class GrantsService:
    def __init__(self, engine: sa.Engine, identity: IdentityService):
        self._engine = engine
        self._identity = identity
        self._grants: set[Grant] = set()
        self._lock = asyncio.Lock()
        metadata.create_all(engine)

    async def start(self) -> None:
        def load() -> set[Grant]:
            with self._engine.connect() as conn:
                return {Grant(r.full_name, r.principal_id, r.privilege) for r in conn.execute(sa.select(grants_table))}
        self._grants = await asyncio.to_thread(load)

    # ---- the check the endpoint core makes ----

    def require_execute(self, caller: Principal, entity_names: Iterable[str]) -> None:
        """PermissionDenied naming the first Unity Catalog model the caller may not serve."""
        for name in entity_names:
            if is_catalog_model(name) and not holds(caller, name, EXECUTE, self._grants):
                raise PermissionDenied(f"User does not have EXECUTE on Model '{name}'. EXECUTE on the model, its "
                                       "schema or its catalog is needed to serve it")

    # ---- the API ----

    async def get(self, token: str, securable_type: str, full_name: str, query: dict[str, str]) -> dict:
        caller = await self._identity.authenticate_person(token)
        name = _securable(securable_type, full_name)
        rows = [g for g in self._grants if g.full_name == name and self._visible(caller, name, g)]
        return {"privilege_assignments": self._assignments(rows, query.get("principal"))}

    async def get_effective(self, token: str, securable_type: str, full_name: str, query: dict[str, str]) -> dict:
        caller = await self._identity.authenticate_person(token)
        name = _securable(securable_type, full_name)
        chain = ancestors(name)
        by_principal: dict[str, list[dict]] = {}
        for grant in sorted(self._grants, key=lambda g: (chain.index(g.full_name) if g.full_name in chain else 9,
                                                         g.privilege)):
            if grant.full_name not in chain or not self._visible(caller, name, grant):
                continue
            entry = {"privilege": grant.privilege}
            if grant.full_name != name:
                entry |= {"inherited_from_type": DEPTH_TYPE[grant.full_name.count(".") + 1],
                          "inherited_from_name": grant.full_name}
            by_principal.setdefault(grant.principal_id, []).append(entry)
        assignments = []
        for principal_id, privileges in sorted(by_principal.items()):
            principal = self._name_of(principal_id)
            if principal is not None and query.get("principal") in (None, "", principal):
                assignments.append({"principal": principal, "privileges": privileges})
        return {"privilege_assignments": sorted(assignments, key=lambda a: a["principal"])}

    async def update(self, token: str, securable_type: str, full_name: str, body: object) -> dict:
        """`{"changes": [{"principal", "add": [...], "remove": [...]}]}`: MANAGE (or admin) needed."""
        caller = await self._identity.authenticate_person(token)
        name = _securable(securable_type, full_name)
        if not holds(caller, name, MANAGE, self._grants):
            raise PermissionDenied(f"User does not have MANAGE on {DEPTH_TYPE[name.count('.') + 1].title()} "
                                   f"'{full_name}'")
        changes = _changes(body, self._principal_id)
        async with self._lock:
            add = {Grant(name, p, priv) for p, adds, _ in changes for priv in adds} - self._grants
            remove = {Grant(name, p, priv) for p, _, removes in changes for priv in removes} & self._grants
            await asyncio.to_thread(self._write, add, remove)
            self._grants = (self._grants - remove) | add
        omit = isinstance(body, dict) and body.get("omit_permissions_in_response") is True
        rows = [g for g in self._grants if g.full_name == name]
        return {} if omit else {"privilege_assignments": self._assignments(rows, None)}

    # ---- helpers ----

    def _visible(self, caller: Principal, name: str, grant: Grant) -> bool:
        """Admins and MANAGE holders see every assignment; others only their own and their groups'."""
        return holds(caller, name, MANAGE, self._grants) or grant.principal_id in {caller.id, *caller.group_ids}

    def _assignments(self, rows: Iterable[Grant], principal: str | None) -> list[dict]:
        by_principal: dict[str, list[str]] = {}
        for grant in rows:
            by_principal.setdefault(grant.principal_id, []).append(grant.privilege)
        out = []
        for principal_id, privileges in sorted(by_principal.items()):
            shown = self._name_of(principal_id)
            if shown is not None and principal in (None, "", shown):
                out.append({"principal": shown, "privileges": sorted(privileges)})
        return sorted(out, key=lambda a: a["principal"])

    def _principal_id(self, name: str) -> str:
        """A user's name, a service principal's application id or a group's display name."""
        for kind in (USER, SERVICE_PRINCIPAL, GROUP):
            found = self._identity.find(kind, name)
            if found is not None:
                return found
        raise InvalidParameter(f"Could not find principal with name {name}")

    def _name_of(self, principal_id: str) -> str | None:
        record = self._identity.principals.get(principal_id)
        return None if record is None else record["name"]   # a deleted principal's rows show nothing

    def _write(self, add: set[Grant], remove: set[Grant]) -> None:
        with self._engine.begin() as conn:
            for grant in remove:
                conn.execute(grants_table.delete().where(
                    (grants_table.c.full_name == grant.full_name) & (grants_table.c.principal_id == grant.principal_id)
                    & (grants_table.c.privilege == grant.privilege)))
            if add:
                conn.execute(grants_table.insert(), [g.__dict__ for g in add])


def _securable(securable_type: str, full_name: str) -> str:
    kind = SECURABLE_TYPES.get(securable_type.lower())
    if kind is None:
        raise InvalidParameter(f"Securable type {securable_type} is not supported: Podium grants on catalog, "
                               "schema and function (registered model)")
    parts = full_name.split(".")
    if DEPTH_TYPE.get(len(parts)) != kind or not all(_PART.fullmatch(p) for p in parts):
        raise InvalidParameter(f"'{full_name}' is not a valid name of a {securable_type}")
    return full_name.lower()


def _changes(body: object, principal_id: Callable[[str], str]) -> list[tuple[str, list[str], list[str]]]:
    if not isinstance(body, dict):
        raise MalformedRequest("The request body must be a JSON object")
    changes = body.get("changes") or []
    if not isinstance(changes, list):
        raise InvalidParameter("changes must be a list")
    out = []
    for index, change in enumerate(changes):
        if not isinstance(change, dict) or not isinstance(change.get("principal"), str) or not change["principal"]:
            raise InvalidParameter(f"changes[{index}].principal is required")
        lists = []
        for field in ("add", "remove"):
            values = change.get(field) or []
            if not isinstance(values, list) or any(v not in PRIVILEGES for v in values):
                raise InvalidParameter(f"changes[{index}].{field}: privileges must be among {', '.join(PRIVILEGES)}")
            lists.append(values)
        out.append((principal_id(change["principal"]), *lists))
    return out


async def check_writer(caller: Principal, config: dict, grants: "GrantsService | None", secrets) -> None:
    """What writing an endpoint config needs beyond CAN_MANAGE (the endpoint core calls it at create and
    update): EXECUTE on each Unity Catalog model it serves, READ on each secret scope it references
    (`secrets`: the SecretsService). None skips a check (cores built without them in tests)."""
    if grants is not None:
        grants.require_execute(caller, [e["entity_name"] for e in config["served_entities"] if "entity_name" in e])
    if secrets is not None:
        await secrets.require_references(caller, config)
