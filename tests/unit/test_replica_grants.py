"""What a replica is given as it starts: its served entity's secret references resolved for that one
deployment, and a credential confined to the serving endpoints its model declared. The control-plane cores
on a real (SQLite) database, in-process; the scaler's reading of the MLmodel file."""

from __future__ import annotations

import time

import pytest
import yaml

from services.common.errors import InvalidParameter, PermissionDenied, ResourceDoesNotExist, Unauthenticated
from services.common.principals import CAN_MANAGE, CAN_QUERY, require_level
from services.control_plane.grants import check_writer
from services.control_plane.secrets_store import READ, SecretsService
from services.scaler.replica_grants import declared_endpoints, has_secret_reference, with_credential
from tests.support.identity import ADMIN_TOKEN, INTERNAL_TOKEN, start_identity

SECRET = "sk-env-secret-value"


def _entity(env: dict[str, str]) -> dict:
    return {"name": "agent-1", "entity_name": "main.default.agent", "entity_version": "1", "environment_vars": env}


@pytest.fixture
async def world(tmp_path):
    ident = await start_identity(f"sqlite:///{tmp_path}/db.sqlite")
    alice_id, alice_token = await ident.user_token("alice")
    secrets = SecretsService(ident.store, ident.identity, ident.keyring)
    await secrets.create_scope(ADMIN_TOKEN, {"scope": "prod"})
    await secrets.put(ADMIN_TOKEN, {"scope": "prod", "key": "openai", "string_value": SECRET})
    return ident, secrets, alice_id, alice_token


async def test_a_reference_in_environment_vars_needs_read_and_a_stored_secret(world):
    ident, secrets, _, alice_token = world
    alice = await ident.identity.authenticate(alice_token)
    admin = await ident.identity.authenticate(ADMIN_TOKEN)
    config = {"served_entities": [_entity({"OPENAI_API_KEY": "{{secrets/prod/openai}}"})]}
    with pytest.raises(PermissionDenied, match="READ permission on secret scope 'prod'"):
        await check_writer(alice, config, None, secrets)
    await secrets.put_acl(ADMIN_TOKEN, {"scope": "prod", "principal": "alice", "permission": READ})
    await check_writer(alice, config, None, secrets)
    missing = {"served_entities": [_entity({"OPENAI_API_KEY": "Bearer {{secrets/prod/absent}}"})]}
    with pytest.raises(InvalidParameter, match=r"environment_vars\.OPENAI_API_KEY .*secrets/prod/absent.*does not "
                                               r"exist"):
        await check_writer(alice, missing, None, secrets)
    # An unknown scope is refused as unreadable to a user (nothing said about what exists), missing to an admin.
    unknown = {"served_entities": [_entity({"K": "{{secrets/nowhere/k}}"})]}
    with pytest.raises(PermissionDenied):
        await check_writer(alice, unknown, None, secrets)
    with pytest.raises(InvalidParameter, match="does not exist"):
        await check_writer(admin, unknown, None, secrets)


async def test_environment_vars_resolve_per_deployment_by_the_writers_read(world):
    ident, secrets, alice_id, _ = world
    env = {"OPENAI_API_KEY": "{{secrets/prod/openai}}", "MODE": "x-{{ secrets/prod/openai }}-y", "PLAIN": "v"}
    live = {"dep-1": [(alice_id, _entity(env))]}
    secrets.deployment_entities = lambda key: live.get(key, [])
    secrets.written_configs = lambda: [("ep", alice_id, {"served_entities": [_entity(env)]})]
    await secrets.put_acl(ADMIN_TOKEN, {"scope": "prod", "principal": "alice", "permission": READ})

    assert await secrets.resolve_environment(INTERNAL_TOKEN, "dep-1") == {
        "OPENAI_API_KEY": SECRET, "MODE": f"x-{SECRET}-y", "PLAIN": "v"}
    with pytest.raises(Unauthenticated):
        await secrets.resolve_environment(ADMIN_TOKEN, "dep-1")   # Podium's services only
    with pytest.raises(ResourceDoesNotExist):
        await secrets.resolve_environment(INTERNAL_TOKEN, "dep-2")
    # The blanket call the routers use hands out provider keys only, never a model's variables.
    with pytest.raises(PermissionDenied):
        await secrets.resolve(INTERNAL_TOKEN, ["{{secrets/prod/openai}}"], "ep")
    # A revoked READ stops the next replica from getting the value.
    await secrets.delete_acl(ADMIN_TOKEN, {"scope": "prod", "principal": "alice"})
    with pytest.raises(PermissionDenied, match="'prod'") as refused:
        await secrets.resolve_environment(INTERNAL_TOKEN, "dep-1")
    assert SECRET not in str(refused.value)


async def test_a_replica_credential_queries_only_its_declared_endpoints(world):
    ident, _, alice_id, _ = world
    live = {"dep-1": [(alice_id, _entity({}))]}
    ident.tokens.deployment_entities = lambda key: live.get(key, [])
    ident.identity.is_live_deployment = lambda key: key in live
    with pytest.raises(Unauthenticated):
        await ident.tokens.issue_replica_credential(ADMIN_TOKEN, "dep-1", ["ext-a"])
    with pytest.raises(ResourceDoesNotExist):
        await ident.tokens.issue_replica_credential(INTERNAL_TOKEN, "dep-9", ["ext-a"])
    with pytest.raises(InvalidParameter):
        await ident.tokens.issue_replica_credential(INTERNAL_TOKEN, "dep-1", ["bad name/x"])
    issued = await ident.tokens.issue_replica_credential(INTERNAL_TOKEN, "dep-1", ["ext-a", "ext-b"])
    assert issued["client_id"] == f"podium-replica-{issued['token_id']}"
    with pytest.raises(Unauthenticated):   # the client secret is no bearer credential: it is exchanged
        await ident.identity.authenticate(issued["client_secret"])
    for client_id, secret in [(issued["client_id"], _tampered(issued["client_secret"])),
                              ("podium-replica-" + "0" * 16, issued["client_secret"])]:
        with pytest.raises(Unauthenticated):
            await ident.tokens.issue_oauth_token(client_id, secret, "all-apis")
    granted = await ident.tokens.issue_oauth_token(issued["client_id"], issued["client_secret"], "all-apis")
    assert (granted["token_type"], granted["expires_in"]) == ("Bearer", 900)
    access_token = granted["access_token"]

    caller = await ident.identity.authenticate(access_token)
    assert (caller.id, caller.endpoint_scope) == (alice_id, frozenset({"ext-a", "ext-b"}))
    acl = [(alice_id, CAN_MANAGE)]   # even where its writer manages the endpoint, it may only query
    assert require_level(caller, acl, CAN_QUERY, "ext-a") == CAN_MANAGE
    with pytest.raises(PermissionDenied):
        require_level(caller, acl, CAN_MANAGE, "ext-a")
    with pytest.raises(PermissionDenied):
        require_level(caller, acl, CAN_QUERY, "other")
    with pytest.raises(PermissionDenied):   # no management, identity or secrets API at all
        await ident.identity.authenticate_person(access_token)
    listed = (await ident.tokens.list(await ident.obo(alice_id)))["token_infos"]
    assert listed and issued["token_id"] not in {t["token_id"] for t in listed}   # listed nowhere

    # Revoked with its replica: no new access token, and the ones it got are refused before they expire.
    await ident.tokens.revoke_replica_credential(INTERNAL_TOKEN, issued["token_id"])
    with pytest.raises(Unauthenticated):
        await ident.identity.authenticate(access_token)
    with pytest.raises(Unauthenticated):
        await ident.tokens.issue_oauth_token(issued["client_id"], issued["client_secret"], "all-apis")
    # A credential whose deployment is gone (its scaler died before revoking it) authenticates nobody.
    orphan = await ident.tokens.issue_replica_credential(INTERNAL_TOKEN, "dep-1", ["ext-a"])
    orphan_grant = await ident.tokens.issue_oauth_token(orphan["client_id"], orphan["client_secret"], "")
    orphan_token = orphan_grant["access_token"]
    live.clear()
    with pytest.raises(Unauthenticated):
        await ident.identity.authenticate(orphan_token)
    with pytest.raises(Unauthenticated):
        await ident.tokens.issue_oauth_token(orphan["client_id"], orphan["client_secret"], "")


async def test_a_replica_access_token_lives_its_ttl(world):
    ident, _, alice_id, _ = world
    ident.tokens.deployment_entities = lambda key: [(alice_id, _entity({}))]
    ident.identity.is_live_deployment = lambda key: True
    ident.tokens._replica_lifetime_s = 60
    issued = await ident.tokens.issue_replica_credential(INTERNAL_TOKEN, "dep-1", ["ext-a"])
    fresh = await ident.tokens.issue_oauth_token(issued["client_id"], issued["client_secret"], "all-apis")
    assert fresh["expires_in"] == 60
    caller = await ident.identity.authenticate(fresh["access_token"])
    assert caller.expires_at == pytest.approx(time.time() + 60, abs=5)
    ident.tokens._clock = lambda: time.time() - 61   # minted 61 s ago: past its TTL
    stale = await ident.tokens.issue_oauth_token(issued["client_id"], issued["client_secret"], "all-apis")
    with pytest.raises(Unauthenticated):
        await ident.identity.authenticate(stale["access_token"])


@pytest.mark.parametrize("env, kept", [
    ({}, {"DATABRICKS_HOST", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"}),
    ({"DATABRICKS_TOKEN": "own"}, {"DATABRICKS_HOST", "DATABRICKS_TOKEN"}),
    ({"DATABRICKS_HOST": "https://elsewhere", "DATABRICKS_CLIENT_ID": "a", "DATABRICKS_CLIENT_SECRET": "b"},
     {"DATABRICKS_HOST", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"}),
])
def test_a_credential_the_served_entity_configures_replaces_podiums(env, kept):
    granted = {"DATABRICKS_HOST": "http://router", "DATABRICKS_CLIENT_ID": "podium-replica-x",
               "DATABRICKS_CLIENT_SECRET": "dose-x"}
    merged = with_credential(granted, env)
    assert set(merged) == kept and all(merged[k] == v for k, v in env.items())


def test_declared_endpoints_come_from_the_mlmodel_resources(tmp_path):
    from mlflow.models.resources import (
        DatabricksServingEndpoint, DatabricksVectorSearchIndex, _ResourceBuilder,
    )

    resources = _ResourceBuilder.from_resources([DatabricksServingEndpoint("ext-a"), DatabricksServingEndpoint("b"),
                                                 DatabricksVectorSearchIndex("c.d.e")])
    (tmp_path / "MLmodel").write_text(yaml.safe_dump({"flavors": {}, "resources": resources}))
    assert declared_endpoints(tmp_path) == ["b", "ext-a"]
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    assert declared_endpoints(tmp_path) == []
    (tmp_path / "MLmodel").write_text("resources: [unclosed\n")
    assert declared_endpoints(tmp_path / "nowhere") == [] and declared_endpoints(tmp_path) == []


@pytest.mark.parametrize("env, expected", [
    ({}, False), ({"A": "plain"}, False), ({"A": "{{secrets/s/k}}"}, True), ({"A": "x {{ secrets/s/k }}"}, True),
])
def test_has_secret_reference(env, expected):
    assert has_secret_reference(env) is expected


def _tampered(secret):
    return secret[:-1] + ("1" if secret.endswith("0") else "0")
