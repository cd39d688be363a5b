"""The generative models' wire (services/router/agent_wire.py): which queries stream, the OpenAI-style paths'
model requests, and the server-sent events a replica's stream leaves as."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from services.common.errors import BadRequest, DeadlineExceeded, InvalidParameter
from services.router import agent_wire


@pytest.mark.parametrize("body, streams", [
    (b'{"input": [], "stream": true}', True),
    (b'{"messages": [], "stream": false}', False),
    (b'{"messages": [], "stream": "true"}', False),
    (b'{"messages": [{"content": "\\"stream\\": true"}]}', False),
    (b'[{"stream": true}]', False),
    (b'{"stream": true', False),
    (b'{"dataframe_split": {"columns": ["x"], "data": [[1]]}}', False),
])
def test_asks_stream(body, streams):
    assert agent_wire.asks_stream(body) is streams


def test_with_stream_sets_the_flag_and_refuses_what_is_no_object():
    assert json.loads(agent_wire.with_stream(b'{"input": [], "stream": false}')) == {"input": [], "stream": True}
    for body in (b"[1]", b"not json"):
        with pytest.raises(BadRequest):
            agent_wire.with_stream(body)


@pytest.mark.parametrize("openai_task, model_task, answers", [
    ("llm/v1/chat", "agent/v1/chat", True),
    ("llm/v1/chat", "llm/v1/chat", True),
    ("llm/v1/chat", "agent/v1/responses", False),
    ("llm/v1/chat", "agent/v2/chat", True),   # ChatAgent: its own answer, as Databricks relays it
    ("llm/v1/chat", "", False),
    ("agent/v1/responses", "agent/v1/responses", True),
    ("agent/v1/responses", "agent/v1/chat", False),
    ("llm/v1/embeddings", "agent/v1/chat", False),
])
def test_model_request_follows_the_models_task(openai_task, model_task, answers):
    payload = {"model": "bot", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    if answers:
        assert json.loads(agent_wire.model_request("bot", openai_task, model_task, payload)) == \
            {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    else:
        with pytest.raises(InvalidParameter, match="/serving-endpoints/bot/invocations"):
            agent_wire.model_request("bot", openai_task, model_task, payload)


@dataclass
class Event:
    data: bytes
    http_status: int = 0


class Rest:
    def __init__(self, events, failure=None):
        self._events, self._failure, self.closed = list(events), failure, False

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._events:
            return self._events.pop(0)
        if self._failure is not None:
            raise self._failure
        raise StopAsyncIteration

    async def aclose(self):
        self.closed = True


async def _collect(first, rest) -> list[bytes]:
    return [chunk async for chunk in agent_wire.sse(first, rest)]


async def test_sse_is_data_only_and_ends_with_done():
    rest = Rest([Event(b'{"n": 2}'), Event(b'{"n": 3}')])
    assert await _collect(Event(b'{"n": 1}'), rest) == [
        b'data: {"n": 1}\n\n', b'data: {"n": 2}\n\n', b'data: {"n": 3}\n\n', b"data: [DONE]\n\n"]
    assert rest.closed


async def test_a_failure_after_the_first_event_is_an_error_event_without_done():
    model_failed = Rest([Event(b'{"error_code": "BAD_REQUEST", "message": "boom"}', 400), Event(b'{"late": 1}')])
    assert await _collect(Event(b"{}"), model_failed) == [
        b"data: {}\n\n", b'data: {"error":{"error_code":"BAD_REQUEST","message":"boom"}}\n\n']
    timed_out = Rest([], DeadlineExceeded("the model sent nothing for 1 s"))
    chunks = await _collect(Event(b"{}"), timed_out)
    assert json.loads(chunks[-1][len(b"data: "):]) == {
        "error": {"error_code": "DEADLINE_EXCEEDED", "message": "the model sent nothing for 1 s"}}
    assert timed_out.closed


async def test_closing_the_events_early_closes_the_replicas_stream():
    rest = Rest([Event(b"{}")] * 5)
    events = agent_wire.sse(Event(b"{}"), rest)
    assert await events.__anext__() == b"data: {}\n\n"
    await events.aclose()
    assert rest.closed


def test_a_responses_input_string_is_one_user_message():
    sent = agent_wire.model_request("bot", "agent/v1/responses", "agent/v1/responses", {"model": "bot", "input": "hi"})
    assert json.loads(sent) == {"input": [{"role": "user", "content": "hi"}]}


def test_event_data_splits_relayed_chunks_into_events():
    pending = bytearray()
    assert agent_wire.event_data(b'data: {"a": 1}\n\ndata: {"b"', pending) == [b'{"a": 1}']
    assert agent_wire.event_data(b': 2}\n\nevent: x\ndata: {"c": 3}\n\ndata: [DONE]\n\n', pending) == \
        [b'{"b": 2}', b'{"c": 3}']
    assert pending == bytearray()


@pytest.mark.parametrize("event, tokens", [
    pytest.param({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}, (7, 3),
                 id="ChatModel chunk"),
    pytest.param({"delta": {"content": "x"}, "usage": {"prompt_tokens": 2, "completion_tokens": 5}}, (2, 5),
                 id="ChatAgentChunk"),
    pytest.param({"type": "response.completed", "response": {"usage": {"input_tokens": 4, "output_tokens": 6}}},
                 (4, 6), id="ResponsesAgent response.completed"),
    pytest.param({"usage": {"prompt_tokens": -1, "completion_tokens": True}}, (0, 0), id="malformed counts are 0"),
    pytest.param({"delta": "no usage here"}, None, id="an event without usage leaves it"),
])
def test_read_outcome_takes_usage_from_each_interfaces_events(event, tokens):
    from services.router.external.replies import StreamOutcome, Usage

    outcome = StreamOutcome(usage=Usage(1, 1))
    agent_wire.read_outcome(b"data: " + json.dumps(event).encode() + b"\n\n", outcome)
    want = (1, 1) if tokens is None else tokens
    assert (outcome.usage.input_tokens, outcome.usage.output_tokens, outcome.status_code) == (*want, 200)


async def test_metered_relays_unchanged_and_keeps_the_usage_and_a_failure():
    from services.router.external.replies import StreamOutcome

    rest = Rest([Event(b'{"delta": "a", "usage": {"prompt_tokens": 3, "completion_tokens": 1}}'),
                 Event(b'{"error_code": "BAD_REQUEST", "message": "boom"}', 400)])
    outcome = StreamOutcome()
    relayed = [chunk async for chunk in agent_wire.metered(agent_wire.sse(Event(b'{"delta": "x"}'), rest), outcome)]
    assert relayed == await _collect(Event(b'{"delta": "x"}'), Rest([
        Event(b'{"delta": "a", "usage": {"prompt_tokens": 3, "completion_tokens": 1}}'),
        Event(b'{"error_code": "BAD_REQUEST", "message": "boom"}', 400)]))
    assert (outcome.usage.input_tokens, outcome.usage.output_tokens) == (3, 1)
    assert (outcome.status_code, outcome.error) == (400, "boom") and rest.closed


async def test_an_agent_stream_through_the_ai_gateway_is_recorded_with_its_usage():
    from services.common.deployments import EndpointRoutes, RouteTarget
    from services.common.gateway_routes import GatewayPolicy
    from services.common.principals import Principal
    from services.router.ai_gateway import AiGateway
    from services.router.results import QueryResult

    records = []
    route = RouteTarget("agent", 100, "k-agent", ("w",))
    endpoint = EndpointRoutes("e", "id-e", (route,), GatewayPolicy(usage_tracking=True, inference_table=True))
    done = {"type": "response.completed", "response": {"usage": {"input_tokens": 4, "output_tokens": 2}}}

    async def forward(target, body):
        rest = Rest([Event(b'{"type": "response.output_text.delta", "delta": "hi"}'),
                     Event(json.dumps(done).encode())])
        return QueryResult(b"", "text/event-stream", target.served_entity_name,
                           agent_wire.sse(Event(b'{"type": "response.output_text.delta", "delta": "echo: "}'), rest))

    class Log:
        def record(self, row):
            records.append(row)

    gateway = AiGateway(None, None, Log(), None, max_payload_bytes=10_000)  # type: ignore[arg-type]
    result = await gateway.query(endpoint, route, b'{"input": [], "stream": true}', None,
                                 Principal("u-1", "alice", "USER"), "", forward)
    relayed = b"".join([chunk async for chunk in result.stream])
    [row] = records
    assert relayed.endswith(b"data: [DONE]\n\n") and row.response == relayed and row.status_code == 200
    assert (row.input_token_count, row.output_token_count) == (4, 2)
