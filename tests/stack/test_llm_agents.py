"""Agents that call an LLM served by Podium: a ResponsesAgent and a ChatAgent logged from code with an
external-model endpoint as their resource (tests/support/llm_agent_code.py) send the conversation to it with
the unmodified databricks-sdk, as they would on Databricks, through the credential their replicas are given.
Queried with the openai SDK and plain REST, plain and streaming, they answer the LLM's reply (the local
OpenAI-wire stand-in's), and the LLM endpoint's usage counts the agent endpoint's writer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.external import create_external_endpoint, external_entity
from tests.support.models import use_registry
from tests.support.stack import wait_for

pytestmark = pytest.mark.stack

CODE = Path(__file__).parents[1] / "support" / "llm_agent_code.py"
LLM = "ext-llm"
AGENTS = {"responses": "llm-responses-agent", "chat_agent": "llm-chat-agent"}
USAGE = {"usage_tracking_config": {"enabled": True}}


@pytest.fixture(scope="module")
def llm_agents(stack, fake_providers) -> dict[str, str]:
    import mlflow
    from mlflow.models.resources import DatabricksServingEndpoint

    create_external_endpoint(stack, LLM, external_entity(fake_providers, "openai", "llm/v1/chat"), ai_gateway=USAGE)
    use_registry(stack.info)
    for kind, endpoint in AGENTS.items():
        # Logging a ResponsesAgent runs it on an example: as on Databricks, the author is signed in to the
        # workspace whose endpoint it calls.
        with mlflow.start_run(), pytest.MonkeyPatch.context() as signed_in:
            signed_in.setenv("DATABRICKS_HOST", stack.url)
            signed_in.setenv("DATABRICKS_TOKEN", stack.admin_token)
            logged = mlflow.pyfunc.log_model(
                name="agent", python_model=str(CODE), model_config={"kind": kind, "endpoint": LLM},
                resources=[DatabricksServingEndpoint(endpoint_name=LLM)], pip_requirements=["mlflow"],
                registered_model_name=f"main.agents.llm_{kind}")
        created = stack.api("POST", "/api/2.0/serving-endpoints", json={"name": endpoint, "config": {
            "served_entities": [{"entity_name": f"main.agents.llm_{kind}",
                                 "entity_version": str(logged.registered_model_version),
                                 "workload_size": "Small", "scale_to_zero_enabled": False}]}})
        assert created.status_code == 200, created.text
    for endpoint in AGENTS.values():
        assert stack.wait_endpoint(endpoint, timeout_s=300)["state"]["ready"] == "READY"
    yield AGENTS
    for endpoint in (*AGENTS.values(), LLM):
        stack.api("DELETE", f"/api/2.0/serving-endpoints/{endpoint}")


def _events(reply) -> list[dict]:
    lines = [line for line in reply.iter_lines(decode_unicode=True) if line]
    assert lines[-1] == "data: [DONE]", lines
    return [json.loads(line[len("data: "):]) for line in lines[:-1]]


def test_a_responses_agent_answers_what_the_llm_endpoint_answered(stack, llm_agents):
    import openai

    client = openai.OpenAI(base_url=stack.url + "/serving-endpoints", api_key=stack.admin_token, max_retries=0)
    reply = client.responses.create(model=llm_agents["responses"], input="what is podium")
    assert reply.output_text == "echo: what is podium"   # the stand-in's answer, through the agent
    events = list(client.responses.create(model=llm_agents["responses"], input="say more", stream=True))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "echo: say more" and len(deltas) == 3


def test_a_chat_agent_answers_what_the_llm_endpoint_answered(stack, llm_agents):
    conversation = {"messages": [{"role": "user", "content": "hello chat agent"}]}
    reply = stack.api("POST", f"/serving-endpoints/{llm_agents['chat_agent']}/invocations", json=conversation)
    assert reply.status_code == 200, reply.text
    assert reply.json()["messages"][0]["content"] == "echo: hello chat agent"
    streamed = stack.api("POST", f"/serving-endpoints/{llm_agents['chat_agent']}/invocations",
                         json={**conversation, "stream": True}, stream=True)
    assert streamed.status_code == 200
    assert "".join(e["delta"]["content"] for e in _events(streamed)) == "echo: hello chat agent"


def test_the_llm_endpoint_counts_the_agents_calls_to_their_writer(stack, llm_agents):
    def writers_requests() -> int:
        usage = stack.api("GET", f"/api/2.0/serving-endpoints/{LLM}/usage").json()["usage"]
        return sum(row["request_count"] for row in usage if row["requester"] == "admin")

    before = writers_requests()
    reply = stack.api("POST", f"/serving-endpoints/{llm_agents['chat_agent']}/invocations",
                      json={"messages": [{"role": "user", "content": "count me"}]})
    assert reply.status_code == 200, reply.text
    wait_for(lambda: writers_requests() > before, timeout_s=30, what="the agent's call in the LLM endpoint's usage")
