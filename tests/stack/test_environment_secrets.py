"""`{{secrets/scope/key}}` references in a served entity's `environment_vars`: resolved when a replica
starts and given to the model only as its process environment (the model sees the value; GET, replica
records, logs, the data directory and every command line never do); a reference to a missing secret, or to
a scope the config's writer may not READ, fails the create and the config update with a clear reason."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import pandas as pd
import pytest

from tests.support.external import create_external_endpoint, external_entity
from tests.support.models import use_registry
from tests.support.stack import service_pids, worker_pids

pytestmark = pytest.mark.stack

MODEL_FILE = Path(__file__).parents[1] / "support" / "env_secret_model.py"
SCOPE = "env-secrets"


@pytest.fixture(scope="module")
def digest_model(stack) -> dict:
    import mlflow
    from mlflow.models import infer_signature

    use_registry(stack.info)
    frame = pd.DataFrame({"name": ["MODEL_SECRET"]})
    with mlflow.start_run():
        logged = mlflow.pyfunc.log_model(name="model", python_model=str(MODEL_FILE),
                                         signature=infer_signature(frame, ["x"]),
                                         registered_model_name="main.default.env_digest")
    return {"entity_name": "main.default.env_digest", "entity_version": str(logged.registered_model_version),
            "workload_size": "Small", "scale_to_zero_enabled": False}


@pytest.fixture(scope="module")
def secret_value(stack) -> str:
    value = "sk-env-" + secrets.token_hex(16)
    assert stack.api("POST", "/api/2.0/secrets/scopes/create", json={"scope": SCOPE}).status_code == 200
    assert stack.api("POST", "/api/2.0/secrets/put", json={"scope": SCOPE, "key": "model",
                                                            "string_value": value}).status_code == 200
    return value


def _digests(stack, name: str, variables: list[str]) -> list[str]:
    reply = stack.api("POST", f"/serving-endpoints/{name}/invocations",
                      json={"dataframe_split": {"columns": ["name"], "data": [[v] for v in variables]}})
    assert reply.status_code == 200, reply.text
    return reply.json()["predictions"]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_the_value_reaches_the_models_environment_and_nothing_else(stack, digest_model, secret_value):
    reference = f"{{{{secrets/{SCOPE}/model}}}}"
    env = {"MODEL_SECRET": reference, "WRAPPED": f"Bearer {reference}", "PLAIN": "visible"}
    endpoint = stack.serve("env-secret", [{**digest_model, "environment_vars": env}])
    assert _digests(stack, "env-secret", ["MODEL_SECRET", "WRAPPED", "PLAIN", "ABSENT"]) == [
        _sha256(secret_value), _sha256(f"Bearer {secret_value}"), _sha256("visible"), "unset"]

    # GET shows the references as written, never the value.
    got = stack.api("GET", "/api/2.0/serving-endpoints/env-secret")
    assert got.json()["config"]["served_entities"][0]["environment_vars"] == env
    assert secret_value not in got.text and secret_value not in str(endpoint)
    listed = stack.api("GET", "/api/2.0/serving-endpoints").text
    logs = stack.api("GET", f"/api/2.0/serving-endpoints/env-secret/served-models/"
                            f"{endpoint['config']['served_entities'][0]['name']}/logs").text
    build_logs = stack.api("GET", f"/api/2.0/serving-endpoints/env-secret/served-models/"
                                  f"{endpoint['config']['served_entities'][0]['name']}/build-logs").text
    assert secret_value not in listed + logs + build_logs

    # The one replica holds it in its environment, and no file of the stack (database, replica records,
    # every log) and no command line holds it.
    [worker] = worker_pids(stack.data_dir, f"models:/{digest_model['entity_name']}/{digest_model['entity_version']}")
    assert f"MODEL_SECRET={secret_value}".encode() in Path(f"/proc/{worker}/environ").read_bytes()
    records = list((stack.data_dir / "replicas").glob("*.json"))
    assert records
    for path in [p for p in stack.data_dir.rglob("*") if p.is_file() and not p.is_symlink() and p.suffix != ".sock"]:
        try:
            content = path.read_bytes()
        except FileNotFoundError:   # a journal or a replica record that went away meanwhile
            continue
        assert secret_value.encode() not in content, f"the secret found in {path}"
    pids = [worker] + [pid for module in ("services.control_plane", "services.router", "services.scaler")
                       for pid in service_pids(stack.data_dir, module)]
    for pid in pids:
        assert secret_value.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert stack.api("DELETE", "/api/2.0/serving-endpoints/env-secret").status_code == 200


@pytest.mark.parametrize("reference, status, code, needle", [
    pytest.param("{{secrets/env-secrets/absent}}", 400, "INVALID_PARAMETER_VALUE",
                 "environment_vars.MODEL_SECRET references secret {{secrets/env-secrets/absent}}, which does not exist",
                 id="a missing secret"),
    pytest.param("{{secrets/no-such-scope/k}}", 400, "INVALID_PARAMETER_VALUE", "does not exist",
                 id="a missing scope (for an admin)"),
])
def test_a_reference_to_a_missing_secret_fails_create_and_update(stack, fake_providers, digest_model, secret_value,
                                                                 reference, status, code, needle):
    entity = {**digest_model, "environment_vars": {"MODEL_SECRET": reference}}
    created = stack.api("POST", "/api/2.0/serving-endpoints", json={"name": "env-missing", "config": {
        "served_entities": [entity]}})
    assert (created.status_code, created.json()["error_code"]) == (status, code), created.text
    assert needle in created.json()["message"]
    assert stack.api("GET", "/api/2.0/serving-endpoints/env-missing").status_code == 404

    # An external model is ready at once (no replica): its config update to the entity is refused the same way.
    if stack.api("GET", "/api/2.0/serving-endpoints/env-update").status_code == 404:
        create_external_endpoint(stack, "env-update", external_entity(fake_providers, "openai", "llm/v1/chat"))
    updated = stack.api("PUT", "/api/2.0/serving-endpoints/env-update/config", json={"served_entities": [entity]})
    assert (updated.status_code, updated.json()["error_code"]) == (status, code), updated.text
    assert needle in updated.json()["message"]
    kept = stack.api("GET", "/api/2.0/serving-endpoints/env-update").json()
    assert "external_model" in kept["config"]["served_entities"][0] and "pending_config" not in kept


def test_a_writer_without_read_on_the_scope_is_refused(stack, digest_model, secret_value):
    token = stack.user_token("env-secret-user")
    grant = {"changes": [{"principal": "env-secret-user", "add": ["EXECUTE"]}]}   # may serve the model
    assert stack.api("PATCH", f"/api/2.1/unity-catalog/permissions/function/{digest_model['entity_name']}",
                     json=grant).status_code == 200
    entity = {**digest_model, "environment_vars": {"MODEL_SECRET": f"{{{{secrets/{SCOPE}/model}}}}"}}
    refused = stack.api_as(token, "POST", "/api/2.0/serving-endpoints", json={"name": "env-stolen", "config": {
        "served_entities": [entity]}})
    assert refused.status_code == 403, refused.text
    assert refused.json()["error_code"] == "PERMISSION_DENIED"
    assert f"READ permission on secret scope '{SCOPE}'" in refused.json()["message"]
    assert secret_value not in refused.text
