"""Shared fixtures: a real MLflow registry with tiny models, and a real stack started with `podium up`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import flavors, models
from tests.support.external import ANTHROPIC_KEY, OPENAI_KEY
from tests.support.fake_providers import FakeProviders
from tests.support.stack import RunningStack, start_stack

REPO_ROOT = Path(__file__).resolve().parent.parent
# Nothing is fetched from a model hub, here or in the workers the stacks start (they inherit this).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> RunningStack:
    """One `podium up` for the session (real processes, embedded Redis, SQLite, MLflow sqlite registry)."""
    running = start_stack(tmp_path_factory.mktemp("podium"))
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
    """A databricks-sdk WorkspaceClient pointed at the stack, as a user would build it (any token for now)."""
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=stack.url, token="anything")


@pytest.fixture(scope="session")
def fake_providers() -> FakeProviders:
    """Local servers speaking OpenAI's and Anthropic's wire formats (the suite's only stand-ins)."""
    providers = FakeProviders(OPENAI_KEY, ANTHROPIC_KEY).start()
    yield providers
    providers.stop()
