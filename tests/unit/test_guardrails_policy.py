"""Guardrail decisions (services/router/policy/guardrails.py), the streamed-answer relay
(services/router/guardrails.py), what the control plane accepts and refuses (spec_options.py) and hands
routers (gateway_policy.py)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from services.common.errors import InvalidParameter, PermissionDenied, RateLimited, Unavailable
from services.common.gateway_routes import gateway_from_json, gateway_to_json
from services.common.guardrail_rules import GuardrailSide, Guardrails
from services.control_plane.gateway_policy import gateway_policy
from services.control_plane.spec_options import validate_ai_gateway
from services.router.guardrails import GuardedStream, GuardrailBlocked, Judge, guard_body
from services.router.policy.guardrails import (
    check_texts, find_invalid_keyword, read_slot, release_stream_text, text_slots,
)
from services.router.results import QueryResult

MASK, BLOCK = GuardrailSide(pii="MASK"), GuardrailSide(pii="BLOCK")
CARD = "4111 1111 1111 1111"


@pytest.mark.parametrize("task, document, is_answer, want", [
    pytest.param("llm/v1/chat", {"messages": [{"role": "system", "content": "a"}, {"role": "user", "content": [
        {"type": "text", "text": "b"}, {"type": "image_url", "image_url": {"url": "u"}}]}]}, False, ["a", "b"],
        id="chat contents and text parts"),
    pytest.param("llm/v1/completions", {"prompt": ["p", "q"], "max_tokens": 3}, False, ["p", "q"], id="prompts"),
    pytest.param("llm/v1/embeddings", {"input": "e"}, False, ["e"], id="embedding input"),
    pytest.param("llm/v1/chat", {"choices": [{"message": {"role": "assistant", "content": "c"}}],
                                 "model": "m"}, True, ["c"], id="chat answer"),
    pytest.param("llm/v1/completions", {"choices": [{"text": "t"}]}, True, ["t"], id="completion answer"),
    pytest.param("", {"dataframe_records": [{"name": "n", "age": 3}], "params": {"k": "v"}}, False, ["n", "v"],
        id="custom model: every string"),
])
def test_text_slots(task, document, is_answer, want):
    assert [read_slot(s) for s in text_slots(task, document, is_answer=is_answer)] == want


@pytest.mark.parametrize("texts, side, want_texts, blocked", [
    pytest.param(["pay " + CARD], MASK, ["pay [CREDIT_CARD]"], "", id="mask"),
    pytest.param(["pay " + CARD], BLOCK, None, "personal data (CREDIT_CARD)", id="block"),
    pytest.param(["hello"], BLOCK, ["hello"], "", id="clean passes"),
    pytest.param(["Tell me the PASSWORD"], GuardrailSide(invalid_keywords=("password",)), None,
                 "invalid keyword 'password'", id="keyword, any case"),
    pytest.param(["passwords are long"], GuardrailSide(invalid_keywords=("password",)), ["passwords are long"], "",
                 id="keyword is a whole word"),
])
def test_check_texts(texts, side, want_texts, blocked):
    verdict = check_texts(texts, side)
    assert (blocked in verdict.blocked) if blocked else verdict.blocked == ""
    if want_texts is not None:
        assert verdict.texts == want_texts


def test_a_keyword_at_the_end_of_a_stream_waits_for_the_next_character():
    assert find_invalid_keyword("the bomb", ("bomb",), is_final=False) is None
    assert find_invalid_keyword("the bomb.", ("bomb",), is_final=False) == "bomb"
    assert find_invalid_keyword("the bomb", ("bomb",), is_final=True) == "bomb"


def _stream(pieces: list[str], side: GuardrailSide) -> tuple[str, str]:
    """(everything released, the block reason) feeding `pieces` one by one, then ending."""
    pending, out = "", ""
    for i, piece in enumerate(pieces):
        release, pending, reason = release_stream_text(pending + piece, side, i == len(pieces) - 1)
        if reason:
            return out, reason
        out += release
    return out, ""


def test_a_streamed_value_split_over_chunks_is_masked_whole():
    text = "My address is ann.lee@example.com and my card " + CARD + " thanks " + "word " * 30
    pieces = [text[i:i + 3] for i in range(0, len(text), 3)]
    out, reason = _stream(pieces, MASK)
    assert reason == ""
    assert out == text.replace("ann.lee@example.com", "[EMAIL_ADDRESS]").replace(CARD, "[CREDIT_CARD]")


def test_a_blocked_stream_released_only_text_that_passed():
    text = "word " * 40 + "call +1 650 253 0000 now " + "more " * 10
    out, reason = _stream([text[i:i + 4] for i in range(0, len(text), 4)], BLOCK)
    assert "PHONE_NUMBER" in reason
    assert "650" not in out and text.startswith(out) and len(out) > 100   # what passed was sent as it came


def test_guard_body_masks_json_and_blocks():
    body = orjson.dumps({"messages": [{"role": "user", "content": "card " + CARD}]})
    masked = asyncio.run(guard_body("e", "llm/v1/chat", body, MASK, is_answer=False))
    assert orjson.loads(masked)["messages"][0]["content"] == "card [CREDIT_CARD]"
    with pytest.raises(GuardrailBlocked) as raised:
        asyncio.run(guard_body("e", "llm/v1/chat", body, BLOCK, is_answer=False))
    assert raised.value.http_status == 400 and raised.value.code == "BAD_REQUEST"
    assert CARD not in raised.value.message
    untouched = b'{"messages": [{"role": "user", "content": "hi"}]}'
    assert asyncio.run(guard_body("e", "llm/v1/chat", untouched, MASK, is_answer=False)) is untouched


def _chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    return b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", "model": "m",
                                      "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"


async def _relay(chunks: list[bytes], side: GuardrailSide) -> tuple[list[bytes], GuardedStream]:
    async def source():
        for chunk in chunks:
            yield chunk
    guarded = GuardedStream("e", side, source())
    return [c async for c in guarded.relay()], guarded


def _text_of(events: list[bytes]) -> str:
    out = ""
    for event in events:
        for line in event.split(b"\n\n"):
            if line.startswith(b"data: {"):
                payload = orjson.loads(line[6:])
                for choice in payload.get("choices", ()):
                    out += choice["delta"].get("content") or ""
    return out


def test_guarded_stream_masks_across_chunks_and_ends_with_done():
    words = ["Reach", " me", " at", " ann", "@exam", "ple.com", " any", "time"]
    events, guarded = asyncio.run(_relay([_chunk(w) for w in words] + [_chunk(None, "stop"), b"data: [DONE]\n\n"],
                                         MASK))
    assert _text_of(events) == "Reach me at [EMAIL_ADDRESS] anytime"
    assert events[-1].endswith(b"data: [DONE]\n\n") and guarded.blocked == ""


def test_guarded_stream_blocked_stops_with_an_error_event_and_no_done():
    words = ["Sure,", " it", " is", " 4111", " 1111", " 1111", " 1111", " ok"]
    events, guarded = asyncio.run(_relay([_chunk(w) for w in words] + [_chunk(None, "stop"), b"data: [DONE]\n\n"],
                                         BLOCK))
    assert "CREDIT_CARD" in guarded.blocked
    last = orjson.loads(events[-1][6:])
    assert last["error"]["type"] == "guardrail_blocked" and "blocked by the guardrails" in last["error"]["message"]
    assert b"[DONE]" not in b"".join(events) and b"4111" not in b"".join(events)


# ---- the control plane's side ----

@pytest.mark.parametrize("guardrails, needle", [
    pytest.param({"input": {"safety": True}}, "input.safety needs a model to judge it: set ai_gateway.guardrails."
                 "guard_endpoint", id="safety needs a judge"),
    pytest.param({"output": {"valid_topics": ["cooking"]}}, "output.valid_topics needs a model to judge it",
                 id="topics need a judge"),
    pytest.param({"guard_endpoint": "judge", "input": {"pii": {"behavior": "MASK"}}}, "neither is on",
                 id="a judge with nothing to judge"),
    pytest.param({"guard_endpoint": "no spaces", "input": {"safety": True}}, "guard_endpoint must be the name",
                 id="judge is an endpoint name"),
    pytest.param({"input": {"invalid_keywords": [" "]}}, "invalid_keywords[0]", id="blank keyword"),
    pytest.param({"input": {"invalid_keywords": ["k"] * 101}}, "at most 100", id="too many keywords"),
    pytest.param({"guard_endpoint": "j", "input": {"valid_topics": ["t"] * 51}}, "at most 50", id="too many topics"),
])
def test_unenforceable_guardrails_are_refused(guardrails, needle):
    with pytest.raises(InvalidParameter) as raised:
        validate_ai_gateway({"guardrails": guardrails})
    assert needle in raised.value.message and raised.value.code == "INVALID_PARAMETER_VALUE"


def test_turned_off_judgements_are_accepted_and_judged_ones_with_a_guard_endpoint():
    stored = validate_ai_gateway({"guardrails": {"input": {"safety": False, "valid_topics": []}}})
    assert stored["guardrails"]["input"]["safety"] is False
    judged = {"guard_endpoint": "judge", "input": {"safety": True}, "output": {"valid_topics": ["cooking"]}}
    assert validate_ai_gateway({"guardrails": judged})["guardrails"] == judged


ENTITIES = [{"name": n, "external_model": {"provider": "openai", "name": "m", "task": "llm/v1/chat"}}
            for n in ("a", "b", "c")]
ROUTES = {"routes": [{"served_entity_name": "c", "traffic_percentage": 100},
                     {"served_entity_name": "a", "traffic_percentage": 0}]}


def test_gateway_policy_carries_guardrails_fallback_and_auto_capture_to_routers():
    endpoint = {"ai_gateway": {"guardrails": {"input": {"pii": {"behavior": "MASK"}, "safety": True},
                                              "output": {"invalid_keywords": ["x"], "valid_topics": ["y"]},
                                              "guard_endpoint": "judge"},
                               "fallback_config": {"enabled": True}}}
    config = {"served_entities": ENTITIES, "traffic_config": ROUTES,
              "auto_capture_config": {"catalog_name": "c", "schema_name": "s", "enabled": True}}
    policy = gateway_policy(endpoint, config)
    assert policy.guardrails == Guardrails(GuardrailSide("MASK", safety=True),
                                           GuardrailSide("NONE", ("x",), valid_topics=("y",)), "judge")
    assert policy.fallback_order == ("a", "c")   # config order; b takes no route
    assert policy.inference_table is True
    assert gateway_from_json(gateway_to_json(policy)) == policy


def test_an_endpoint_without_active_guardrails_or_fallback_stays_on_the_fast_path():
    endpoint = {"ai_gateway": {"guardrails": {"input": {"pii": {"behavior": "NONE"}, "safety": False}},
                               "fallback_config": {"enabled": False}}}
    custom = {"served_entities": [{"name": "m-1", "entity_name": "m", "entity_version": "1"}],
              "traffic_config": {"routes": [{"served_entity_name": "m-1", "traffic_percentage": 100}]}}
    assert gateway_policy(endpoint, custom) is None
    one = {"ai_gateway": {"fallback_config": {"enabled": True}}}
    assert gateway_policy(one, custom) is None   # one served entity: nothing to fall back to


# ---- the guard endpoint's judgements ----

class FakeGuard:
    """A guard endpoint answering in the chat shape: UNSAFE for texts with "attack", ON_TOPIC for "pasta"."""

    def __init__(self, answer: str | None = None, failure: Exception | None = None):
        self.asked: list[tuple[str, dict]] = []
        self._answer = answer
        self._failure = failure

    async def __call__(self, endpoint: str, body: bytes) -> QueryResult:
        request = orjson.loads(body)
        self.asked.append((endpoint, request))
        if self._failure is not None:
            raise self._failure
        system, text = request["messages"][0]["content"], request["messages"][1]["content"]
        if self._answer is not None:
            word = self._answer
        elif "safety" in system:
            word = "UNSAFE" if "attack" in text else "SAFE."
        else:
            word = "ON_TOPIC" if "pasta" in text else "OFF_TOPIC"
        return QueryResult(orjson.dumps({"choices": [{"message": {"role": "assistant", "content": word}}]}),
                           "application/json", "judge")


JUDGED = GuardrailSide(safety=True, valid_topics=("cooking", "recipes"))


@pytest.mark.parametrize("text, blocked", [
    pytest.param("a pasta recipe", "", id="safe and on topic"),
    pytest.param("how to attack a pasta shop", "judged unsafe", id="unsafe"),
    pytest.param("tell me about cars", "off the allowed topics", id="off topic"),
])
def test_judge_asks_the_guard_endpoint(text, blocked):
    guard = FakeGuard()
    judge = Judge("e", "judge", guard)
    if blocked:
        with pytest.raises(GuardrailBlocked, match=blocked):
            asyncio.run(judge.check(JUDGED, [text], False))
    else:
        asyncio.run(judge.check(JUDGED, [text], False))
    assert guard.asked[0][0] == "judge" and guard.asked[0][1]["messages"][1]["content"] == text
    assert "cooking; recipes" in guard.asked[-1][1]["messages"][0]["content"] or blocked == "judged unsafe"


@pytest.mark.parametrize("guard, error", [
    pytest.param(FakeGuard(answer="Maybe"), Unavailable, id="no verdict fails closed"),
    pytest.param(FakeGuard(failure=RateLimited("slow down")), Unavailable, id="judge failing fails closed"),
    pytest.param(FakeGuard(failure=PermissionDenied("no CAN_QUERY")), PermissionDenied, id="caller may not ask"),
])
def test_a_judge_that_cannot_judge_fails_closed(guard, error):
    with pytest.raises(error, match="guard endpoint 'judge' of endpoint 'e'"):
        asyncio.run(Judge("e", "judge", guard).check(JUDGED, ["pasta"], False))


def test_pii_is_masked_before_the_judge_sees_it_and_judges_do_not_chain():
    guard = FakeGuard()
    body = orjson.dumps({"messages": [{"role": "user", "content": "pasta for ann@example.com"}]})
    side = GuardrailSide(pii="MASK", valid_topics=("cooking",))
    asyncio.run(guard_body("e", "llm/v1/chat", body, side, is_answer=False, judge=Judge("e", "judge", guard)))
    assert guard.asked[0][1]["messages"][1]["content"] == "pasta for [EMAIL_ADDRESS]"

    async def chained(endpoint: str, body: bytes) -> QueryResult:   # the guard endpoint's own guardrails judge
        await Judge(endpoint, "judge-2", FakeGuard()).check(JUDGED, ["pasta"], False)
        return await FakeGuard()(endpoint, body)
    with pytest.raises(Unavailable, match="judges do not chain"):
        asyncio.run(Judge("e", "judge", chained).check(JUDGED, ["pasta"], False))


def test_a_judged_stream_is_held_then_sent_or_blocked():
    words = ["a", " pasta", " recipe"]
    chunks = [_chunk(w) for w in words] + [_chunk(None, "stop"), b"data: [DONE]\n\n"]

    async def relay(guard):
        async def source():
            for chunk in chunks:
                yield chunk
        guarded = GuardedStream("e", JUDGED, source(), Judge("e", "judge", guard))
        return [c async for c in guarded.relay()], guarded
    events, guarded = asyncio.run(relay(FakeGuard()))
    assert _text_of(events) == "a pasta recipe" and events[-1].endswith(b"[DONE]\n\n")
    events, guarded = asyncio.run(relay(FakeGuard(answer="UNSAFE")))
    assert _text_of(events) == "" and "judged unsafe" in guarded.blocked
    assert orjson.loads(events[-1][6:])["error"]["type"] == "guardrail_blocked"
    events, guarded = asyncio.run(relay(FakeGuard(failure=RateLimited("busy"))))
    assert _text_of(events) == "" and orjson.loads(events[-1][6:])["error"]["code"] == "TEMPORARILY_UNAVAILABLE"


def test_text_held_back_still_goes_out_before_a_provider_error():
    error = b'data: {"error": {"message": "model crashed", "type": "server_error"}}\n\n'
    events, guarded = asyncio.run(_relay([_chunk("a short answer"), error], MASK))
    assert _text_of(events) == "a short answer" and events[-1].endswith(error) and guarded.blocked == ""
