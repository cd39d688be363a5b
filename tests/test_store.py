"""The control plane's store and core against real databases: SQLite, and PostgreSQL where it runs."""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

from services.common.deployments import DeploymentStatus
from services.common.errors import AlreadyExists, Conflict, EndpointNotFound
from services.control_plane.core import EndpointService
from services.control_plane.store import EndpointStore

POSTGRES_URL = os.environ.get("PODIUM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_reachable() -> bool:
    try:
        engine = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"),
                                  connect_args={"connect_timeout": 2})
        with engine.connect():
            return True
    except Exception:
        return False


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'podium.db'}"
        return
    if not _postgres_reachable():
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}")
    schema = f"podium_test_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


CREATE = {"name": "e1", "config": {"served_entities": [{"entity_name": "c.s.m", "entity_version": "1"}]},
          "tags": [{"key": "team", "value": "ml"}]}


async def test_specs_survive_a_restart(database_url):
    service = EndpointService(EndpointStore(database_url))
    await service.start()
    created = await service.create(CREATE, "alice")
    [deployment] = service.deployments()
    await service.report([DeploymentStatus(deployment.key, ("127.0.0.1:9",))])
    assert (await service.get("e1"))["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}

    restarted = EndpointService(EndpointStore(database_url))
    await restarted.start()
    again = await restarted.get("e1")
    assert again["id"] == created["id"] and again["creator"] == "alice"
    assert again["tags"] == [{"key": "team", "value": "ml"}]
    assert again["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    assert again["config"]["config_version"] == 1


async def test_duplicates_updates_and_deletes(database_url):
    service = EndpointService(EndpointStore(database_url))
    await service.start()
    await service.create(CREATE, "alice")
    with pytest.raises(AlreadyExists):
        await service.create(CREATE, "bob")
    with pytest.raises(Conflict):  # the first config is still starting
        await service.update_config("e1", {"served_entities": [{"entity_name": "c.s.m", "entity_version": "2"}]}, "a")
    [deployment] = service.deployments()
    await service.report([DeploymentStatus(deployment.key, ("127.0.0.1:9",))])
    updated = await service.update_config(
        "e1", {"served_entities": [{"entity_name": "c.s.m", "entity_version": "2"}]}, "alice")
    assert updated["pending_config"]["config_version"] == 2
    assert updated["state"]["config_update"] == "IN_PROGRESS"
    assert len(service.deployments()) == 2  # old and new run side by side during the update
    await service.delete("e1")
    with pytest.raises(EndpointNotFound):
        await service.get("e1")
    assert service.deployments() == []
    fresh = EndpointService(EndpointStore(database_url))
    await fresh.start()
    assert (await fresh.list()) == {"endpoints": []}
