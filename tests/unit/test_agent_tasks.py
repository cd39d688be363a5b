"""The endpoint's task comes from the served model (services/control_plane/model_tasks.py, views.py): read from the
MLmodel of the registered version, best effort."""

from __future__ import annotations

import pytest

from services.control_plane import views
from services.control_plane.model_tasks import ModelTasks
from tests.support import agent_models


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A sqlite MLflow registry holding a ResponsesAgent, version 1 (a model without a task: the stack test)."""
    import mlflow

    uri = f"sqlite:///{tmp_path_factory.mktemp('registry')}/mlflow.db"
    info = {"tracking_uri": uri, "registry_uri": uri}
    agent_models.register_agent(info, "responses", "main.agents.responder")
    yield uri
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def _config(*entities):
    return {"served_entities": list(entities), "traffic_config": {"routes": []}, "config_version": 1}


async def test_the_task_is_the_models(registry):
    tasks = ModelTasks(registry, registry)
    tagged = await tasks.tag(_config({"name": "a", "entity_name": "main.agents.responder", "entity_version": "1"}))
    assert tagged["task"] == "agent/v1/responses" and views._task(tagged) == "agent/v1/responses"
    tasks.close()


@pytest.mark.parametrize("entity", [
    {"name": "a", "entity_name": "main.agents.responder", "entity_version": "9"},    # no such version
    {"name": "a", "entity_name": "main.agents.missing", "entity_version": "1"},      # no such model
    {"name": "a", "entity_name": "main.agents.responder", "entity_version": "champion"},   # an alias may move
])
async def test_no_task_where_the_model_has_none_or_cannot_be_read(registry, entity):
    tasks = ModelTasks(registry, registry)
    tagged = await tasks.tag(_config(entity))
    assert "task" not in tagged and views._task(tagged) == ""
    tasks.close()


async def test_without_a_registry_nothing_is_read():
    config = _config({"name": "a", "entity_name": "main.agents.responder", "entity_version": "1"})
    assert await ModelTasks("", "").tag(config) == config


def test_an_external_models_task_comes_from_its_spec():
    external = {"name": "gpt", "external_model": {"provider": "openai", "name": "gpt-4o", "task": "llm/v1/chat"}}
    assert views._task({**_config(external), "task": "agent/v1/responses"}) == "llm/v1/chat"
