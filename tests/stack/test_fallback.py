"""AI gateway fallbacks end to end: a primary served entity answering 503 (or not answering in time) sends the
query to the next one, which serves; the answer and the records say which one served; a stream that started
is never sent again."""

from __future__ import annotations

import openai
import pytest
from databricks.sdk.service.serving import ChatMessage, ChatMessageRole

from tests.support.external import external_entity
from tests.support.stack import wait_for

pytestmark = pytest.mark.stack

LOGGED = {"inference_table_config": {"enabled": True, "catalog_name": "main", "schema_name": "default"},
          "usage_tracking_config": {"enabled": True}}


def _endpoint(stack, providers, name: str, primary_model: str, *, fallback: bool = True, **primary) -> None:
    first = external_entity(providers, "openai", "llm/v1/chat", name="primary", max_retries=0, **primary)
    first["external_model"]["name"] = primary_model
    second = external_entity(providers, "openai", "llm/v1/chat", name="backup")
    body = {"name": name, "config": {"served_entities": [first, second], "traffic_config": {"routes": [
        {"served_entity_name": "primary", "traffic_percentage": 100},
        {"served_entity_name": "backup", "traffic_percentage": 0}]}},
            "ai_gateway": {"fallback_config": {"enabled": fallback}, **LOGGED}}
    created = stack.api("POST", "/api/2.0/serving-endpoints", json=body)
    assert created.status_code == 200, created.text


def _client(stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/serving-endpoints", api_key=stack.admin_token, max_retries=0)


def test_a_primary_answering_503_falls_back_to_the_second_which_serves(stack, workspace, fake_providers):
    _endpoint(stack, fake_providers, "fallback-503", "__503__")
    raw = _client(stack).chat.completions.with_raw_response.create(
        model="fallback-503", messages=[{"role": "user", "content": "hello"}])
    assert raw.headers["served-model-name"] == "backup"
    assert raw.parse().choices[0].message.content == "echo: hello"
    answer = workspace.serving_endpoints.query(
        "fallback-503", messages=[ChatMessage(role=ChatMessageRole.USER, content="again")])
    assert answer.choices[0].message.content == "echo: again" and answer.served_model_name == "backup"
    streamed = list(_client(stack).chat.completions.create(
        model="fallback-503", messages=[{"role": "user", "content": "streamed"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "echo: streamed"
    rows = wait_for(lambda: (r := stack.api("GET", "/api/2.0/serving-endpoints/fallback-503/inference-table")
                             .json()["rows"]) and len(r) >= 3 and r, timeout_s=20, what="three inference rows")
    assert {(r["served_entity_name"], r["status_code"]) for r in rows} == {("backup", 200)}
    assert all(r["logging_error_codes"] == ["SERVED_BY_FALLBACK"] for r in rows)
    [usage] = stack.api("GET", "/api/2.0/serving-endpoints/fallback-503/usage").json()["usage"]
    assert usage["fallback_count"] == 3 and usage["error_count"] == 0
    pinned = stack.api("POST", "/serving-endpoints/fallback-503/served-models/primary/invocations",
                       json={"messages": [{"role": "user", "content": "only you"}]})
    assert pinned.status_code == 502, pinned.text   # a query naming its served entity never falls back


def test_without_fallback_the_primary_failure_is_the_answer(stack, fake_providers):
    _endpoint(stack, fake_providers, "fallback-off", "__503__", fallback=False)
    with pytest.raises(openai.APIStatusError) as raised:
        _client(stack).chat.completions.create(model="fallback-off", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 502 and raised.value.body["error_code"] == "BAD_GATEWAY"


def test_a_primary_that_times_out_falls_back(stack, fake_providers):
    _endpoint(stack, fake_providers, "fallback-slow", "__slow__", timeout_s=1.0)
    raw = _client(stack).chat.completions.with_raw_response.create(
        model="fallback-slow", messages=[{"role": "user", "content": "hurry"}])
    assert raw.headers["served-model-name"] == "backup" and raw.parse().choices[0].message.content == "echo: hurry"


def test_a_stream_that_started_is_never_sent_to_another_entity(stack, fake_providers):
    _endpoint(stack, fake_providers, "fallback-midstream", "gpt-4o-mini")
    before = fake_providers.attempts["__midstream_error__"]
    with pytest.raises(openai.APIError):
        for _ in _client(stack).chat.completions.create(
                model="fallback-midstream", messages=[{"role": "user", "content": "__midstream_error__"}], stream=True):
            pass
    assert fake_providers.attempts["__midstream_error__"] == before + 1
