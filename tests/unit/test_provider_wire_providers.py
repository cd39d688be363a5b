"""Translation tables of Bedrock's model families, Cohere v2 and Vertex AI's Gemini to and from the OpenAI
shape; SigV4 signing as botocore verifies it; AWS event-stream decoding. No network."""

from __future__ import annotations

import time

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer

from services.common.errors import InvalidParameter
from services.router.external import bedrock_wire, cohere_wire, openai_shape, vertex_wire
from tests.support import bedrock_standin, provider_standins as standin

CHAT, COMPLETIONS, EMBEDDINGS = "llm/v1/chat", "llm/v1/completions", "llm/v1/embeddings"
CONVERSATION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"}, {"role": "user", "content": [{"type": "text", "text": "why"}]}]


@pytest.mark.parametrize("family, task, payload, want", [
    pytest.param("anthropic", CHAT, {"messages": CONVERSATION, "temperature": 1.0, "stream": True, "user": "u"},
                 {"anthropic_version": "bedrock-2023-05-31", "system": "Be brief.", "max_tokens": 1024,
                  "temperature": 0.5, "messages": [{"role": "user", "content": "hi"},
                                                   {"role": "assistant", "content": "hello"},
                                                   {"role": "user", "content": "why"}]},
                 id="claude: Anthropic's body, no model, stream or metadata"),
    pytest.param("amazon", CHAT, {"messages": CONVERSATION, "max_tokens": 9, "stop": "END", "top_p": 0.9},
                 {"inputText": "Be brief.\nUser: hi\nBot: hello\nUser: why\nBot:",
                  "textGenerationConfig": {"maxTokenCount": 9, "topP": 0.9, "stopSequences": ["END"]}},
                 id="titan chat: one User/Bot transcript"),
    pytest.param("amazon", COMPLETIONS, {"prompt": ["once upon"], "temperature": 4},
                 {"inputText": "once upon", "textGenerationConfig": {"temperature": 1.0}},
                 id="titan completion: temperature capped at 1"),
    pytest.param("amazon", EMBEDDINGS, {"input": "vector me"}, {"inputText": "vector me"}, id="titan embeddings"),
    pytest.param("cohere", CHAT, {"messages": CONVERSATION, "top_k": 3, "temperature": 0.4},
                 {"message": "why", "preamble": "Be brief.", "k": 3, "temperature": 0.2,
                  "chat_history": [{"role": "USER", "message": "hi"}, {"role": "CHATBOT", "message": "hello"}]},
                 id="command r: the last user turn apart from the history"),
    pytest.param("cohere", EMBEDDINGS, {"input": ["a", "b"], "extra_params": {"input_type": "search_query"}},
                 {"texts": ["a", "b"], "input_type": "search_query"}, id="cohere embed on bedrock"),
    pytest.param("ai21labs", CHAT, {"messages": CONVERSATION, "temperature": 1.5, "stop": "x"},
                 {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                               {"role": "assistant", "content": "hello"}, {"role": "user", "content": "why"}],
                  "temperature": 1.5, "stop": ["x"]}, id="jamba: OpenAI-style messages, no model"),
    pytest.param("meta", COMPLETIONS, {"prompt": "once upon", "max_completion_tokens": 7},
                 {"prompt": "once upon", "max_gen_len": 7}, id="llama completion: the prompt as given"),
])
def test_bedrock_request_bodies(family, task, payload, want):
    assert bedrock_wire.request_body(family, "model-id", task, payload) == want


def test_bedrock_usage_comes_from_its_headers_where_the_body_has_none():
    reported = bedrock_wire.header_usage({"X-Amzn-Bedrock-Input-Token-Count": "7",
                                          "X-Amzn-Bedrock-Output-Token-Count": "2"})
    body, usage = bedrock_wire.to_openai("cohere", "cohere.command-r-v1:0", CHAT,
                                         {"text": "hi", "finish_reason": "MAX_TOKENS"}, {}, 1, reported)
    assert (usage.input_tokens, usage.output_tokens) == (7, 2)
    assert orjson.loads(body)["choices"][0]["finish_reason"] == "length"
    assert bedrock_wire.header_usage({}) is None


def test_command_r_needs_the_users_turn_last():
    with pytest.raises(InvalidParameter, match="last message must be the user's"):
        bedrock_wire.request_body("cohere", "m", CHAT, {"messages": CONVERSATION[:3]})


def test_bedrock_paths_encode_the_model_id_as_one_segment():
    assert bedrock_wire.invoke_path("anthropic.claude-v2:1", False) == "/model/anthropic.claude-v2%3A1/invoke"
    assert bedrock_wire.invoke_path("a/b", True) == "/model/a%2Fb/invoke-with-response-stream"


@pytest.mark.parametrize("family, answer, want_text, want_finish, want_usage", [
    ("amazon", {"inputTextTokenCount": 4, "results": [{"tokenCount": 2, "outputText": "ok", "completionReason":
                                                       "LENGTH"}]}, "ok", "length", (4, 2)),
    ("amazon", {"results": [{"outputText": "x", "completionReason": "CONTENT_FILTERED"}]}, "x", "content_filter",
     (0, 0)),
    ("meta", {"generation": "yo", "prompt_token_count": 5, "generation_token_count": 1, "stop_reason": "stop"},
     "yo", "stop", (5, 1)),
    ("anthropic", {"id": "m", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                   "stop_reason": "max_tokens", "usage": {"input_tokens": 3, "output_tokens": 2}}, "ab", "length",
     (3, 2)),
])
def test_bedrock_answers(family, answer, want_text, want_finish, want_usage):
    body, usage = bedrock_wire.to_openai(family, "model-id", CHAT, answer, {}, 1700000000)
    choice = orjson.loads(body)["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"], choice["finishReason"]) == (
        want_text, want_finish, want_finish)
    assert (usage.input_tokens, usage.output_tokens) == want_usage


def test_sigv4_signatures_verify_with_botocore_and_break_when_anything_changes():
    url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/meta.llama3-8b-instruct-v1%3A0/invoke"
    body = b'{"prompt": "hi"}'
    signed = bedrock_wire.sign(url, body, {"content-type": "application/json", "x-podium-hop": "1"},
                               bedrock_standin.AWS_ACCESS_KEY_ID, bedrock_standin.AWS_SECRET_ACCESS_KEY, "us-east-1")
    headers = {**signed, "Host": "bedrock-runtime.us-east-1.amazonaws.com"}
    assert "x-podium-hop" in signed["Authorization"] and signed["X-Amz-Date"]
    now = time.time()
    assert bedrock_standin.sigv4_refusal("POST", url, headers, body, "us-east-1", now) == ""
    assert "does not match" in bedrock_standin.sigv4_refusal("POST", url, headers, b'{"prompt": "ho"}', "us-east-1", now)
    assert "does not match" in bedrock_standin.sigv4_refusal("POST", url.replace("invoke", "invokx"), headers, body,
                                                     "us-east-1", now)
    assert "us-west-2/bedrock" in bedrock_standin.sigv4_refusal("POST", url, headers, body, "us-west-2", now)
    assert bedrock_standin.sigv4_refusal("POST", url, headers, body, "us-east-1", now + 600) == "Signature expired"


def _decoded(frames: bytes) -> list[tuple[str, str]]:
    buffer = EventStreamBuffer()
    buffer.add_data(frames)
    return [bedrock_wire.event_of(message) for message in buffer]


def test_event_stream_chunks_and_exceptions_are_decoded():
    exception = bedrock_standin.aws_event({":message-type": "exception", ":exception-type": "throttlingException",
                                   ":content-type": "application/json"}, b'{"message": "Too many requests"}')
    events = _decoded(bedrock_standin.aws_chunk({"generation": "hi"}) + exception)
    assert events == [("chunk", '{"generation":"hi"}'),
                      ("exception", '{"type":"throttlingException","message":"Too many requests"}')]
    translator = bedrock_wire.StreamTranslator("meta", "m", CHAT, 1, False)
    out = [c for name, data in events for c in translator.on_event(name, data)]
    assert b'"content":"hi"' in out[1] and b"throttlingException: Too many requests" in out[-1]
    assert translator.error and translator.done


@pytest.mark.parametrize("payload, want", [
    ({"messages": CONVERSATION, "top_k": 5, "seed": 1, "max_tokens": 3},
     {"model": "command-r", "max_tokens": 3, "k": 5, "seed": 1, "messages": [
         {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
         {"role": "assistant", "content": "hello"}, {"role": "user", "content": "why"}]}),
    ({"messages": [{"role": "user", "content": "x"}], "stream": True, "extra_params": {"safety_mode": "STRICT"}},
     {"model": "command-r", "messages": [{"role": "user", "content": "x"}], "stream": True, "safety_mode": "STRICT"}),
])
def test_cohere_chat_requests(payload, want):
    assert cohere_wire.request_body("command-r", CHAT, payload) == want


def test_cohere_embeddings_ask_for_floats_with_an_input_type():
    assert cohere_wire.request_body("embed-v3", EMBEDDINGS, {"input": "a"}) == {
        "model": "embed-v3", "texts": ["a"], "input_type": "search_document", "embedding_types": ["float"]}
    assert cohere_wire.request_body("embed-v3", EMBEDDINGS, {"input": ["a"], "extra_params": {
        "input_type": "search_query"}})["input_type"] == "search_query"


def test_cohere_stream_events_and_errors():
    translator = cohere_wire.StreamTranslator("command-r", CHAT, 1, True)
    out = translator.on_event("message-start", '{"type": "message-start", "id": "c1"}')
    out += translator.on_event("content-delta", '{"type": "content-delta", "delta": {"message": {"content": '
                                                '{"text": "hey"}}}}')
    out += translator.on_event("message-end", '{"type": "message-end", "delta": {"finish_reason": "MAX_TOKENS", '
                                              '"usage": {"tokens": {"input_tokens": 2, "output_tokens": 1}}}}')
    chunks = [orjson.loads(c.removeprefix(b"data: ")) for c in out[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""} and chunks[0]["id"] == "c1"
    assert chunks[1]["choices"][0]["delta"] == {"content": "hey"}
    assert chunks[2]["choices"][0]["finish_reason"] == "length" and chunks[3]["usage"]["total_tokens"] == 3
    assert out[-1] == b"data: [DONE]\n\n" and translator.done
    failing = cohere_wire.StreamTranslator("command-r", CHAT, 1, False)
    assert b"internal" in failing.on_event("", '{"type": "error", "error": {"message": "internal"}}')[0]
    assert failing.error == "internal"


def test_vertex_requests_paths_and_embeddings():
    body = vertex_wire.request_body(CHAT, {"messages": CONVERSATION, "top_p": 0.5, "stop": ["x"], "max_tokens": 8})
    assert body == {"contents": [{"role": "user", "parts": [{"text": "hi"}]},
                                 {"role": "model", "parts": [{"text": "hello"}]},
                                 {"role": "user", "parts": [{"text": "why"}]}],
                    "systemInstruction": {"parts": [{"text": "Be brief."}]},
                    "generationConfig": {"topP": 0.5, "maxOutputTokens": 8, "stopSequences": ["x"]}}
    assert vertex_wire.path("p", "europe-west4", "gemini-2.0-flash", CHAT, True) == (
        "/v1/projects/p/locations/europe-west4/publishers/google/models/gemini-2.0-flash:"
        "streamGenerateContent?alt=sse")
    assert vertex_wire.request_body(EMBEDDINGS, {"input": ["a", "b"]}) == {"instances": [{"content": "a"},
                                                                                         {"content": "b"}]}


@pytest.mark.parametrize("reason, finish", [("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
                                            ("RECITATION", "content_filter")])
def test_vertex_finish_reasons(reason, finish):
    answer = {"candidates": [{"content": {"parts": [{"text": "a"}, {"text": "b"}]}, "finishReason": reason}],
              "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 1}}
    body, usage = vertex_wire.to_openai("g", COMPLETIONS, answer, {}, 1)
    choice = orjson.loads(body)["choices"][0]
    assert (choice["text"], choice["finish_reason"], usage.total_tokens) == ("ab", finish, 3)


def test_vertex_token_request_is_a_jwt_google_auth_verifies():
    from google.auth import jwt

    standins = standin.ProviderStandIns()   # not started: only its key pair is used
    standins.url = "http://token.test"
    info = vertex_wire.service_account(standins.service_account_key())
    uri, form = vertex_wire.token_request(info, int(time.time()))
    assert uri == "http://token.test/google/token" and form["grant_type"] == vertex_wire.JWT_BEARER
    claims = jwt.decode(form["assertion"], certs=standins._public_pem, audience=uri)
    assert claims["iss"] == standin.GCP_CLIENT_EMAIL and claims["scope"] == vertex_wire.SCOPE
    with pytest.raises(ValueError, match="JSON key"):
        vertex_wire.service_account("-----BEGIN PRIVATE KEY-----")


@pytest.mark.parametrize("task, payload, needle", [
    (CHAT, {"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role 'tool'"),
    (CHAT, {"messages": [{"role": "system", "content": "x"}]}, "at least one user message"),
    (CHAT, {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "only text parts"),
    (CHAT, {"messages": [{"role": "user", "content": "x"}], "n": 2}, "n must be 1"),
    (COMPLETIONS, {"prompt": ["a", "b"]}, "one prompt per request"),
])
def test_requests_the_providers_cannot_take_are_refused(task, payload, needle):
    with pytest.raises(InvalidParameter, match=None) as refused:
        openai_shape.turns(task, payload, "cohere")
    assert needle in refused.value.message
