"""The AI gateway core's fallback and guardrails on a custom-model endpoint (services/router/ai_gateway.py),
with the forwarding path replaced by served entities that fail or answer as each test says."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from services.common.deployments import EndpointRoutes, RouteTarget
from services.common.errors import BadRequest, DeadlineExceeded, Unavailable
from services.common.gateway_routes import GatewayPolicy
from services.common.guardrail_rules import GuardrailSide, Guardrails
from services.common.principals import Principal
from services.router.ai_gateway import AiGateway
from services.router.guardrails import GuardrailBlocked
from services.router.results import QueryResult

CALLER = Principal("u-1", "alice@example.com", "USER")
ROUTES = tuple(RouteTarget(name, share, f"k-{name}", ("w",)) for name, share in (("a", 100), ("b", 0), ("c", 0)))


class Records:
    def __init__(self):
        self.rows = []

    def record(self, row):
        self.rows.append(row)


def _endpoint(**policy) -> EndpointRoutes:
    return EndpointRoutes("e", "id-e", ROUTES, GatewayPolicy(usage_tracking=True, inference_table=True, **policy))


def _forward(behaviour: dict, seen: list):
    async def forward(target: RouteTarget, body: bytes) -> QueryResult:
        seen.append((target.served_entity_name, body))
        action = behaviour.get(target.served_entity_name, "ok")
        if action == "slow":
            await asyncio.sleep(5)
        if action == "times out":   # the entity's own deadline (forwarding or the provider's) passes first
            await asyncio.sleep(0.1)
            raise DeadlineExceeded("the model did not answer within 0.1 s")
        if isinstance(action, Exception):
            raise action
        return QueryResult(b'{"predictions": ["mail ann@example.com"]}', "application/json", target.served_entity_name)
    return forward


async def _query(endpoint: EndpointRoutes, behaviour: dict, timeout_s: float = 5.0, body: bytes = b'{"inputs": ["x"]}'):
    records, seen = Records(), []
    gateway = AiGateway(None, None, records, None,  # type: ignore[arg-type]  # no provider, limiter or store
                        max_payload_bytes=10_000, fallback_timeout_s=timeout_s)
    try:
        result = await gateway.query(endpoint, ROUTES[0], body, None, CALLER, "", _forward(behaviour, seen))
    except Exception as exc:
        return exc, seen, records.rows
    return result, seen, records.rows


@pytest.mark.parametrize("behaviour, served, tried", [
    pytest.param({"a": Unavailable("down")}, "b", ["a", "b"], id="503 falls back to the next"),
    pytest.param({"a": BadRequest("x", http_status=500), "b": BadRequest("y", http_status=429)}, "c",
                 ["a", "b", "c"], id="500 then 429: the third serves"),
    pytest.param({"a": "times out"}, "b", ["a", "b"], id="a timeout falls back"),
])
async def test_fallback_serves_from_the_next_entity_and_records_it(behaviour, served, tried):
    result, seen, rows = await _query(_endpoint(fallback_order=("a", "b", "c")), behaviour, timeout_s=1.0)
    assert isinstance(result, QueryResult) and result.served_entity_name == served
    assert [name for name, _ in seen] == tried
    assert rows[0].served_entity_name == served and "SERVED_BY_FALLBACK" in rows[0].logging_error_codes


async def test_a_4xx_is_the_answer_and_never_falls_back():
    result, seen, _ = await _query(_endpoint(fallback_order=("a", "b", "c")), {"a": BadRequest("bad input")})
    assert isinstance(result, BadRequest) and [name for name, _ in seen] == ["a"]


async def test_every_entity_failing_answers_the_last_failure():
    failing = {n: Unavailable(f"{n} down") for n in "abc"}
    result, seen, rows = await _query(_endpoint(fallback_order=("a", "b", "c")), failing)
    assert isinstance(result, Unavailable) and result.message == "c down" and len(seen) == 3
    assert rows[0].status_code == 503


async def test_one_deadline_bounds_all_attempts():
    started = asyncio.get_running_loop().time()
    result, seen, _ = await _query(_endpoint(fallback_order=("a", "b", "c")), {n: "slow" for n in "abc"},
                                   timeout_s=0.5)
    assert isinstance(result, DeadlineExceeded) and asyncio.get_running_loop().time() - started < 2


async def test_an_entity_that_never_answers_leaves_the_next_its_share_of_the_deadline():
    started = asyncio.get_running_loop().time()
    result, seen, _ = await _query(_endpoint(fallback_order=("a", "b")), {"a": "slow"}, timeout_s=1.0)
    assert isinstance(result, QueryResult) and result.served_entity_name == "b", result
    assert [name for name, _ in seen] == ["a", "b"] and asyncio.get_running_loop().time() - started < 1.0


async def test_without_fallback_a_failure_is_the_answer():
    result, seen, _ = await _query(_endpoint(), {"a": Unavailable("down")})
    assert isinstance(result, Unavailable) and [name for name, _ in seen] == ["a"]


async def test_custom_model_guardrails_mask_the_request_and_the_answer():
    rails = Guardrails(GuardrailSide("MASK"), GuardrailSide("MASK"))
    body = orjson.dumps({"dataframe_records": [{"note": "card 4111 1111 1111 1111"}]})
    result, seen, rows = await _query(_endpoint(guardrails=rails), {}, body=body)
    assert b"4111" not in seen[0][1] and b"[CREDIT_CARD]" in seen[0][1]   # what the model got
    assert orjson.loads(result.body) == {"predictions": ["mail [EMAIL_ADDRESS]"]}
    assert b"4111" not in rows[0].request and b"ann@" not in rows[0].response


async def test_a_blocked_request_is_never_forwarded_and_is_recorded_as_blocked():
    rails = Guardrails(GuardrailSide("BLOCK"), GuardrailSide())
    body = orjson.dumps({"inputs": ["my SSN is 536-22-1459"]})
    result, seen, rows = await _query(_endpoint(guardrails=rails), {}, body=body)
    assert isinstance(result, GuardrailBlocked) and result.http_status == 400 and seen == []
    assert rows[0].status_code == 400 and rows[0].logging_error_codes == ["GUARDRAIL_INPUT_BLOCKED"]
    assert b"536-22" not in rows[0].request and b"[US_SSN]" in rows[0].request


async def test_a_blocked_answer_is_not_returned():
    rails = Guardrails(GuardrailSide(), GuardrailSide("BLOCK"))
    result, seen, rows = await _query(_endpoint(guardrails=rails), {})
    assert isinstance(result, GuardrailBlocked) and "EMAIL_ADDRESS" in result.message and len(seen) == 1
    assert rows[0].logging_error_codes == ["GUARDRAIL_OUTPUT_BLOCKED"] and b"ann@" not in rows[0].response


async def test_a_custom_models_stream_is_relayed_checked_whole():
    events = [b'data: {"type": "response.output_text.delta", "delta": "mail ann"}\n\n',
              b'data: {"type": "response.output_text.delta", "delta": "@example.com now"}\n\n',
              b'data: "a plain 4111 1111 1111 1111"\n\n', b"data: [DONE]\n\n"]

    async def forward(target: RouteTarget, body: bytes) -> QueryResult:
        async def stream():
            for event in events:
                yield event
        return QueryResult(b"", "text/event-stream", target.served_entity_name, stream())
    gateway = AiGateway(None, None, Records(), None, max_payload_bytes=10_000)  # type: ignore[arg-type]

    async def relayed(side: GuardrailSide) -> bytes:
        endpoint = _endpoint(guardrails=Guardrails(GuardrailSide(), side))
        result = await gateway.query(endpoint, ROUTES[0], b"{}", None, CALLER, "", forward)
        return b"".join([chunk async for chunk in result.stream])
    plain = await relayed(GuardrailSide(invalid_keywords=("zebra",)))
    assert plain == b"".join(events)   # nothing to change: the events as the model sent them
    blocked = await relayed(GuardrailSide("BLOCK"))
    assert b"4111" not in blocked and b"ann" not in blocked and b"guardrail_blocked" in blocked
    split = await relayed(GuardrailSide("MASK"))   # the e-mail spans two events: refused, not half masked
    assert b"split over streamed events" in split and b"example.com" not in split
    events[1] = b'data: {"type": "response.output_text.delta", "delta": " now"}\n\n'
    masked = await relayed(GuardrailSide("MASK"))
    assert b'"a plain [CREDIT_CARD]"' in masked and masked.endswith(b"data: [DONE]\n\n")
