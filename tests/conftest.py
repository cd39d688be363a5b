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

from tests.support import models
from tests.support.stack import RunningStack, start_stack

REPO_ROOT = Path(__file__).resolve().parent.parent


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
