"""Endpoints that follow a registry alias: pinning at write time, and the follower starting a rollout (or a
plain update) when the alias moves, against the control plane's core and a real database."""

from __future__ import annotations

import orjson
import pytest

from services.common.deployments import DeploymentStatus
from services.common.errors import Unauthenticated
from services.control_plane.aliases import AliasFollower, pin_body
from services.control_plane.core import EndpointService
from services.control_plane.operations import Call, Operations
from services.control_plane.secrets_store import SecretsService
from services.control_plane.store import EndpointStore
from tests.support.identity import ADMIN_TOKEN, INTERNAL_TOKEN, start_identity

PLAN = {"steps": [10, 100], "min_step_duration_s": 1, "min_step_requests": 1}


class Registry:
    """Aliases as the test moves them; None for a registry that cannot be read."""

    def __init__(self, **aliases: str):
        self.aliases = {("c.s.m", alias): version for alias, version in aliases.items()}
        self.reads = 0

    async def resolve(self, name: str, alias: str) -> str | None:
        self.reads += 1
        return self.aliases.get((name, alias))


async def test_pin_body_pins_aliases_and_drops_a_callers_own_pin():
    registry = Registry(champion="3")
    body = {"name": "e", "config": {"served_entities": [
        {"entity_name": "c.s.m", "entity_version": "@champion", "resolved_version": "1"},
        {"entity_name": "c.s.m", "entity_version": "2", "resolved_version": "9"},
        {"entity_name": "c.s.m", "entity_version": "nope"}]}}
    pinned = await pin_body(registry, body, is_create=True)
    assert [e.get("resolved_version") for e in pinned["config"]["served_entities"]] == ["3", None, None]
    legacy = await pin_body(registry, {"served_models": [{"model_name": "c.s.m", "model_version": "champion"}]},
                            is_create=False)
    assert legacy["served_models"][0]["resolved_version"] == "3"
    assert await pin_body(registry, "not an object", is_create=False) == "not an object"


async def _stack(database_url, registry):
    identity = await start_identity(database_url)
    service = EndpointService(EndpointStore(identity.engine), identity.identity, report_expiry_s=1e9)
    await service.start()
    operations = Operations(identity.identity, identity.tokens, SecretsService(identity.store, identity.identity,
                                                                               identity.keyring),
                            service, aliases=registry)
    return service, operations, AliasFollower(service, registry)


async def _call(operations, operation, body=None, **params):
    return orjson.loads(await operations.call(Call(ADMIN_TOKEN, operation, params, body)))


async def _ready_all(service):
    await service.report(INTERNAL_TOKEN, [DeploymentStatus(d.key, ("127.0.0.1:9",))
                                          for d in service.deployments(INTERNAL_TOKEN)])


async def test_a_moved_alias_starts_a_rollout_to_the_new_version(database_url):
    registry = Registry(champion="3")
    service, operations, follower = await _stack(database_url, registry)
    created = await _call(operations, "CREATE_ENDPOINT", {"name": "e", "config": {
        "served_entities": [{"entity_name": "c.s.m", "entity_version": "@champion"}], "rollout_plan": PLAN}})
    [entity] = created["pending_config"]["served_entities"]
    assert (entity["entity_version"], entity["resolved_version"]) == ("champion", "3")   # the served version shown
    assert [d.model_uri for d in service.deployments(INTERNAL_TOKEN)] == ["models:/c.s.m/3"]
    await _ready_all(service)
    await follower.tick()
    assert (await service.get(ADMIN_TOKEN, "e"))["state"]["config_update"] == "NOT_UPDATING"   # nothing moved

    registry.aliases[("c.s.m", "champion")] = "4"
    await follower.tick()
    got = await service.get(ADMIN_TOKEN, "e")
    assert got["state"]["config_update"] == "IN_PROGRESS" and got["rollout"]["phase"] == "WAITING"
    assert got["pending_config"]["served_entities"][0]["resolved_version"] == "4"
    assert got["config"]["served_entities"][0]["resolved_version"] == "3"
    assert sorted(d.model_uri for d in service.deployments(INTERNAL_TOKEN)) == ["models:/c.s.m/3", "models:/c.s.m/4"]

    # Rolled back: that version is not tried again, until the alias moves on.
    await _call(operations, "ABORT_ROLLOUT", name="e")
    await follower.tick()
    assert (await service.get(ADMIN_TOKEN, "e"))["state"]["config_update"] == "UPDATE_FAILED"
    registry.aliases[("c.s.m", "champion")] = "5"
    await follower.tick()
    got = await service.get(ADMIN_TOKEN, "e")
    assert got["state"]["config_update"] == "IN_PROGRESS"
    assert got["pending_config"]["served_entities"][0]["resolved_version"] == "5"


async def test_without_a_plan_a_moved_alias_is_a_plain_update_and_an_unreadable_registry_changes_nothing(
        database_url):
    registry = Registry(champion="3")
    service, operations, follower = await _stack(database_url, registry)
    await _call(operations, "CREATE_ENDPOINT", {"name": "e", "config": {
        "served_entities": [{"entity_name": "c.s.m", "entity_version": "champion"}]}})
    await _ready_all(service)
    registry.aliases.clear()   # the registry cannot say: the endpoint stays as it is
    await follower.tick()
    assert (await service.get(ADMIN_TOKEN, "e"))["state"]["config_update"] == "NOT_UPDATING"
    registry.aliases[("c.s.m", "champion")] = "7"
    await follower.tick()
    got = await service.get(ADMIN_TOKEN, "e")
    assert "rollout" not in got and got["pending_config"]["config_version"] == 2
    await _ready_all(service)
    got = await service.get(ADMIN_TOKEN, "e")
    assert got["state"]["config_update"] == "NOT_UPDATING"
    assert got["config"]["served_entities"][0]["resolved_version"] == "7"


async def test_a_caller_who_is_no_one_reads_nothing_from_the_registry(database_url):
    registry = Registry(champion="3")
    _, operations, _ = await _stack(database_url, registry)
    with pytest.raises(Unauthenticated):
        await operations.call(Call("dapi-not-a-token", "CREATE_ENDPOINT", {}, {"name": "e", "config": {
            "served_entities": [{"entity_name": "c.s.m", "entity_version": "champion"}]}}))
    assert registry.reads == 0
