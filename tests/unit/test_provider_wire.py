"""The provider wire formats, without a network: Anthropic ↔ OpenAI translation, SSE, error mapping."""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest

from services.common.errors import InvalidParameter
from services.router.external import anthropic_wire, openai_wire
from services.router.external.provider_errors import parse_retry_after, provider_error
from services.router.external.sse import DONE, SseParser

CHAT, COMPLETIONS = "llm/v1/chat", "llm/v1/completions"


@pytest.mark.parametrize("payload, want", [
    pytest.param({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]},
                 {"system": "Be brief.", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1024},
                 id="system prompt apart, max_tokens defaulted"),
    pytest.param({"messages": [{"role": "system", "content": "A"}, {"role": "developer", "content": "B"},
                               {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]},
                               {"role": "assistant", "content": "z"}, {"role": "user", "content": "w"}],
                  "max_tokens": 7, "temperature": 1.4, "top_p": 0.9, "stop": "END", "user": "u1", "stream": True},
                 {"system": "A\n\nB", "max_tokens": 7, "temperature": 0.7, "top_p": 0.9, "stop_sequences": ["END"],
                  "metadata": {"user_id": "u1"}, "stream": True,
                  "messages": [{"role": "user", "content": "xy"}, {"role": "assistant", "content": "z"},
                               {"role": "user", "content": "w"}]},
                 id="roles, text parts, sampling, stop, user, stream"),
    pytest.param({"messages": [{"role": "user", "content": "x"}], "extra_params": {"top_k": 5}}, {"top_k": 5},
                 id="extra_params merge"),
])
def test_chat_request_to_anthropic(payload, want):
    body = anthropic_wire.messages_request("claude-x", CHAT, payload)
    assert body["model"] == "claude-x"
    for key, value in want.items():
        assert body[key] == value, key
    assert "system" in body or "system" not in want


def test_completions_request_to_anthropic():
    body = anthropic_wire.messages_request("claude-x", COMPLETIONS, {"prompt": ["once"], "max_tokens": 3, "stop": ["a", "b"]})
    assert body == {"model": "claude-x", "messages": [{"role": "user", "content": "once"}], "max_tokens": 3,
                    "stop_sequences": ["a", "b"]}


@pytest.mark.parametrize("payload, needle", [
    ({"messages": [{"role": "tool", "content": "x"}]}, "role 'tool'"),
    ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "at least one user message"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "only text parts"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n must be 1"),
])
def test_what_anthropic_cannot_take_is_a_clear_400(payload, needle):
    with pytest.raises(InvalidParameter, match=needle.replace("(", r"\(")):
        anthropic_wire.messages_request("c", CHAT, payload)


@pytest.mark.parametrize("stop_reason, finish", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), (None, "stop"),
])
def test_anthropic_answer_to_openai(stop_reason, finish):
    message = {"id": "msg_1", "model": "claude-x", "stop_reason": stop_reason,
               "content": [{"type": "text", "text": "Hel"}, {"type": "tool_use", "id": "t"}, {"type": "text", "text": "lo"}],
               "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 2}}
    body, usage = anthropic_wire.to_openai_response(CHAT, message, created=123)
    answer = orjson.loads(body)
    assert answer["object"] == "chat.completion" and answer["created"] == 123 and answer["model"] == "claude-x"
    assert answer["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                                  "finish_reason": finish, "finishReason": finish, "logprobs": None}]
    assert answer["usage"] == {"prompt_tokens": 15, "completion_tokens": 2, "total_tokens": 17}
    assert (usage.input_tokens, usage.output_tokens) == (15, 2)
    completion = orjson.loads(anthropic_wire.to_openai_response(COMPLETIONS, message, created=1)[0])
    assert completion["object"] == "text_completion" and completion["choices"][0]["text"] == "Hello"


def _anthropic_stream(translator, events):
    out = []
    for name, data in events:
        out += translator.on_event(name, orjson.dumps(data).decode())
    return out


STREAM = [
    ("message_start", {"type": "message_start", "message": {"id": "msg_1", "model": "claude-x",
                                                            "usage": {"input_tokens": 4, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hi"}}),
    ("content_block_delta", {"type": "content_block_delta", "delta": {"type": "text_delta", "text": " there"}}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 2}}),
    ("message_stop", {"type": "message_stop"}),
]


def test_anthropic_stream_to_openai_chunks():
    translator = anthropic_wire.StreamTranslator(CHAT, created=9, include_usage=True)
    out = _anthropic_stream(translator, STREAM)
    assert out[-1] == DONE
    chunks = [orjson.loads(line.removeprefix(b"data: ")) for line in out[:-1]]
    assert [c["choices"][0]["delta"] for c in chunks[:-1]] == [
        {"role": "assistant", "content": ""}, {"content": "Hi"}, {"content": " there"}, {}]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 2,
                                                                    "total_tokens": 6}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and {c["id"] for c in chunks} == {"msg_1"}
    assert translator.done and not translator.error


def test_anthropic_stream_for_completions_and_errors():
    translator = anthropic_wire.StreamTranslator(COMPLETIONS, created=9, include_usage=False)
    out = _anthropic_stream(translator, STREAM)
    texts = [orjson.loads(line[6:])["choices"][0]["text"] for line in out[:-1]]
    assert texts == ["Hi", " there", ""] and out[-1] == DONE  # no usage chunk unless asked
    failing = anthropic_wire.StreamTranslator(CHAT, created=9, include_usage=False)
    out = _anthropic_stream(failing, STREAM[:3] + [("error", {"type": "error", "error": {"type": "overloaded_error",
                                                                                         "message": "Overloaded"}})])
    assert orjson.loads(out[-1][6:]) == {"error": {"message": "provider anthropic: Overloaded",
                                                   "type": "overloaded_error", "code": None}}
    assert failing.done and failing.error == "Overloaded" and DONE not in out


def test_sse_parser_keeps_events_and_drops_comments():
    parser = SseParser()
    lines = [b": keep-alive\n", b"event: message_start\n", b"data: {\"a\":\n", b"data: 1}\n", b"\n", b"\r\n",
             b"data: [DONE]\r\n", b"\r\n"]
    events = [e for e in (parser.feed(line) for line in lines) if e]
    assert events == [("message_start", '{"a":\n1}'), ("", "[DONE]")]


def test_openai_request_and_stream_relay():
    body = openai_wire.provider_request("gpt-x", CHAT, {"model": "my-endpoint", "messages": [], "stream": True,
                                                         "client_request_id": "c", "usage_context": {"a": "b"},
                                                         "extra_params": {"seed": 1}})
    assert body == {"model": "gpt-x", "messages": [], "stream": True, "seed": 1,
                    "stream_options": {"include_usage": True}}
    delta = '{"choices":[{"index":0,"delta":{"content":"x"}}]}'
    assert openai_wire.relay_chunk(delta, False) == (f"data: {delta}\n\n".encode(), None, "")
    usage_only = '{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}'
    chunk, usage, _ = openai_wire.relay_chunk(usage_only, include_usage=False)
    assert chunk is None and (usage.input_tokens, usage.output_tokens) == (3, 4)
    assert openai_wire.relay_chunk(usage_only, include_usage=True)[0] == f"data: {usage_only}\n\n".encode()
    assert openai_wire.relay_chunk('{"error": {"message": "boom"}}', False)[2] == "boom"


def test_embeddings_base64_is_what_the_openai_sdk_decodes():
    answer = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.25, 3.0]}]}
    body, _ = openai_wire.finish_response("llm/v1/embeddings", answer, {"encoding_format": "base64"})
    encoded = orjson.loads(body)["data"][0]["embedding"]
    assert np.frombuffer(base64.b64decode(encoded), dtype="<f4").tolist() == [0.5, -1.25, 3.0]
    body, _ = openai_wire.finish_response("llm/v1/embeddings", {"data": [{"embedding": [1.0]}]}, {})
    assert orjson.loads(body)["data"][0]["embedding"] == [1.0]


@pytest.mark.parametrize("status, body, code, http, needle", [
    (429, b'{"error": {"message": "slow down"}}', "REQUEST_LIMIT_EXCEEDED", 429, "openai is rate limiting"),
    (401, b'{"error": {"message": "Incorrect API key provided: sk-SECRET"}}', "PERMISSION_DENIED", 403,
     "refused the credentials"),
    (403, b"forbidden", "PERMISSION_DENIED", 403, "refused the credentials"),
    (408, b"", "DEADLINE_EXCEEDED", 504, "timed out"),
    (500, b'{"type": "error", "error": {"type": "api_error", "message": "oops"}}', "BAD_GATEWAY", 502, "oops"),
    (529, b"<html>overloaded</html>", "BAD_GATEWAY", 502, "HTTP 529"),
    (404, b'{"error": {"message": "model gpt-9 does not exist"}}', "BAD_REQUEST", 400, "gpt-9 does not exist"),
    (400, b'{"error": {"message": "bad key sk-SECRET here"}}', "BAD_REQUEST", 400, "[REDACTED]"),
])
def test_provider_errors(status, body, code, http, needle):
    error = provider_error("openai", "gpt", status, body, "3", "sk-SECRET", now_s=0.0)
    assert (error.code, error.http_status) == (code, http)
    assert needle in error.message and "sk-SECRET" not in error.message
    assert error.retry_after_s == (3 if status == 429 else None)


@pytest.mark.parametrize("value, want", [
    (None, 1), ("", 1), ("7", 7), ("0.2", 1), ("2.5", 3), ("99999", 3600), ("nonsense", 1),
    ("Thu, 01 Jan 1970 00:00:30 GMT", 30),
])
def test_parse_retry_after(value, want):
    assert parse_retry_after(value, now_s=0.0) == want
