"""Agents that call other endpoints: a model logged with `resources=[DatabricksServingEndpoint(...)]` gets,
in its replica's environment, DATABRICKS_HOST (the router) and an OAuth client credential
(DATABRICKS_CLIENT_ID / DATABRICKS_CLIENT_SECRET), never a long-lived token. The databricks-sdk's oauth-m2m
exchanges it at the router's token endpoint for access tokens that live PODIUM_REPLICA_TOKEN_TTL_S and fetches
new ones as they expire; each is a credential of whoever wrote the endpoint's config that may query exactly
the declared endpoints and nothing else. Code written for Databricks (`WorkspaceClient()`) calls them
unmodified; usage counts the writer; the credential, and every access token minted from it, is refused once
the replica is gone.

The module runs its own stack, whose replica access tokens live TTL_S seconds."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.support.external import create_external_endpoint, external_entity
from tests.support.models import use_registry
from tests.support.stack import service_pids, start_stack, wait_for, worker_pids

pytestmark = pytest.mark.stack

MODEL_FILE = Path(__file__).parents[1] / "support" / "agent_caller_model.py"
OWNER = "agent-owner"
USAGE = {"usage_tracking_config": {"enabled": True}}
CHAT = {"messages": [{"role": "user", "content": "from outside"}]}
TTL_S = 15   # long enough to see a revoked token refused before it expires, short enough to wait out


@pytest.fixture(scope="module")
def agent_stack(tmp_path_factory):
    running = start_stack(tmp_path_factory.mktemp("scoped"), {"PODIUM_AUTH_CACHE_TTL_S": "1",
                                                             "PODIUM_REPLICA_TOKEN_TTL_S": str(TTL_S)})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def agent_model(agent_stack) -> dict:
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.models.resources import DatabricksServingEndpoint

    use_registry(agent_stack.info)
    frame = pd.DataFrame({"endpoint": ["ext-a"]})
    with mlflow.start_run():
        logged = mlflow.pyfunc.log_model(name="model", python_model=str(MODEL_FILE), pip_requirements=["mlflow"],
                                         resources=[DatabricksServingEndpoint(endpoint_name="ext-a")],
                                         signature=infer_signature(frame, ["x"]),
                                         registered_model_name="main.default.agent_caller")
    return {"entity_name": "main.default.agent_caller", "entity_version": str(logged.registered_model_version),
            "workload_size": "Small", "scale_to_zero_enabled": False}


@pytest.fixture(scope="module")
def agent(agent_stack, fake_providers, agent_model) -> dict:
    """Endpoints ext-a and ext-b (the owner may query both), and `agent` (the owner's), whose model declared
    ext-a only; its answers to each row, the credential it was given among them."""
    stack = agent_stack
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
    return {"owner_token": token, "answers": _ask(stack, token, ["ext-a", "ext-b", "agent", "host", "credential",
                                                                 "GET /api/2.0/serving-endpoints",
                                                                 "GET /api/2.0/secrets/scopes/list"])}


def _ask(stack, token: str, rows: list[str]) -> dict[str, dict]:
    reply = stack.api_as(token, "POST", "/serving-endpoints/agent/invocations",
                         json={"dataframe_split": {"columns": ["endpoint"], "data": [[r] for r in rows]}})
    assert reply.status_code == 200, reply.text
    return dict(zip(rows, (json.loads(p) for p in reply.json()["predictions"])))


def _proc(pid: int, name: str) -> bytes:
    try:
        return (Path("/proc") / str(pid) / name).read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def _replica_credentials(stack) -> int:
    """How many replica credentials the control plane keeps (their records: never the credentials)."""
    with sqlite3.connect(stack.data_dir / "podium.db") as db:
        return db.execute("SELECT count(*) FROM podium_credentials WHERE kind = 'replica'").fetchone()[0]


def _grant(stack, client_id: str, client_secret: str):
    """The client-credentials grant, as the SDK's oauth-m2m sends it (HTTP Basic, scope all-apis)."""
    return stack.api_as(None, "POST", "/oidc/v1/token", data={"grant_type": "client_credentials",
                                                               "scope": "all-apis"}, auth=(client_id, client_secret))


def _sdk_client(stack, credential: dict, monkeypatch):
    """What the replica's `WorkspaceClient()` builds from its environment: only the replica's variables."""
    from databricks.sdk import WorkspaceClient

    for name in ("DATABRICKS_TOKEN", "DATABRICKS_HOST", "DATABRICKS_CONFIG_PROFILE", "DATABRICKS_AUTH_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(stack.data_dir / "no-databrickscfg"))
    for name, value in credential.items():
        monkeypatch.setenv(name, value)
    return WorkspaceClient()


def test_an_agent_queries_exactly_the_endpoints_it_declared(agent_stack, fake_providers, agent):
    stack, answers = agent_stack, agent["answers"]
    assert answers["ext-a"] == {"status": 200, "text": "echo: hello agent"}, answers
    for refused in ("ext-b", "agent", "GET /api/2.0/serving-endpoints", "GET /api/2.0/secrets/scopes/list"):
        assert answers[refused]["error_code"] == "PERMISSION_DENIED", (refused, answers[refused])
    # The SDK signs in with the client credential (oauth-m2m): the replica holds no token that could outlive it.
    assert answers["host"] == {"host": stack.url, "auth_type": "oauth-m2m"}
    credential = answers["credential"]
    assert set(credential) == {"DATABRICKS_HOST", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"}, credential
    assert credential["DATABRICKS_CLIENT_ID"].startswith("podium-replica-")
    # What the agent sent reached the provider, and counts as its owner's usage.
    assert fake_providers.requests[-1]["body"]["messages"][0]["content"] == "hello agent"
    [usage] = stack.api("GET", "/api/2.0/serving-endpoints/ext-a/usage").json()["usage"]
    assert (usage["requester"], usage["request_count"]) == (OWNER, 1)
    assert stack.api("GET", "/api/2.0/serving-endpoints/ext-b/usage").json().get("usage", []) == []

    # The credential from outside the replica: the client secret is no bearer token, only a grant's input.
    client_id, client_secret = credential["DATABRICKS_CLIENT_ID"], credential["DATABRICKS_CLIENT_SECRET"]
    assert stack.api_as(client_secret, "POST", "/serving-endpoints/ext-a/invocations", json=CHAT).status_code == 401
    assert _grant(stack, client_id, client_secret[:-1] + ("1" if client_secret.endswith("0") else "0")).status_code == 401
    granted = _grant(stack, client_id, client_secret)
    assert granted.status_code == 200, granted.text
    assert (granted.json()["token_type"], granted.json()["expires_in"]) == ("Bearer", TTL_S)
    access_token = granted.json()["access_token"]
    assert stack.api_as(access_token, "POST", "/serving-endpoints/ext-a/invocations", json=CHAT).status_code == 200
    for method, path, body in [("POST", "/serving-endpoints/ext-b/invocations", CHAT),
                               ("POST", "/serving-endpoints/chat/completions", {**CHAT, "model": "ext-b"}),
                               ("GET", "/api/2.0/serving-endpoints/ext-a", None),
                               ("POST", "/api/2.0/token/create", {"comment": "escalate"}),
                               ("GET", "/api/2.0/preview/scim/v2/Me", None),
                               ("GET", "/api/2.0/secrets/list?scope=any", None),
                               ("GET", "/api/2.1/unity-catalog/permissions/function/main.default.agent_caller", None),
                               ("POST", "/api/2.0/accounts/servicePrincipals/1/credentials/secrets", {})]:
        refused = stack.api_as(access_token, method, path, json=body)
        assert (refused.status_code, refused.json()["error_code"]) == (403, "PERMISSION_DENIED"), (path, refused.text)
    for path in [p for p in stack.data_dir.rglob("*") if p.is_file() and not p.is_symlink() and p.suffix != ".sock"]:
        try:
            content = path.read_bytes()
        except FileNotFoundError:   # a journal or a replica record that went away meanwhile
            continue
        assert client_secret.encode() not in content, f"the replica's client secret found in {path}"
        assert access_token.encode() not in content, f"a replica access token found in {path}"
    # It reaches the replica through its environment only (a forked replica's is not in /proc's copy): on no
    # command line, in no other process's environment.
    workers = worker_pids(stack.data_dir)
    services = ("services.control_plane", "services.router", "services.scaler")
    pids = [stack.process.pid, *workers] + [pid for module in services for pid in service_pids(stack.data_dir, module)]
    assert len(pids) >= 5
    assert {pid for pid in pids if client_secret.encode() in _proc(pid, "environ")} <= set(workers)
    assert not [pid for pid in pids if client_secret.encode() in _proc(pid, "cmdline")]


def test_access_tokens_expire_and_the_sdk_fetches_new_ones(agent_stack, agent, monkeypatch):
    stack, credential = agent_stack, agent["answers"]["credential"]
    client = _sdk_client(stack, credential, monkeypatch)   # one client, across several tokens' lifetimes
    assert client.config.auth_type == "oauth-m2m"
    first = client.config.authenticate()["Authorization"]
    assert first.startswith("Bearer ")
    reply = client.api_client.do("POST", "/serving-endpoints/ext-a/invocations", body=CHAT)
    assert reply["choices"][0]["message"]["content"] == "echo: from outside"
    time.sleep(TTL_S + 1)   # the time itself is what is tested: the first access token has expired
    expired = stack.api_as(first[len("Bearer "):], "POST", "/serving-endpoints/ext-a/invocations", json=CHAT)
    assert (expired.status_code, expired.json()["error_code"]) == (401, "UNAUTHENTICATED")
    # The same client goes on querying: the SDK fetched a new access token with the client credential.
    reply = client.api_client.do("POST", "/serving-endpoints/ext-a/invocations", body=CHAT)
    assert reply["choices"][0]["message"]["content"] == "echo: from outside"
    assert client.config.authenticate()["Authorization"] != first
    # MLflow's deployment client signs in from the same environment, with no configuration.
    from mlflow.deployments import get_deploy_client
    answer = get_deploy_client("databricks").predict(endpoint="ext-a", inputs=CHAT)
    assert answer["choices"][0]["message"]["content"] == "echo: from outside"
    # So does the agent in its replica, one TTL after it first signed in.
    again = _ask(stack, agent["owner_token"], ["ext-a", "ext-b"])
    assert again["ext-a"] == {"status": 200, "text": "echo: hello agent"}, again
    assert again["ext-b"]["error_code"] == "PERMISSION_DENIED", again


def test_a_stopped_replica_s_credential_and_tokens_are_refused(agent_stack, agent):
    stack, credential = agent_stack, agent["answers"]["credential"]
    client_id, client_secret = credential["DATABRICKS_CLIENT_ID"], credential["DATABRICKS_CLIENT_SECRET"]
    granted = _grant(stack, client_id, client_secret)
    assert granted.status_code == 200, granted.text
    access_token, expires_at = granted.json()["access_token"], time.monotonic() + TTL_S
    assert stack.api_as(access_token, "POST", "/serving-endpoints/ext-a/invocations", json=CHAT).status_code == 200

    # The credential lives as long as the replica: deleting the endpoint revokes it, and the access tokens it
    # got are refused at once, not when they expire.
    assert _replica_credentials(stack) >= 1
    assert stack.api_as(agent["owner_token"], "DELETE", "/api/2.0/serving-endpoints/agent").status_code == 200
    wait_for(lambda: stack.api_as(access_token, "POST", "/serving-endpoints/ext-a/invocations",
                                  json=CHAT).status_code == 401,
             timeout_s=max(0.5, expires_at - time.monotonic() - 2), what="the access token refused before it expires")
    refused = _grant(stack, client_id, client_secret)
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client"), refused.text
    wait_for(lambda: _replica_credentials(stack) == 0, timeout_s=60, what="the replica credential revoked")
    assert _grant(stack, client_id, client_secret).status_code == 401
