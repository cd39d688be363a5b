"""Agents that call other endpoints: a model logged with `resources=[DatabricksServingEndpoint(...)]` gets,
in its replica's environment, DATABRICKS_HOST (the router) and DATABRICKS_TOKEN: a credential of whoever
wrote the endpoint's config that may query exactly the declared endpoints and nothing else. Code written for
Databricks (`WorkspaceClient()`) calls them unmodified; usage counts the writer; the credential is revoked
when the replica is gone."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from tests.support.external import create_external_endpoint, external_entity
from tests.support.models import use_registry
from tests.support.stack import wait_for

pytestmark = pytest.mark.stack

MODEL_FILE = Path(__file__).parents[1] / "support" / "agent_caller_model.py"
OWNER = "agent-owner"
USAGE = {"usage_tracking_config": {"enabled": True}}
CHAT = {"messages": [{"role": "user", "content": "from outside"}]}


@pytest.fixture(scope="module")
def agent_model(stack) -> dict:
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.models.resources import DatabricksServingEndpoint

    use_registry(stack.info)
    frame = pd.DataFrame({"endpoint": ["ext-a"]})
    with mlflow.start_run():
        logged = mlflow.pyfunc.log_model(name="model", python_model=str(MODEL_FILE), pip_requirements=["mlflow"],
                                         resources=[DatabricksServingEndpoint(endpoint_name="ext-a")],
                                         signature=infer_signature(frame, ["x"]),
                                         registered_model_name="main.default.agent_caller")
    return {"entity_name": "main.default.agent_caller", "entity_version": str(logged.registered_model_version),
            "workload_size": "Small", "scale_to_zero_enabled": False}


def _replica_credentials(stack) -> int:
    """How many replica credentials the control plane keeps (their records: never the credentials)."""
    with sqlite3.connect(stack.data_dir / "podium.db") as db:
        return db.execute("SELECT count(*) FROM podium_credentials WHERE kind = 'replica'").fetchone()[0]


def test_an_agent_queries_exactly_the_endpoints_it_declared(stack, fake_providers, agent_model):
    token = stack.user_token(OWNER)
    for name in ("ext-a", "ext-b"):   # the owner may query both: only the declaration tells them apart
        created = create_external_endpoint(stack, name, external_entity(fake_providers, "openai", "llm/v1/chat"),
                                           ai_gateway=USAGE)
        granted = stack.api("PATCH", f"/api/2.0/permissions/serving-endpoints/{created['id']}", json={
            "access_control_list": [{"user_name": OWNER, "permission_level": "CAN_QUERY"}]})
        assert granted.status_code == 200, granted.text
    grant = {"changes": [{"principal": OWNER, "add": ["EXECUTE"]}]}
    assert stack.api("PATCH", f"/api/2.1/unity-catalog/permissions/function/{agent_model['entity_name']}",
                     json=grant).status_code == 200
    created = stack.api_as(token, "POST", "/api/2.0/serving-endpoints", json={"name": "agent", "config": {
        "served_entities": [agent_model]}})
    assert created.status_code == 200, created.text
    endpoint = stack.wait_endpoint("agent", timeout_s=300)
    assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}, endpoint

    rows = ["ext-a", "ext-b", "agent", "host", "token", "GET /api/2.0/serving-endpoints",
            "GET /api/2.0/secrets/scopes/list"]
    reply = stack.api_as(token, "POST", "/serving-endpoints/agent/invocations",
                         json={"dataframe_split": {"columns": ["endpoint"], "data": [[r] for r in rows]}})
    assert reply.status_code == 200, reply.text
    answers = dict(zip(rows, (json.loads(p) for p in reply.json()["predictions"])))
    assert answers["ext-a"] == {"status": 200, "text": "echo: hello agent"}, answers
    for refused in ("ext-b", "agent", "GET /api/2.0/serving-endpoints", "GET /api/2.0/secrets/scopes/list"):
        assert answers[refused]["error_code"] == "PERMISSION_DENIED", (refused, answers[refused])
    assert answers["host"] == {"host": stack.url}
    # What the agent sent reached the provider, and counts as its owner's usage.
    assert fake_providers.requests[-1]["body"]["messages"][0]["content"] == "hello agent"
    [usage] = stack.api("GET", "/api/2.0/serving-endpoints/ext-a/usage").json()["usage"]
    assert (usage["requester"], usage["request_count"]) == (OWNER, 1)
    assert stack.api("GET", "/api/2.0/serving-endpoints/ext-b/usage").json().get("usage", []) == []

    # The credential itself, from outside the replica: the same answers; and it is stored nowhere.
    credential = answers["token"]["token"]
    assert stack.api_as(credential, "POST", "/serving-endpoints/ext-a/invocations", json=CHAT).status_code == 200
    for method, path, body in [("POST", "/serving-endpoints/ext-b/invocations", CHAT),
                               ("POST", "/serving-endpoints/chat/completions", {**CHAT, "model": "ext-b"}),
                               ("GET", "/api/2.0/serving-endpoints/ext-a", None),
                               ("POST", "/api/2.0/token/create", {"comment": "escalate"}),
                               ("GET", "/api/2.0/preview/scim/v2/Me", None)]:
        refused = stack.api_as(credential, method, path, json=body)
        assert (refused.status_code, refused.json()["error_code"]) == (403, "PERMISSION_DENIED"), (path, refused.text)
    for path in [p for p in stack.data_dir.rglob("*") if p.is_file() and not p.is_symlink() and p.suffix != ".sock"]:
        try:
            assert credential.encode() not in path.read_bytes(), f"the replica credential found in {path}"
        except FileNotFoundError:   # a journal or a replica record that went away meanwhile
            continue

    # The credential lives as long as the replica: deleting the endpoint revokes it.
    assert _replica_credentials(stack) >= 1
    assert stack.api_as(token, "DELETE", "/api/2.0/serving-endpoints/agent").status_code == 200
    wait_for(lambda: _replica_credentials(stack) == 0, timeout_s=60, what="the replica credential revoked")
    wait_for(lambda: stack.api_as(credential, "POST", "/serving-endpoints/ext-a/invocations",
                                  json=CHAT).status_code == 401, timeout_s=30, what="the credential refused")
