"""Token counts of custom models' non-streaming answers (services/router/agent_wire.py `answer_usage`, read by the AI
gateway for usage records and token limits): a generative model's answer that carries `usage` is counted, a classic
model's answer is never parsed, and neither is one that names no usage."""

from __future__ import annotations

import json

import pytest

from services.common.deployments import EndpointRoutes, RouteTarget
from services.common.errors import Unavailable
from services.common.gateway_routes import GatewayPolicy
from services.common.principals import Principal
from services.common.tensors import ModelMetadata
from services.router import agent_wire
from services.router.ai_gateway import AiGateway
from services.router.results import QueryResult

CHAT_COMPLETION = {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant",
                   "content": "hi"}}], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}


@pytest.mark.parametrize("answer, tokens", [
    pytest.param(CHAT_COMPLETION, (7, 3), id="a ChatModel's chat.completion"),
    pytest.param({"messages": [{"role": "assistant", "content": "x", "id": "1"}],
                  "usage": {"prompt_tokens": 2, "completion_tokens": 5}}, (2, 5), id="a ChatAgentResponse"),
    pytest.param({"object": "response", "output": [], "usage": {"input_tokens": 4, "output_tokens": 6,
                                                                "total_tokens": 10}}, (4, 6), id="a ResponsesAgent's"),
    pytest.param({"object": "response", "output": [{"type": "message", "content": [{"text": '"usage"'}]}]}, (0, 0),
                 id="usage named only inside the text"),
    pytest.param({"usage": {"prompt_tokens": -1, "completion_tokens": True}}, (0, 0), id="malformed counts are 0"),
    pytest.param({"usage": "many"}, (0, 0), id="usage not an object"),
    pytest.param([{"usage": {"prompt_tokens": 1}}], (0, 0), id="a list"),
    pytest.param(b'{"usage": {"prompt_tokens": 1', (0, 0), id="not JSON"),
    pytest.param({"usage": {"prompt_tokens": 1}, "pad": "x" * agent_wire.MAX_METERED_ANSWER}, (0, 0),
                 id="larger than the bound: not parsed"),
])
def test_answer_usage(answer, tokens):
    raw = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
    usage = agent_wire.answer_usage(raw)
    assert (usage.input_tokens, usage.output_tokens) == tokens


@pytest.mark.parametrize("task, is_streaming, generative", [
    ("agent/v1/responses", False, True), ("agent/v1/chat", True, True), ("llm/v1/chat", False, True),
    ("", True, True), ("", False, False)])
def test_is_generative(task, is_streaming, generative):
    assert agent_wire.is_generative(task, is_streaming) is generative


class Log:
    def __init__(self):
        self.rows = []

    def record(self, row):
        self.rows.append(row)


ROUTE = RouteTarget("m", 100, "k-m", ("w",))
ENDPOINT = EndpointRoutes("e", "id-e", (ROUTE,), GatewayPolicy(usage_tracking=True))


async def _query(answer: bytes, describe) -> tuple[QueryResult, list]:
    log = Log()

    async def forward(target, body):
        return QueryResult(answer, "application/json", target.served_entity_name)

    gateway = AiGateway(None, None, log, None, max_payload_bytes=10_000)  # type: ignore[arg-type]
    result = await gateway.query(ENDPOINT, ROUTE, b'{"messages": []}', None, Principal("u-1", "alice", "USER"), "",
                                 forward, describe=describe)
    return result, log.rows


def _describing(task: str, asked: list):
    async def describe(route):
        asked.append(route.served_entity_name)
        return ModelMetadata("mlflow", (), (), task=task)
    return describe


async def test_a_generative_models_answer_is_recorded_with_its_usage():
    asked = []
    answer = json.dumps(CHAT_COMPLETION).encode()
    result, [row] = await _query(answer, _describing("agent/v1/chat", asked))
    assert result.body == answer and asked == ["m"]
    assert (row.input_token_count, row.output_token_count, row.status_code) == (7, 3, 200)


async def test_a_classic_models_answer_is_never_counted():
    asked = []
    _, [row] = await _query(b'{"predictions": [{"usage": {"prompt_tokens": 7}}]}', _describing("", asked))
    assert asked == ["m"] and (row.input_token_count, row.output_token_count) == (0, 0)
    asked.clear()
    _, [row] = await _query(b'{"predictions": [1, 2]}', _describing("", asked))   # names no usage: not even asked
    assert asked == [] and (row.input_token_count, row.output_token_count) == (0, 0)


async def test_an_undescribable_model_is_recorded_without_tokens():
    async def describe(route):
        raise Unavailable("no replica")

    result, [row] = await _query(json.dumps(CHAT_COMPLETION).encode(), describe)
    assert result.body and (row.input_token_count, row.output_token_count, row.status_code) == (0, 0, 200)
