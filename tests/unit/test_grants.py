"""Unity Catalog grants on registered models and secret-scope ACLs: the pure rules as tables, then the
cores on a real (SQLite) database, in-process."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidParameter, PermissionDenied, ResourceDoesNotExist
from services.common.principals import Principal
from services.control_plane.grants import (
    ALL_PRIVILEGES, EXECUTE, MANAGE, Grant, GrantsService, ancestors, check_writer, effective_privileges, holds,
)
from services.control_plane.secrets_store import MANAGE as S_MANAGE, READ, WRITE, SecretsService, references_in, \
    scope_permission
from tests.support.identity import ADMIN_TOKEN, INTERNAL_TOKEN, start_identity

ALICE = Principal(id="1", name="alice", kind="user", group_ids=frozenset({"g1"}))
ADMIN = Principal(id="9", name="admin", kind="user", is_admin=True)
SERVICE = Principal(id="s", name="podium", kind="service")
ROWS = [Grant("main", "g1", EXECUTE), Grant("main.ml", "1", MANAGE), Grant("main.ml.iris", "2", EXECUTE),
        Grant("dev.x.y", "1", ALL_PRIVILEGES), Grant("other", "1", EXECUTE)]


def test_ancestors_nearest_first():
    assert ancestors("Main.ML.Iris") == ["main.ml.iris", "main.ml", "main"]


@pytest.mark.parametrize("full_name, ids, expected", [
    ("main.ml.iris", {"1", "g1"}, {EXECUTE: "main", MANAGE: "main.ml"}),    # from the catalog and the schema
    ("main.ml.iris", {"2"}, {EXECUTE: "main.ml.iris"}),                      # on the model itself
    ("main.ml", {"2"}, {}),                                                  # never upwards
    ("main.other.m", {"1"}, {}),                                             # MANAGE on main.ml only
    ("main.other.m", {"g1"}, {EXECUTE: "main"}),                             # through a group
    ("mainx.ml.iris", {"g1"}, {}),                                           # names, not prefixes
    ("dev.x.y", {"1"}, {ALL_PRIVILEGES: "dev.x.y"}),
])
def test_privileges_are_inherited_downwards(full_name, ids, expected):
    assert effective_privileges(full_name, ids, ROWS) == expected


@pytest.mark.parametrize("caller, full_name, privilege, expected", [
    (ALICE, "main.ml.iris", EXECUTE, True),      # the group's EXECUTE on the catalog
    (ALICE, "main.ml.iris", MANAGE, True),       # MANAGE on the schema
    (ALICE, "main.other.m", MANAGE, False),
    (ALICE, "dev.x.y", EXECUTE, True),           # ALL_PRIVILEGES covers EXECUTE
    (ALICE, "dev.x.y", MANAGE, False),           # ... but not MANAGE, as in Unity Catalog
    (Principal(id="3", name="bob", kind="user"), "main.ml.iris", EXECUTE, False),
    (ADMIN, "any.thing.here", MANAGE, True),     # admins hold everything
    (SERVICE, "main.ml.iris", EXECUTE, False),   # Podium's own services are granted nothing
])
def test_holds(caller, full_name, privilege, expected):
    assert holds(caller, full_name, privilege, ROWS) is expected


@pytest.mark.parametrize("owner, acl, expected", [
    ("1", [], S_MANAGE),                                                       # the creator
    ("x", [], None),
    ("x", [{"principal_id": "1", "permission": READ}], READ),
    ("x", [{"principal_id": "g1", "permission": WRITE}, {"principal_id": "1", "permission": READ}], WRITE),
    ("x", [{"principal_id": "2", "permission": S_MANAGE}], None),
])
def test_scope_permission(owner, acl, expected):
    assert scope_permission(ALICE, owner, acl) == expected
    assert scope_permission(ADMIN, owner, acl) == S_MANAGE
    assert scope_permission(SERVICE, owner, acl) is None


def test_references_are_found_anywhere_in_a_config():
    config = {"served_entities": [{"environment_vars": {"A": "x{{secrets/s1/k1}}y", "B": "{{ secrets/s2/k2 }}"}},
                                  {"external_model": {"openai_config": {"openai_api_key": "{{secrets/s3/k3}}"}}}]}
    assert references_in(config) == {("s1", "k1"), ("s2", "k2"), ("s3", "k3")}


@pytest.fixture
async def world(tmp_path):
    ident = await start_identity(f"sqlite:///{tmp_path}/db.sqlite")
    users = {}
    for name in ("alice", "bob"):
        users[name] = await ident.user_token(name)
    grants = GrantsService(ident.engine, ident.identity)
    await grants.start()
    secrets = SecretsService(ident.store, ident.identity, ident.keyring)
    return ident, grants, secrets, {n: token for n, (_, token) in users.items()}


async def test_grants_api_and_the_serve_check(world, tmp_path):
    ident, grants, secrets, tokens = world
    alice = await ident.identity.authenticate(tokens["alice"])
    config = {"served_entities": [{"entity_name": "main.ml.iris"}, {"entity_name": "workspace-model"},
                                  {"external_model": {"name": "x"}}]}
    with pytest.raises(PermissionDenied, match="EXECUTE on Model 'main.ml.iris'"):
        await check_writer(alice, config, grants, None)
    with pytest.raises(PermissionDenied, match="MANAGE"):   # no MANAGE: may not grant herself
        await grants.update(tokens["alice"], "catalog", "main", {"changes": [{"principal": "alice", "add": [EXECUTE]}]})
    answer = await grants.update(ADMIN_TOKEN, "schema", "main.ml",
                                 {"changes": [{"principal": "alice", "add": [EXECUTE, MANAGE]}]})
    assert answer == {"privilege_assignments": [{"principal": "alice", "privileges": [EXECUTE, MANAGE]}]}
    await check_writer(alice, config, grants, None)
    # MANAGE on the schema lets alice grant on the model below it, not on the catalog above it.
    await grants.update(tokens["alice"], "function", "main.ml.iris", {"changes": [{"principal": "bob", "add": [EXECUTE]}]})
    with pytest.raises(PermissionDenied):
        await grants.update(tokens["alice"], "catalog", "main", {"changes": [{"principal": "bob", "add": [EXECUTE]}]})
    effective = await grants.get_effective(ADMIN_TOKEN, "function", "main.ml.iris", {})
    assert effective["privilege_assignments"] == [
        {"principal": "alice", "privileges": [
            {"privilege": EXECUTE, "inherited_from_type": "SCHEMA", "inherited_from_name": "main.ml"},
            {"privilege": MANAGE, "inherited_from_type": "SCHEMA", "inherited_from_name": "main.ml"}]},
        {"principal": "bob", "privileges": [{"privilege": EXECUTE}]}]
    # bob, without MANAGE, sees only his own assignment.
    assert (await grants.get(tokens["bob"], "function", "main.ml.iris", {}))["privilege_assignments"] == [
        {"principal": "bob", "privileges": [EXECUTE]}]
    await grants.update(ADMIN_TOKEN, "schema", "main.ml", {"changes": [{"principal": "alice", "remove": [EXECUTE]}]})
    with pytest.raises(PermissionDenied):
        await check_writer(alice, config, grants, None)
    # Grants are stored: a fresh core over the same database sees them.
    again = GrantsService(ident.engine, ident.identity)
    await again.start()
    assert (await again.get(ADMIN_TOKEN, "schema", "main.ml", {}))["privilege_assignments"] == [
        {"principal": "alice", "privileges": [MANAGE]}]
    for bad in (("table", "main.ml.t"), ("catalog", "main.ml"), ("function", "main.ml"), ("function", "main.ml.a\x00b")):
        with pytest.raises(InvalidParameter):
            await grants.get(ADMIN_TOKEN, *bad, {})
    with pytest.raises(InvalidParameter):
        await grants.update(ADMIN_TOKEN, "catalog", "main", {"changes": [{"principal": "alice", "add": ["SELECT"]}]})


async def test_secret_acls_govern_listing_writing_and_references(world):
    ident, grants, secrets, tokens = world
    alice = await ident.identity.authenticate(tokens["alice"])
    bob = await ident.identity.authenticate(tokens["bob"])
    await secrets.create_scope(ADMIN_TOKEN, {"scope": "prod"})
    await secrets.put(ADMIN_TOKEN, {"scope": "prod", "key": "openai", "string_value": "sk-admin"})
    config = {"served_entities": [{"external_model": {"custom_provider_config": {
        "bearer_token_auth": {"token": "{{secrets/prod/openai}}"}}}}]}
    assert (await secrets.list_scopes(tokens["alice"]))["scopes"] == []
    with pytest.raises(ResourceDoesNotExist):
        await secrets.list(tokens["alice"], {"scope": "prod"})
    with pytest.raises(PermissionDenied, match="READ permission on secret scope 'prod'"):
        await check_writer(alice, config, None, secrets)

    await secrets.put_acl(ADMIN_TOKEN, {"scope": "prod", "principal": "alice", "permission": READ})
    assert [s["name"] for s in (await secrets.list_scopes(tokens["alice"]))["scopes"]] == ["prod"]
    assert [s["key"] for s in (await secrets.list(tokens["alice"], {"scope": "prod"}))["secrets"]] == ["openai"]
    await check_writer(alice, config, None, secrets)
    with pytest.raises(PermissionDenied, match="WRITE"):
        await secrets.put(tokens["alice"], {"scope": "prod", "key": "k", "string_value": "v"})
    with pytest.raises(PermissionDenied, match="MANAGE"):
        await secrets.list_acls(tokens["alice"], {"scope": "prod"})
    assert (await secrets.list_acls(ADMIN_TOKEN, {"scope": "prod"}))["items"] == [
        {"principal": "admin", "permission": S_MANAGE}, {"principal": "alice", "permission": READ}]
    assert await secrets.get_acl(ADMIN_TOKEN, {"scope": "prod", "principal": "alice"}) == {
        "principal": "alice", "permission": READ}

    # Resolution checks the writer of the endpoint's live config again, and only that endpoint's.
    secrets.written_configs = lambda: [("alices", alice.id, config), ("bobs", bob.id, config)]
    assert await secrets.resolve(INTERNAL_TOKEN, ["{{secrets/prod/openai}}"], "alices") == ["sk-admin"]
    with pytest.raises(PermissionDenied, match="'bobs'"):   # alice's READ lends bob's endpoint nothing
        await secrets.resolve(INTERNAL_TOKEN, ["{{secrets/prod/openai}}"], "bobs")
    with pytest.raises(PermissionDenied):
        await secrets.resolve(INTERNAL_TOKEN, ["{{secrets/prod/openai}}"], "")
    await secrets.delete_acl(ADMIN_TOKEN, {"scope": "prod", "principal": "alice"})
    with pytest.raises(PermissionDenied, match="prod"):
        await secrets.resolve(INTERNAL_TOKEN, ["{{secrets/prod/openai}}"], "alices")
    with pytest.raises(ResourceDoesNotExist):
        await secrets.delete_acl(ADMIN_TOKEN, {"scope": "prod", "principal": "alice"})

    # A scope's creator manages it.
    await secrets.create_scope(tokens["bob"], {"scope": "bobs"})
    await secrets.put_acl(tokens["bob"], {"scope": "bobs", "principal": "alice", "permission": WRITE})
    await secrets.put(tokens["alice"], {"scope": "bobs", "key": "k", "string_value": "v"})
    with pytest.raises(PermissionDenied):
        await secrets.delete_scope(tokens["alice"], {"scope": "bobs"})
    await secrets.delete_scope(tokens["bob"], {"scope": "bobs"})
