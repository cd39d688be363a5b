"""Per-model environments (PODIUM_WORKER_ENV_MANAGER=virtualenv): a model is served from a virtualenv built
from the requirements it was logged with, cached by their hash so the second start builds nothing; a build
that fails puts the endpoint in UPDATE_FAILED with pip's reason, and its output is the build log."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.support.models import use_registry
from tests.support.stack import start_stack

pytestmark = [pytest.mark.stack, pytest.mark.envbuild]

MODEL_FILE = Path(__file__).parents[1] / "support" / "env_model.py"
PINNED = "tabulate==0.8.10"   # a small wheel the platform does not ship (or ships in another version)


@pytest.fixture(scope="module")
def env_stack(tmp_path_factory):
    running = start_stack(tmp_path_factory.mktemp("podium-envs"), {"PODIUM_WORKER_ENV_MANAGER": "virtualenv"})
    yield running
    running.stop()


def _register(stack, name: str, requirements: list[str]) -> str:
    import mlflow
    from mlflow.models import infer_signature

    use_registry(stack.info)
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    with mlflow.start_run():
        logged = mlflow.pyfunc.log_model(name="model", python_model=str(MODEL_FILE), pip_requirements=requirements,
                                         signature=infer_signature(frame), registered_model_name=name)
    return str(logged.registered_model_version)


def test_model_is_served_from_its_own_environment_and_the_second_start_reuses_it(env_stack):
    version = _register(env_stack, "main.default.needs_tabulate", [PINNED])
    entity = {"entity_name": "main.default.needs_tabulate", "entity_version": version}
    env_stack.serve("own-env", [entity], timeout_s=600)
    reply = env_stack.api("POST", "/serving-endpoints/own-env/invocations", json={"inputs": {"x": [1.0, 2.0]}})
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"] == ["0.8.10", "0.8.10"]   # the pinned version, from the model's env

    envs = [p for p in (env_stack.data_dir / "envs").iterdir() if p.is_dir()]
    assert len(envs) == 1 and (envs[0] / ".complete").exists()
    first_log = (envs[0] / "build.log").read_text()
    assert PINNED in first_log and "tabulate" in first_log
    # The served model's build-logs: pip's output, then the worker saying which environment it runs in.
    build = env_stack.api("GET", f"/api/2.0/serving-endpoints/own-env/served-models/needs_tabulate-{version}"
                                 "/build-logs").json()["logs"]
    # (the model's download, by platform code before the sandboxed worker starts, says "downloaded models:/")
    assert build.index(PINNED) < build.index("environment: the model's own virtualenv") < build.index('"loaded models:/')
    built_at = (envs[0] / ".complete").stat().st_mtime

    # A second endpoint of the same requirements: served from the cached environment, nothing rebuilt.
    env_stack.serve("own-env-again", [entity], timeout_s=120)
    again = env_stack.api("POST", "/serving-endpoints/own-env-again/invocations", json={"inputs": {"x": [3.0]}})
    assert again.json()["predictions"] == ["0.8.10"]
    assert [p for p in (env_stack.data_dir / "envs").iterdir() if p.is_dir()] == envs
    assert (envs[0] / ".complete").stat().st_mtime == built_at
    logs = [p.read_text() for p in (env_stack.data_dir / "logs").glob("*/build.log")]
    assert any(text.startswith(f"reusing the cached environment {envs[0].name}") for text in logs)


def test_a_failed_build_fails_the_update_with_pips_reason(env_stack):
    version = _register(env_stack, "main.default.unbuildable", ["podium-no-such-package==9.9.9"])
    created = env_stack.api("POST", "/api/2.0/serving-endpoints", json={"name": "unbuildable", "config": {
        "served_entities": [{"entity_name": "main.default.unbuildable", "entity_version": version}]}})
    assert created.status_code == 200, created.text
    endpoint = env_stack.wait_endpoint("unbuildable", timeout_s=600)
    assert endpoint["state"] == {"ready": "NOT_READY", "config_update": "UPDATE_FAILED"}
    message = endpoint["pending_config"]["served_entities"][0]["state"]["deployment_state_message"]
    assert "environment failed" in message and "podium-no-such-package" in message, message
    logs = [p.read_text() for p in (env_stack.data_dir / "logs").glob("*/build.log")]
    assert any("podium-no-such-package" in text and "ERROR" in text for text in logs)
    build = env_stack.api("GET", f"/api/2.0/serving-endpoints/unbuildable/served-models/unbuildable-{version}"
                                 "/build-logs").json()["logs"]
    assert "podium-no-such-package" in build and "ERROR" in build
