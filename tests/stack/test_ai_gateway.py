"""The AI gateway end to end: rate limits shared by two router processes through Redis, usage tracking,
inference tables (custom and external endpoints) encrypted at rest, and provider keys that never show up in
an answer, a log or any file of the data dir."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
import requests

from services.common.processes import start_service, stop_process
from tests.support.external import ANTHROPIC_KEY, OPENAI_KEY, create_external_endpoint, external_entity
from tests.support.stack import wait_for

pytestmark = pytest.mark.stack

LOGGED = {"inference_table_config": {"enabled": True, "catalog_name": "main", "schema_name": "default"}, "usage_tracking_config": {"enabled": True}}


@pytest.fixture(scope="module")
def second_router(stack):
    """Another router process on the same control plane and Redis, as a second replica would be. It alone
    knows the stand-in secret `{{secrets/llm-keys/openai}}`."""
    env = {"PODIUM_DATA_DIR": str(stack.data_dir), "PODIUM_REDIS_URL": stack.info["redis_url"],
           "PODIUM_CONTROL_PLANE_TARGET": stack.info["control_plane_target"], "PODIUM_ROUTER_PORT": "0",
           "PODIUM_ROUTER_GRPC_PORT": "0", "PODIUM_SECRETS": json.dumps({"llm-keys/openai": OPENAI_KEY}),
           **stack.router_credentials()}
    process, ready = start_service("services.router", env, stack.data_dir / "logs" / "router-2.log")
    yield ready["router_url"]
    stop_process(process)


def _chat(stack, url: str, endpoint: str, content: str = "hi") -> requests.Response:
    return requests.post(f"{url}/serving-endpoints/{endpoint}/invocations", timeout=30,
                         headers={"Authorization": f"Bearer {stack.admin_token}"},
                         json={"messages": [{"role": "user", "content": content}]})


@pytest.mark.parametrize("limits", [
    pytest.param({"ai_gateway": {"rate_limits": [{"calls": 4, "key": "endpoint", "renewal_period": "minute"}]}},
                 id="ai_gateway endpoint limit"),
    pytest.param({"rate_limits": [{"calls": 4, "key": "user", "renewal_period": "minute"}]},
                 id="legacy per-user limit"),
])
def test_n_calls_per_minute_let_exactly_n_through_across_two_routers(stack, fake_providers, second_router, limits):
    name = f"ext-limited-{uuid.uuid4().hex[:6]}"
    create_external_endpoint(stack, name, external_entity(fake_providers, "openai", "llm/v1/chat"), **limits)
    wait_for(lambda: _chat(stack, second_router, name).status_code != 404, what="the second router to know the endpoint")
    # (that probe took one call) Now 9 at once, spread over both routers: exactly 3 more may pass.
    with ThreadPoolExecutor(9) as pool:
        replies = list(pool.map(lambda i: _chat(stack, (stack.url, second_router)[i % 2], name), range(9)))
    assert sorted(r.status_code for r in replies) == [200] * 3 + [429] * 6
    for refused in (r for r in replies if r.status_code == 429):
        assert refused.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
        assert "4 calls per minute" in refused.json()["message"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 15  # the next call frees up in 15 s
    with pytest.raises(openai.RateLimitError):  # the openai SDK sees its own 429 class
        openai.OpenAI(base_url=second_router + "/serving-endpoints", api_key=stack.admin_token, max_retries=0) \
            .chat.completions.create(model=name, messages=[{"role": "user", "content": "one more"}])


def test_limits_put_later_are_enforced_at_once_and_lifted(stack, fake_providers):
    name = "ext-limits-later"
    create_external_endpoint(stack, name, external_entity(fake_providers, "openai", "llm/v1/chat"))
    assert [_chat(stack, stack.url, name).status_code for _ in range(3)] == [200] * 3
    put = stack.api("PUT", f"/api/2.0/serving-endpoints/{name}/rate-limits",
                    json={"rate_limits": [{"calls": 1, "key": "endpoint", "renewal_period": "minute"}]})
    assert put.status_code == 200, put.text
    wait_for(lambda: _chat(stack, stack.url, name).status_code == 429, timeout_s=10, what="the new limit to apply")
    lifted = stack.api("PUT", f"/api/2.0/serving-endpoints/{name}/ai-gateway", json={})
    assert lifted.status_code == 200, lifted.text
    wait_for(lambda: _chat(stack, stack.url, name).status_code == 200, timeout_s=10, what="the limit to be lifted")


def test_a_tokens_per_minute_limit_stops_calls_once_spent(stack, fake_providers):
    name = "ext-token-limited"
    create_external_endpoint(stack, name, external_entity(fake_providers, "anthropic", "llm/v1/chat"),
                             ai_gateway={"rate_limits": [{"tokens": 5, "key": "endpoint", "renewal_period": "minute"}]})
    assert _chat(stack, stack.url, name, "two words").status_code == 200  # 2 in + 4 out: the budget is spent
    [refused] = wait_for(lambda: (r := _chat(stack, stack.url, name)).status_code == 429 and [r], timeout_s=10,
                         what="the spent token budget to refuse calls")  # (charged just after the answer)
    assert "5 tokens per minute" in refused.json()["message"]


def test_a_secret_reference_resolves_where_the_secret_is_known(stack, fake_providers, second_router):
    entity = external_entity(fake_providers, "openai", "llm/v1/chat", key="{{secrets/llm-keys/openai}}")
    created = create_external_endpoint(stack, "ext-by-reference", entity)
    shown = created["config"]["served_entities"][0]["external_model"]["openai_config"]
    assert shown["openai_api_key"] == "{{secrets/llm-keys/openai}}"  # the reference is shown; it is no secret
    ok = wait_for(lambda: (r := _chat(stack, second_router, "ext-by-reference")).status_code == 200 and r,
                  what="the second router to serve the endpoint")
    assert ok.json()["choices"][0]["message"]["content"] == "echo: hi"
    refused = _chat(stack, stack.url, "ext-by-reference")  # not in the secrets store (yet), nor given to this router
    assert refused.status_code == 403 and "secret 'openai' does not exist in scope 'llm-keys'" in refused.text
    # Put it in Podium's secrets store: the first router resolves the reference through the control plane.
    assert stack.api("POST", "/api/2.0/secrets/scopes/create", json={"scope": "llm-keys"}).status_code == 200
    assert stack.api("POST", "/api/2.0/secrets/put", json={"scope": "llm-keys", "key": "openai",
                                                           "string_value": OPENAI_KEY}).status_code == 200
    stored = wait_for(lambda: (r := _chat(stack, stack.url, "ext-by-reference")).status_code == 200 and r,
                      timeout_s=90, what="the stored secret to be resolved (after the router's short cache)")
    assert stored.json()["choices"][0]["message"]["content"] == "echo: hi"


@pytest.fixture(scope="module")
def logged_traffic(stack, fake_providers, iris_model):
    """Requests to a custom-model endpoint and to two external ones whose inference tables are on."""
    create_external_endpoint(stack, "ext-logged-openai", external_entity(fake_providers, "openai", "llm/v1/chat"),
                             ai_gateway=LOGGED)
    create_external_endpoint(stack, "ext-logged-claude", external_entity(fake_providers, "anthropic", "llm/v1/chat"),
                             ai_gateway=LOGGED)
    body = {"name": "iris-logged", "ai_gateway": LOGGED, "config": {"served_entities": [
        {"entity_name": iris_model.name, "entity_version": iris_model.version}]}}
    assert stack.api("POST", "/api/2.0/serving-endpoints", json=body).status_code == 200
    assert stack.wait_endpoint("iris-logged")["state"]["ready"] == "READY"
    marker = uuid.uuid4().hex
    sent = []
    for endpoint in ("ext-logged-openai", "ext-logged-claude"):
        for i in range(2):
            request = {"messages": [{"role": "user", "content": f"secret-{marker}-{i}"}],
                       "client_request_id": f"client-{i}"}
            reply = stack.api("POST", f"/serving-endpoints/{endpoint}/invocations", json=request)
            sent.append((endpoint, request, reply))
    stream = stack.api("POST", "/serving-endpoints/ext-logged-claude/invocations",
                       json={"messages": [{"role": "user", "content": f"secret-{marker}-streamed"}], "stream": True})
    sent.append(("ext-logged-claude", None, stream))
    rows = {"dataframe_records": iris_model.frame.to_dict(orient="records")}
    sent.append(("iris-logged", rows, stack.api("POST", "/serving-endpoints/iris-logged/invocations", json=rows)))
    assert all(reply.status_code == 200 for _, _, reply in sent)
    return marker, sent


def _table(stack, endpoint: str, want: int) -> list[dict]:
    def read():
        rows = stack.api("GET", f"/api/2.0/serving-endpoints/{endpoint}/inference-table").json()["rows"]
        return len(rows) >= want and rows
    return wait_for(read, timeout_s=20, what=f"{want} inference rows of {endpoint}")


def test_inference_table_rows_match_the_requests_sent(stack, logged_traffic):
    marker, sent = logged_traffic
    by_id = {reply.headers["x-request-id"]: (endpoint, request, reply) for endpoint, request, reply in sent}
    rows = _table(stack, "ext-logged-openai", 2) + _table(stack, "ext-logged-claude", 3) + _table(stack, "iris-logged", 1)
    assert len(rows) == len(sent) and {r["databricks_request_id"] for r in rows} == set(by_id)
    for row in rows:
        endpoint, request, reply = by_id[row["databricks_request_id"]]
        assert row["status_code"] == 200 and row["requester"] == "admin"
        assert row["served_entity_name"] == reply.headers["served-model-name"]
        assert row["execution_duration_ms"] >= 0 and row["timestamp_ms"] > 0
        if request is None:  # the stream: its request as sent, its response as relayed
            assert f"secret-{marker}-streamed" in row["request"] and row["response"] == reply.text
            assert row["output_token_count"] == 2  # "echo:", "secret-...-streamed"
            continue
        assert json.loads(row["request"]) == request and row["response"] == reply.text
        if endpoint != "iris-logged":
            assert row["client_request_id"] == request["client_request_id"]
            assert row["input_token_count"] == reply.json()["usage"]["prompt_tokens"]
            assert row["output_token_count"] == reply.json()["usage"]["completion_tokens"]


def test_usage_counts_requests_and_tokens_per_requester(stack, logged_traffic):
    _, sent = logged_traffic
    _table(stack, "ext-logged-openai", 2)
    [usage] = stack.api("GET", "/api/2.0/serving-endpoints/ext-logged-openai/usage").json()["usage"]
    replies = [reply.json() for endpoint, _, reply in sent if endpoint == "ext-logged-openai"]
    assert usage["requester"] == "admin" and usage["request_count"] == 2 and usage["error_count"] == 0
    assert usage["input_token_count"] == sum(r["usage"]["prompt_tokens"] for r in replies)
    assert usage["output_token_count"] == sum(r["usage"]["completion_tokens"] for r in replies)


def test_cli_reads_the_inference_table(stack, logged_traffic):
    marker, _ = logged_traffic
    _table(stack, "ext-logged-openai", 2)
    podium = [sys.executable, "-m", "podium.cli"]
    out = subprocess.run([*podium, "inference-table", "ext-logged-openai", "--host", stack.url,
                          "--token", stack.admin_token, "--json"],
                         capture_output=True, text=True, timeout=60, check=True)
    contents = [json.loads(row["request"])["messages"][0]["content"] for row in json.loads(out.stdout)["rows"]]
    assert contents == [f"secret-{marker}-0", f"secret-{marker}-1"]
    table = subprocess.run([*podium, "usage", "ext-logged-openai", "--host", stack.url, "--token", stack.admin_token],
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert "REQUESTER" in table and "admin" in table.splitlines()[-1]


def test_a_caller_leaving_mid_stream_is_recorded_and_frees_the_provider(stack, fake_providers):
    create_external_endpoint(stack, "ext-logged-leaver", external_entity(fake_providers, "openai", "llm/v1/chat"),
                             ai_gateway=LOGGED)
    reply = stack.api("POST", "/serving-endpoints/ext-logged-leaver/invocations", stream=True,
                      json={"messages": [{"role": "user", "content": "__hold__"}], "stream": True})
    lines = reply.iter_lines()
    assert next(line for line in lines if b"echo:" in line)
    reply.close()  # gone while the provider holds the rest
    fake_providers.release.set()
    [row] = _table(stack, "ext-logged-leaver", 1)
    assert row["status_code"] == 499 and "echo:" in row["response"] and "[DONE]" not in row["response"]


def _files(root: Path):
    return (p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def test_nothing_captured_is_plaintext_on_disk(stack, logged_traffic):
    marker, _ = logged_traffic
    _table(stack, "ext-logged-claude", 3)
    assert (stack.data_dir / "inference.db").exists()
    hits = [str(p) for p in _files(stack.data_dir) if marker.encode() in p.read_bytes()]
    assert not hits, f"captured payloads in plaintext in {hits}"


def test_provider_keys_never_appear_in_any_file_or_log(stack, logged_traffic, second_router):
    key_file = stack.data_dir / "keys" / "master-key.json"
    assert key_file.stat().st_mode & 0o777 == 0o600
    for key in (OPENAI_KEY, ANTHROPIC_KEY):
        hits = [str(p) for p in _files(stack.data_dir) if key.encode() in p.read_bytes()]
        assert not hits, f"a provider key in plaintext in {hits}"
    logs = list((stack.data_dir / "logs").glob("*.log"))
    assert {"router.log", "router-2.log", "control_plane.log"} <= {p.name for p in logs}
