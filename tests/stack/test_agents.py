"""MLflow generative models served like Databricks agent endpoints: a ResponsesAgent, a ChatAgent, a ChatModel and
a plain pyfunc with predict_stream (tests/support/agent_code.py), logged from code, registered, served through
`podium up` and queried with unmodified clients (mlflow's Databricks deployment client, the openai SDK, gRPC,
and databricks-openai and databricks-langchain in a user's environment of their own: tests/support/client_venv.py).
Non-streaming answers are byte for byte what MLflow's scoring server answers in-process; streams are the events
the model yields in-process, relayed one by one as the model yields them."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.support import agent_models
from tests.support.agent_code import FAIL_MIDSTREAM, GATE_WAIT_S

pytestmark = pytest.mark.stack

ENDPOINTS = {"responses": "agent-responses", "chat_agent": "agent-chat", "chat_model": "agent-chat-model",
             "streaming": "agent-streaming"}
PAYLOADS = {
    "responses": {"input": [{"role": "user", "content": "what is podium"}], "custom_inputs": {"k": 1}},
    "chat_agent": {"messages": [{"role": "user", "content": "what is podium"}]},
    "chat_model": {"messages": [{"role": "user", "content": "what is podium"}], "max_tokens": 20},
    "streaming": {"prompt": "what is podium"},
}
TASKS = {"responses": "agent/v1/responses", "chat_agent": "agent/v2/chat", "chat_model": "agent/v1/chat",
         "streaming": ""}


@pytest.fixture(scope="module")
def agents(stack) -> dict[str, agent_models.RegisteredAgent]:
    registered = {kind: agent_models.register_agent(stack.info, kind, f"main.agents.{kind}")
                  for kind in agent_models.KINDS}
    for kind, agent in registered.items():   # created together, so their replicas start together
        created = stack.api("POST", "/api/2.0/serving-endpoints", json={"name": ENDPOINTS[kind], "config": {
            "served_entities": [{"name": kind, "entity_name": agent.name, "entity_version": agent.version,
                                 "workload_size": "Small", "scale_to_zero_enabled": False}]}})
        assert created.status_code == 200, created.text
    for kind in registered:
        endpoint = stack.wait_endpoint(ENDPOINTS[kind], timeout_s=300)
        assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}, endpoint
    return registered


@pytest.fixture(scope="module")
def pyfuncs(agents) -> dict:
    """The same registered models, loaded in this process."""
    import mlflow

    return {kind: mlflow.pyfunc.load_model(agent.uri) for kind, agent in agents.items()}


@pytest.fixture
def deploy_client(stack, monkeypatch):
    from mlflow.deployments import get_deploy_client

    monkeypatch.setenv("DATABRICKS_HOST", stack.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", stack.admin_token)
    return get_deploy_client("databricks")


@pytest.fixture
def openai_client(stack):
    import openai

    return openai.OpenAI(base_url=stack.url + "/serving-endpoints", api_key=stack.admin_token, max_retries=0)


def _sse_lines(reply: requests.Response) -> list[str]:
    return [line for line in reply.iter_lines(decode_unicode=True) if line]


@pytest.mark.parametrize("kind", agent_models.KINDS)
def test_answer_is_what_mlflow_scoring_server_answers(stack, agents, pyfuncs, kind):
    reply = stack.api("POST", f"/serving-endpoints/{ENDPOINTS[kind]}/invocations", json=PAYLOADS[kind])
    status, expected = agent_models.scoring_server_answer(pyfuncs[kind], PAYLOADS[kind])
    assert reply.status_code == status == 200, reply.text
    assert reply.content.decode() == expected   # the model's own dict, not {"predictions": ...}
    assert "echo: what is podium" in expected and reply.headers["served-model-name"] == kind


@pytest.mark.parametrize("kind", agent_models.KINDS)
def test_endpoint_task_is_the_models(stack, agents, kind):
    endpoint = stack.api("GET", f"/api/2.0/serving-endpoints/{ENDPOINTS[kind]}").json()
    assert endpoint["task"] == TASKS[kind]


@pytest.mark.parametrize("kind", agent_models.KINDS)
def test_stream_is_data_only_events_then_done(stack, agents, pyfuncs, kind):
    reply = stack.api("POST", f"/serving-endpoints/{ENDPOINTS[kind]}/invocations",
                      json={**PAYLOADS[kind], "stream": True}, stream=True)
    assert reply.status_code == 200 and reply.headers["Content-Type"].startswith("text/event-stream")
    lines = _sse_lines(reply)
    assert all(line.startswith("data: ") for line in lines), lines   # no event:, id: or comments (mlflow's rule)
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[len("data: "):]) for line in lines[:-1]]
    assert events == agent_models.in_process_stream(pyfuncs[kind], PAYLOADS[kind])
    assert len(events) >= 3


@pytest.mark.parametrize("kind", ["responses", "chat_agent", "chat_model"])
def test_mlflow_deployments_predict_and_predict_stream(deploy_client, agents, pyfuncs, kind):
    answer = deploy_client.predict(endpoint=ENDPOINTS[kind], inputs=PAYLOADS[kind])
    assert json.loads(json.dumps(answer)) == json.loads(agent_models.scoring_server_answer(pyfuncs[kind],
                                                                                           PAYLOADS[kind])[1])
    events = list(deploy_client.predict_stream(endpoint=ENDPOINTS[kind], inputs=PAYLOADS[kind]))
    assert events == agent_models.in_process_stream(pyfuncs[kind], PAYLOADS[kind])


def test_return_trace_answers_the_calls_mlflow_trace(stack, agents, pyfuncs):
    from mlflow.entities import Trace

    payload = {**PAYLOADS["responses"], "databricks_options": {"return_trace": True}}
    reply = stack.api("POST", "/serving-endpoints/agent-responses/invocations", json=payload)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    trace = Trace.from_dict(answer.pop("databricks_output")["trace"])
    assert answer == json.loads(agent_models.scoring_server_answer(pyfuncs["responses"], payload)[1])
    [span] = trace.data.spans   # the ResponsesAgent's predict, traced in the replica
    assert span.name == "predict" and span.inputs["request"]["input"] == [
        {**PAYLOADS["responses"]["input"][0], "type": "message", "status": None}]
    assert span.inputs["request"]["custom_inputs"] == {"k": 1} and "echo: what is podium" in json.dumps(span.outputs)
    assert trace.info.state.value == "OK" and trace.info.client_request_id
    plain = stack.api("POST", "/serving-endpoints/agent-responses/invocations", json=PAYLOADS["responses"])
    assert plain.status_code == 200 and "databricks_output" not in plain.json()


def test_return_trace_is_copied_by_mlflow_genai_evaluates_helper(agents, deploy_client):
    # mlflow.genai.evaluate on an endpoint adds return_trace to each query and copies the trace it finds in
    # databricks_output into the evaluation's experiment (mlflow/genai/evaluation/base.py).
    import mlflow
    from mlflow.tracing.utils.copy import copy_trace_to_experiment

    answer = deploy_client.predict(endpoint=ENDPOINTS["responses"],
                                   inputs={**PAYLOADS["responses"], "databricks_options": {"return_trace": True}})
    trace_id = copy_trace_to_experiment(answer.pop("databricks_output", {}).get("trace"))
    mlflow.flush_trace_async_logging()
    copied = mlflow.get_trace(trace_id)
    assert [span.name for span in copied.data.spans] == ["predict"]
    assert copied.data.spans[0].inputs["request"]["custom_inputs"] == {"k": 1}


@pytest.mark.parametrize("kind", ["chat_agent", "chat_model", "streaming"])
def test_return_trace_of_a_model_that_traces_nothing_is_mlflows_answer(stack, agents, pyfuncs, kind):
    # These interfaces record no span in MLflow 3 (ResponsesAgent's wrapper does): no trace, no databricks_output.
    payload = {**PAYLOADS[kind], "databricks_options": {"return_trace": True}}
    reply = stack.api("POST", f"/serving-endpoints/{ENDPOINTS[kind]}/invocations", json=payload)
    status, expected = agent_models.scoring_server_answer(pyfuncs[kind], payload)
    assert reply.status_code == status == 200, reply.text
    assert reply.content.decode() == expected and "databricks_output" not in reply.json()


def test_a_stream_that_asks_for_its_trace_ends_with_it(stack, agents, pyfuncs):
    from mlflow.entities import Trace

    payload = {**PAYLOADS["responses"], "databricks_options": {"return_trace": True}, "stream": True}
    reply = stack.api("POST", "/serving-endpoints/agent-responses/invocations", json=payload, stream=True)
    assert reply.status_code == 200, reply.text
    lines = _sse_lines(reply)
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[len("data: "):]) for line in lines[:-1]]
    assert events[:-1] == agent_models.in_process_stream(pyfuncs["responses"], PAYLOADS["responses"])
    trace = Trace.from_dict(events[-1]["databricks_output"]["trace"])
    assert [span.name for span in trace.data.spans] == ["predict_stream"]
    assert trace.data.spans[0].inputs["request"]["custom_inputs"] == {"k": 1}


def test_first_event_is_relayed_before_the_model_goes_on(stack, agents, tmp_path_factory):
    # The model yields its first event, then waits for the gate file this test creates only once it has read
    # that event: a path that buffered the stream would hold the event until the gate's deadline.
    gate = Path("/dev/shm") / f"podium-gate-{uuid.uuid4().hex}"
    payload = {"input": [{"role": "user", "content": "one two three"}], "custom_inputs": {"gate": str(gate)},
               "stream": True}
    started = time.monotonic()
    try:
        with stack.api("POST", "/serving-endpoints/agent-responses/invocations", json=payload, stream=True,
                       timeout_s=GATE_WAIT_S + 30) as reply:
            assert reply.status_code == 200, reply.text
            lines = reply.iter_lines(decode_unicode=True)
            first = next(line for line in lines if line)
            first_s = time.monotonic() - started
            gate.touch()
            rest = [line for line in lines if line]
    finally:
        gate.unlink(missing_ok=True)
    assert json.loads(first[len("data: "):])["delta"] == "echo: "
    assert first_s < GATE_WAIT_S / 3, first_s
    assert rest[-1] == "data: [DONE]" and len(rest) == 5


def test_openai_sdk_chat_completions_on_a_chat_model(openai_client, agents):
    reply = openai_client.chat.completions.create(model="agent-chat-model",
                                                  messages=[{"role": "user", "content": "hi there"}])
    assert reply.choices[0].message.content == "echo: hi there" and reply.choices[0].finish_reason == "stop"
    chunks = list(openai_client.chat.completions.create(
        model="agent-chat-model", messages=[{"role": "user", "content": "hi there"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: hi there"
    assert len(chunks) == 3 and chunks[-1].choices[0].finish_reason == "stop"


def test_openai_sdk_responses_on_a_responses_agent(openai_client, agents):
    reply = openai_client.responses.create(model="agent-responses", input=[{"role": "user", "content": "hi there"}])
    assert reply.output_text == "echo: hi there"
    events = list(openai_client.responses.create(model="agent-responses", input="hi there", stream=True))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "echo: hi there" and events[-1].type == "response.output_item.done"


def test_openai_paths_refuse_models_of_another_task(stack, openai_client, agents):
    import openai

    with pytest.raises(openai.BadRequestError) as refused:
        openai_client.chat.completions.create(model="agent-responses", messages=[{"role": "user", "content": "x"}])
    assert refused.value.body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "/serving-endpoints/agent-responses/invocations" in refused.value.body["message"]
    reply = stack.api("POST", "/serving-endpoints/responses", json={"model": "agent-chat-model", "input": "x"})
    assert reply.status_code == 400 and reply.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_a_stream_that_fails_before_its_first_event_is_a_json_error(stack, agents):
    reply = stack.api("POST", "/serving-endpoints/agent-responses/invocations",
                      json={"input": "not a list of items", "stream": True})
    assert reply.status_code == 400 and reply.headers["Content-Type"].startswith("application/json")
    assert reply.json()["error_code"] in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE"), reply.text


def test_a_failure_mid_stream_is_its_last_event(stack, agents):
    reply = stack.api("POST", "/serving-endpoints/agent-streaming/invocations",
                      json={"prompt": FAIL_MIDSTREAM, "stream": True}, stream=True)
    assert reply.status_code == 200
    lines = _sse_lines(reply)
    assert json.loads(lines[0][len("data: "):])["delta"] == "echo: "
    error = json.loads(lines[-1][len("data: "):])["error"]   # no [DONE]: the stream did not complete
    assert len(lines) == 2 and error["error_code"] == "BAD_REQUEST" and error["message"]


def test_grpc_invoke_stream(stack, agents, pyfuncs):
    import grpc

    from podium_api.v1 import query_pb2, query_pb2_grpc

    body = json.dumps(PAYLOADS["chat_agent"]).encode()   # no "stream": InvokeStream asks for it
    with grpc.insecure_channel(stack.info["grpc_target"]) as channel:
        call = query_pb2_grpc.QueryStub(channel).InvokeStream(
            query_pb2.InvokeRequest(endpoint="agent-chat", body=body), timeout=30, metadata=stack.grpc_metadata())
        events = [json.loads(event.data) for event in call]
        assert dict(call.initial_metadata())["served-model-name"] == "chat_agent"
    assert events == agent_models.in_process_stream(pyfuncs["chat_agent"], PAYLOADS["chat_agent"])


@pytest.mark.parametrize("kind", ["responses", "chat_agent", "streaming"])
def test_cli_query_streams_agent_text(stack, agents, tmp_path, kind):
    from tests.support.cli import podium

    body = json.dumps({**PAYLOADS[kind], "stream": True})
    result = podium("endpoints", "query", ENDPOINTS[kind], body, home=tmp_path, data_dir=stack.data_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "echo: what is podium\n"
    assert f"served by {kind} in" in result.stderr and "first event in" in result.stderr


def test_workspace_clients_openai_client_queries_the_agent(stack, agents):
    pytest.importorskip("httpx", reason="databricks-sdk's get_open_ai_client builds its client with httpx")
    from databricks.sdk import WorkspaceClient

    client = WorkspaceClient(host=stack.url, token=stack.admin_token).serving_endpoints.get_open_ai_client()
    reply = client.responses.create(model="agent-responses", input=[{"role": "user", "content": "from the sdk"}])
    assert reply.output_text == "echo: from the sdk"
    chunks = list(client.chat.completions.create(model="agent-chat-model", stream=True,
                                                 messages=[{"role": "user", "content": "from the sdk"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: from the sdk"


# ---- the unmodified databricks-openai and databricks-langchain clients, in a user's environment of their own
# (tests/support/client_requirements.txt: older openai/numpy than Podium's), each call as their docs show it ----

CLIENT_PRELUDE = """
import json, os
from databricks.sdk import WorkspaceClient
workspace = WorkspaceClient(host=os.environ["PODIUM_URL"], token=os.environ["PODIUM_TOKEN"])
def show(**values):
    print(json.dumps(values, default=str), flush=True)
"""


@pytest.fixture(scope="module")
def run_client(stack):
    from tests.support import client_venv

    client_venv.client_python()   # built once (minutes the first time); each test's script then starts at once

    def run(script: str) -> list[dict]:
        return client_venv.run_client(CLIENT_PRELUDE + script,
                                      env={"PODIUM_URL": stack.url, "PODIUM_TOKEN": stack.admin_token})
    return run


def test_databricks_openai_responses_on_a_responses_agent(run_client, agents):
    plain, streamed = run_client("""
from databricks_openai import DatabricksOpenAI
client = DatabricksOpenAI(workspace_client=workspace, max_retries=0)
reply = client.responses.create(model="agent-responses", input=[{"role": "user", "content": "hi from a user"}])
show(text=reply.output_text, output=[item.type for item in reply.output])
events = list(client.responses.create(model="agent-responses", input="hi streamed", stream=True))
show(types=[e.type for e in events], text="".join(e.delta for e in events if e.type == "response.output_text.delta"))
""")
    assert plain == {"text": "echo: hi from a user", "output": ["message"]}
    assert streamed["text"] == "echo: hi streamed"
    assert streamed["types"] == ["response.output_text.delta"] * 3 + ["response.output_item.done"]


def test_workspace_client_get_open_ai_client_in_a_users_environment(run_client, agents):
    # databricks-sdk's own (deprecated) way to the same client; custom_inputs go through extra_body, as the
    # Databricks docs show.
    [shown] = run_client("""
import warnings
warnings.simplefilter("ignore", DeprecationWarning)
client = workspace.serving_endpoints.get_open_ai_client(max_retries=0)
reply = client.responses.create(model="agent-responses", input=[{"role": "user", "content": "from the sdk"}],
                                extra_body={"custom_inputs": {"k": 3}})
show(text=reply.output_text, custom_outputs=reply.model_extra["custom_outputs"])
""")
    assert shown == {"text": "echo: from the sdk", "custom_outputs": {"k": 3}}


def test_databricks_openai_chat_completions_on_a_chat_model(run_client, agents):
    plain, streamed = run_client("""
from databricks_openai import DatabricksOpenAI
client = DatabricksOpenAI(workspace_client=workspace, max_retries=0)
reply = client.chat.completions.create(model="agent-chat-model", messages=[{"role": "user", "content": "hi there"}])
show(text=reply.choices[0].message.content, finish=reply.choices[0].finish_reason)
chunks = list(client.chat.completions.create(model="agent-chat-model", stream=True,
                                             messages=[{"role": "user", "content": "hi there"}]))
show(text="".join(c.choices[0].delta.content or "" for c in chunks), finish=chunks[-1].choices[0].finish_reason,
     chunks=len(chunks))
""")
    assert plain == {"text": "echo: hi there", "finish": "stop"}
    assert streamed == {"text": "echo: hi there", "finish": "stop", "chunks": 3}


def test_databricks_openai_chat_completions_on_a_chat_agent(run_client, agents):
    # Databricks answers a ChatAgent's own objects on this path; the openai SDK keeps them as extra fields.
    plain, streamed = run_client("""
from databricks_openai import DatabricksOpenAI
client = DatabricksOpenAI(workspace_client=workspace, max_retries=0)
reply = client.chat.completions.create(model="agent-chat", messages=[{"role": "user", "content": "hi agent"}],
                                       extra_body={"custom_inputs": {"k": 2}})
show(messages=reply.model_extra["messages"], custom_outputs=reply.model_extra["custom_outputs"])
chunks = list(client.chat.completions.create(model="agent-chat", stream=True,
                                             messages=[{"role": "user", "content": "hi agent"}]))
show(deltas=[c.model_extra["delta"]["content"] for c in chunks])
""")
    assert plain == {"messages": [{"role": "assistant", "content": "echo: hi agent", "id": "msg_1"}],
                     "custom_outputs": {"k": 2}}
    assert streamed == {"deltas": ["echo: ", "hi ", "agent"]}


def test_chat_databricks_on_each_agent_interface(run_client, agents):
    shown = run_client("""
from databricks_langchain import ChatDatabricks
for endpoint, responses_api in (("agent-chat-model", False), ("agent-chat", False), ("agent-responses", True)):
    llm = ChatDatabricks(endpoint=endpoint, workspace_client=workspace, use_responses_api=responses_api,
                         max_retries=0)
    answer = llm.invoke("what is podium")
    chunks = list(llm.stream("streamed podium"))
    show(endpoint=endpoint, content=answer.content, type=answer.type,
         streamed="".join(c.text for c in chunks), chunks=len([c for c in chunks if c.text]))
""")
    by_endpoint = {row.pop("endpoint"): row for row in shown}
    streamed = {"type": "ai", "streamed": "echo: streamed podium", "chunks": 3}
    assert by_endpoint["agent-chat-model"] == {"content": "echo: what is podium", **streamed}
    # A ChatAgent's answer is its list of messages, which ChatDatabricks keeps as the message's content.
    assert by_endpoint["agent-chat"] == {"content": [{"role": "assistant", "content": "echo: what is podium",
                                                      "id": "msg_1"}], **streamed}
    assert by_endpoint["agent-responses"]["streamed"] == "echo: streamed podium"
    assert "echo: what is podium" in json.dumps(by_endpoint["agent-responses"]["content"])


def test_chat_databricks_on_an_external_model_endpoint(stack, run_client, fake_providers):
    from tests.support.external import create_external_endpoint, external_entity

    create_external_endpoint(stack, "agent-clients-ext-chat", external_entity(fake_providers, "openai", "llm/v1/chat"))
    answer, streamed, streamed_async = run_client("""
import asyncio
from databricks_langchain import ChatDatabricks
llm = ChatDatabricks(endpoint="agent-clients-ext-chat", workspace_client=workspace, max_retries=0)
answer = llm.invoke("hello provider")
show(text=answer.text, usage=answer.usage_metadata)
show(text="".join(c.text for c in llm.stream("streamed provider")))
async def stream_async():   # AsyncDatabricksOpenAI underneath: the same wire
    return "".join([c.text async for c in llm.astream("streamed provider")])
show(text=asyncio.run(stream_async()))
""")
    assert answer["text"] == "echo: hello provider"
    assert answer["usage"]["input_tokens"] == 2 and answer["usage"]["output_tokens"] == 3
    assert streamed == streamed_async == {"text": "echo: streamed provider"}


def test_agent_streams_through_the_ai_gateway_are_recorded(stack, agents):
    from tests.support.stack import wait_for

    logged = {"inference_table_config": {"enabled": True, "catalog_name": "main", "schema_name": "default"},
              "usage_tracking_config": {"enabled": True}}
    agent = agents["streaming"]
    created = stack.api("POST", "/api/2.0/serving-endpoints", json={"name": "agent-logged", "ai_gateway": logged,
                        "config": {"served_entities": [{"name": "streaming", "entity_name": agent.name,
                                                        "entity_version": agent.version,
                                                        "scale_to_zero_enabled": False}]}})
    assert created.status_code == 200, created.text
    assert stack.wait_endpoint("agent-logged", timeout_s=300)["state"]["ready"] == "READY"
    replies = [stack.api("POST", "/serving-endpoints/agent-logged/invocations", json={"prompt": prompt, "stream": True})
               for prompt in ("what is podium", FAIL_MIDSTREAM)]
    assert [reply.status_code for reply in replies] == [200, 200]   # the failure came after the first event

    def rows():
        found = stack.api("GET", "/api/2.0/serving-endpoints/agent-logged/inference-table").json()["rows"]
        return len(found) >= 2 and {row["databricks_request_id"]: row for row in found}
    by_id = wait_for(rows, timeout_s=20, what="the two streams' inference rows")
    done, failed = (by_id[reply.headers["x-request-id"]] for reply in replies)
    assert done["response"] == replies[0].text and replies[0].text.endswith("data: [DONE]\n\n")
    assert done["status_code"] == 200 and json.loads(done["request"])["prompt"] == "what is podium"
    # The stream that failed mid-way is recorded with the failure's status and the events it relayed.
    assert failed["response"] == replies[1].text and '"error"' in failed["response"]
    assert failed["status_code"] == 400


# ---- the AI Gateway V2 base URLs, Databricks Apps, and token counts of non-streaming answers ----

def test_databricks_openai_through_the_ai_gateway_base_urls(run_client, agents):
    # use_ai_gateway=True calls <host>/ai-gateway/mlflow/v1, use_ai_gateway_native_api=True <host>/ai-gateway/openai/v1
    # (databricks_openai/utils/clients.py `_resolve_base_url`): the same endpoints by the same `model`.
    shown = run_client("""
from databricks_openai import DatabricksOpenAI
for option in ("use_ai_gateway", "use_ai_gateway_native_api"):
    client = DatabricksOpenAI(workspace_client=workspace, max_retries=0, **{option: True})
    reply = client.responses.create(model="agent-responses", input=[{"role": "user", "content": "via the gateway"}])
    events = list(client.responses.create(model="agent-responses", input="streamed gateway", stream=True))
    chat = client.chat.completions.create(model="agent-chat-model", messages=[{"role": "user", "content": "hi gw"}])
    show(option=option, base_url=str(client.base_url), text=reply.output_text,
         streamed="".join(e.delta for e in events if e.type == "response.output_text.delta"),
         chat=chat.choices[0].message.content, usage=[chat.usage.prompt_tokens, chat.usage.completion_tokens])
""")
    assert [row.pop("base_url").split("/", 3)[-1] for row in shown] == ["ai-gateway/mlflow/v1/",
                                                                        "ai-gateway/openai/v1/"]
    assert shown == [{"option": option, "text": "echo: via the gateway", "streamed": "echo: streamed gateway",
                      "chat": "echo: hi gw", "usage": [2, 3]}
                     for option in ("use_ai_gateway", "use_ai_gateway_native_api")]


def test_a_databricks_app_is_answered_with_a_clear_error(stack, run_client, agents):
    # Databricks Apps: with OAuth, databricks-openai looks the App up (GET /api/2.0/apps/{name}); any client may also
    # send model="apps/<name>" to the OpenAI-style paths. Podium has no Apps: a JSON error saying so, never a trace.
    robot = stack.api("POST", "/api/2.0/preview/scim/v2/ServicePrincipals", json={"displayName": "apps-robot"}).json()
    secret = stack.api("POST", f"/api/2.0/accounts/servicePrincipals/{robot['id']}/credentials/secrets").json()
    oauth, plain = run_client(f"""
from databricks_openai import DatabricksOpenAI
from openai import BadRequestError
m2m = WorkspaceClient(host=os.environ["PODIUM_URL"], client_id={robot["applicationId"]!r},
                      client_secret={secret["secret"]!r})
try:
    DatabricksOpenAI(workspace_client=m2m, max_retries=0).responses.create(model="apps/my-agent", input="hi")
except ValueError as exc:
    show(error=str(exc))
try:
    DatabricksOpenAI(workspace_client=workspace, max_retries=0).chat.completions.create(
        model="apps/my-agent", messages=[{{"role": "user", "content": "hi"}}])
except BadRequestError as exc:
    show(status=exc.status_code, body=exc.body)
""")
    assert oauth["error"].startswith("Failed to get Databricks App 'my-agent'")
    assert "Podium does not serve Databricks Apps" in oauth["error"]
    assert plain["status"] == 400 and plain["body"]["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "model 'apps/my-agent' names a Databricks App" in plain["body"]["message"]
    looked_up = stack.api("GET", "/api/2.0/apps/my-agent")
    assert looked_up.status_code == 404 and set(looked_up.json()) == {"error_code", "message"}
    assert looked_up.json()["error_code"] == "NOT_FOUND"


def test_non_streaming_answers_that_carry_usage_are_counted(stack, agents):
    from tests.support.stack import wait_for

    agent = agents["chat_model"]   # its answers carry usage: the words in and out (tests/support/agent_code.py)
    created = stack.api("POST", "/api/2.0/serving-endpoints", json={
        "name": "agent-chat-metered", "ai_gateway": {"usage_tracking_config": {"enabled": True}},
        "config": {"served_entities": [{"name": "chat_model", "entity_name": agent.name, "entity_version": agent.version,
                                        "scale_to_zero_enabled": False}]}})
    assert created.status_code == 200, created.text
    assert stack.wait_endpoint("agent-chat-metered", timeout_s=300)["state"]["ready"] == "READY"
    invoked = stack.api("POST", "/serving-endpoints/agent-chat-metered/invocations",
                        json={"messages": [{"role": "user", "content": "one two three"}]})
    openai_style = stack.api("POST", "/ai-gateway/mlflow/v1/chat/completions", json={
        "model": "agent-chat-metered", "messages": [{"role": "user", "content": "four five"}]})
    assert invoked.status_code == openai_style.status_code == 200, (invoked.text, openai_style.text)
    assert invoked.json()["usage"]["prompt_tokens"] == 3 and openai_style.json()["usage"]["completion_tokens"] == 3

    def usage():
        rows = stack.api("GET", "/api/2.0/serving-endpoints/agent-chat-metered/usage").json()["usage"]
        return rows and rows[0]["request_count"] == 2 and rows[0]
    row = wait_for(usage, timeout_s=20, what="the two answers' usage")
    # (3 in, 4 out: "echo: one two three") + (2 in, 3 out: "echo: four five")
    assert (row["input_token_count"], row["output_token_count"]) == (5, 7)
