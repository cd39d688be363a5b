"""The control plane's store and core against real databases: SQLite, and PostgreSQL where it runs."""

from __future__ import annotations

import pytest

from services.common.deployments import DeploymentStatus
from services.common.errors import AlreadyExists, Conflict, EndpointNotFound
from services.control_plane.core import EndpointService
from services.control_plane.store import EndpointStore
from tests.support.identity import ADMIN_TOKEN, INTERNAL_TOKEN, start_identity

CREATE = {"name": "e1", "config": {"served_entities": [{"entity_name": "c.s.m", "entity_version": "1"}]},
          "tags": [{"key": "team", "value": "ml"}]}


async def _service(database_url):
    identity = await start_identity(database_url)
    service = EndpointService(EndpointStore(identity.engine), identity.identity)
    await service.start()
    return service, identity


async def test_specs_survive_a_restart(database_url):
    service, identity = await _service(database_url)
    _, alice = await identity.user_token("alice")
    created = await service.create(alice, CREATE)
    [deployment] = service.deployments(INTERNAL_TOKEN)
    await service.report(INTERNAL_TOKEN, [DeploymentStatus(deployment.key, ("127.0.0.1:9",))])
    assert (await service.get(alice, "e1"))["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}

    restarted, _ = await _service(database_url)
    again = await restarted.get(alice, "e1")
    assert again["id"] == created["id"] and again["creator"] == "alice"
    assert again["tags"] == [{"key": "team", "value": "ml"}]
    assert again["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    assert again["config"]["config_version"] == 1


async def test_duplicates_updates_and_deletes(database_url):
    service, identity = await _service(database_url)
    _, alice = await identity.user_token("alice")
    await service.create(alice, CREATE)
    with pytest.raises(AlreadyExists):
        await service.create(ADMIN_TOKEN, CREATE)
    with pytest.raises(Conflict):  # the first config is still starting
        await service.update_config(alice, "e1", {"served_entities": [{"entity_name": "c.s.m", "entity_version": "2"}]})
    [deployment] = service.deployments(INTERNAL_TOKEN)
    await service.report(INTERNAL_TOKEN, [DeploymentStatus(deployment.key, ("127.0.0.1:9",))])
    updated = await service.update_config(
        alice, "e1", {"served_entities": [{"entity_name": "c.s.m", "entity_version": "2"}]})
    assert updated["pending_config"]["config_version"] == 2
    assert updated["state"]["config_update"] == "IN_PROGRESS"
    assert len(service.deployments(INTERNAL_TOKEN)) == 2  # old and new run side by side during the update
    await service.delete(alice, "e1")
    with pytest.raises(EndpointNotFound):
        await service.get(alice, "e1")
    assert service.deployments(INTERNAL_TOKEN) == []
    fresh, _ = await _service(database_url)
    assert (await fresh.list(ADMIN_TOKEN)) == {"endpoints": []}


async def test_list_answers_follow_every_change_for_admins_and_grantees(database_url):
    # The list is rendered once per change (the whole answer for admins, per endpoint for the others):
    # each answer must still show every create, update, grant and delete made before it.
    service, identity = await _service(database_url)
    group = await identity.identity.create(ADMIN_TOKEN, "group", {"displayName": "readers"})
    bob_id, bob = await identity.user_token("bob")
    _, carol = await identity.user_token("carol", groups=[group["id"]])

    def names(listed: dict) -> list[str]:
        return [e["name"] for e in listed["endpoints"]]
    await service.create(ADMIN_TOKEN, CREATE)
    assert names(await service.list(ADMIN_TOKEN)) == ["e1"]
    assert names(await service.list(ADMIN_TOKEN)) == ["e1"]   # the cached answer
    await service.create(bob, {**CREATE, "name": "e2"})
    assert names(await service.list(ADMIN_TOKEN)) == ["e1", "e2"]
    assert names(await service.list(bob)) == ["e2"] and names(await service.list(carol)) == []
    e1 = await service.get(ADMIN_TOKEN, "e1")
    await service.set_permissions(ADMIN_TOKEN, e1["id"], {"access_control_list": [
        {"group_name": "readers", "permission_level": "CAN_VIEW"}]}, replace=False)
    assert names(await service.list(carol)) == ["e1"]           # a grant to her group
    await service.patch_tags(ADMIN_TOKEN, "e1", {"add_tags": [{"key": "tier", "value": "gold"}]})
    [e1_listed] = (await service.list(carol))["endpoints"]
    assert {"key": "tier", "value": "gold"} in e1_listed["tags"]
    assert {"key": "tier", "value": "gold"} in (await service.list(ADMIN_TOKEN))["endpoints"][0]["tags"]
    await service.delete(ADMIN_TOKEN, "e1")
    assert names(await service.list(ADMIN_TOKEN)) == ["e2"] and names(await service.list(carol)) == []
