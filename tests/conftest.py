"""Shared fixtures: a real MLflow registry with tiny models, and a real stack started with `podium up`."""

from __future__ import annotations

import os
from pathlib import Path
import uuid

import pytest
import sqlalchemy as sa

from tests.support import flavors, models
from tests.support.external import ANTHROPIC_KEY, OPENAI_KEY
from tests.support.fake_providers import FakeProviders
from tests.support.stack import FAULTS, RunningStack, start_stack

REPO_ROOT = Path(__file__).resolve().parent.parent
# Nothing is fetched from a model hub, here or in the workers the stacks start (they inherit this).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> RunningStack:
    """One `podium up` for the session (real processes, embedded Redis, SQLite, MLflow sqlite registry)."""
    # A short credential cache, so revocation tests need not wait long.
    running = start_stack(tmp_path_factory.mktemp("podium"), {"PODIUM_AUTH_CACHE_TTL_S": "1"})
    yield running
    running.stop()


@pytest.fixture(scope="session")
def fault_stack(tmp_path_factory) -> RunningStack:
    """A second `podium up` where tests kill processes and fuzz the API (test_faults.py, test_fuzz.py)."""
    running = start_stack(tmp_path_factory.mktemp("faults"), FAULTS)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def iris_model(stack) -> models.RegisteredModel:
    """A tiny scikit-learn classifier registered as main.default.iris version 1 in the stack's registry."""
    return models.register_sklearn_classifier(stack.info, "main.default.iris")


@pytest.fixture(scope="session")
def iris_oip_endpoint(stack, iris_model) -> dict:
    """Endpoint `iris-oip`: served entity `a` (iris_model) takes all traffic, `b` (another classifier) none."""
    other = models.register_sklearn_classifier(stack.info, "main.default.iris_b", invert=True)
    endpoint = stack.serve("iris-oip", [
        {"name": "a", "entity_name": iris_model.name, "entity_version": iris_model.version},
        {"name": "b", "entity_name": other.name, "entity_version": other.version},
    ], routes=[{"served_entity_name": "a", "traffic_percentage": 100},
               {"served_entity_name": "b", "traffic_percentage": 0}])
    endpoint["models"] = {"a": iris_model, "b": other}
    return endpoint


@pytest.fixture(scope="session")
def pytorch_model(stack) -> flavors.Flavored:
    return flavors.register_pytorch(stack.info, "main.default.torch_net")


@pytest.fixture(scope="session")
def pytorch_endpoint(stack, pytorch_model) -> dict:
    return stack.serve("torch-net", [{"entity_name": pytorch_model.name, "entity_version": pytorch_model.version}])


@pytest.fixture(scope="session")
def versioned_model(stack) -> tuple[models.RegisteredModel, models.RegisteredModel]:
    """Two registered versions (1 and 2, different training seeds) of main.default.versioned."""
    first = models.register_sklearn_classifier(stack.info, "main.default.versioned", seed=0)
    second = models.register_sklearn_classifier(stack.info, "main.default.versioned", seed=1)
    assert (first.version, second.version) == ("1", "2")
    return first, second


@pytest.fixture(scope="session")
def workspace(stack):
    """A databricks-sdk WorkspaceClient pointed at the stack, as a user would build it (the admin's token)."""
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=stack.url, token=stack.admin_token)


@pytest.fixture(scope="session")
def fake_providers() -> FakeProviders:
    """Local servers speaking OpenAI's and Anthropic's wire formats (the suite's only stand-ins)."""
    providers = FakeProviders(OPENAI_KEY, ANTHROPIC_KEY).start()
    yield providers
    providers.stop()


@pytest.fixture(scope="session")
def iris_endpoint(stack, iris_model):
    """The `iris` endpoint serving iris_model, created over REST and READY (one worker for the session)."""
    body = {"name": "iris", "config": {"name": "iris", "served_entities": [
        {"entity_name": iris_model.name, "entity_version": iris_model.version,
         "workload_size": "Small", "scale_to_zero_enabled": False}]}}
    created = stack.api("POST", "/api/2.0/serving-endpoints", json=body)
    assert created.status_code == 200, created.text
    answer = created.json()
    assert answer["name"] == "iris"
    assert answer["state"] == {"ready": "NOT_READY", "config_update": "IN_PROGRESS"}
    endpoint = stack.wait_endpoint("iris")
    assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}, endpoint
    return endpoint


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
