"""AI gateway guardrails end to end, through the unmodified openai SDK and databricks-sdk: personal data
blocked or masked before it reaches the provider (the stand-in's log shows what it got), answers masked in
plain and streamed form, a blocked stream cut after the text that passed, blocks recorded in the inference
table and usage, safety and valid_topics judged by the endpoint's guard endpoint, and refused without one."""

from __future__ import annotations

import json

import openai
import pytest
from databricks.sdk.errors import BadRequest as SdkBadRequest
from databricks.sdk.service.serving import AiGatewayGuardrailParameters, AiGatewayGuardrails

from tests.support.external import create_external_endpoint, external_entity
from tests.support.stack import wait_for

pytestmark = pytest.mark.stack

CARD = "4111 1111 1111 1111"
EMAIL = "ann.lee@example.com"
LOGGED = {"inference_table_config": {"enabled": True, "catalog_name": "main", "schema_name": "default"},
          "usage_tracking_config": {"enabled": True}}


def _client(stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/serving-endpoints", api_key=stack.admin_token, max_retries=0)


def _endpoint(stack, providers, name: str, guardrails: dict, provider: str = "openai") -> str:
    create_external_endpoint(stack, name, external_entity(providers, provider, "llm/v1/chat"),
                             ai_gateway={"guardrails": guardrails, **LOGGED})
    return name


def _sent_to_provider(providers, marker: str) -> list[str]:
    """The user messages the stand-in received that carry `marker` (as a model, not as a judge)."""
    return [m["content"] for r in providers.requests if r["provider"] == "openai" and "messages" in r["body"]
            and r["body"]["model"] != "__judge__" for m in r["body"]["messages"] if marker in str(m.get("content"))]


def test_input_pii_block_stops_the_request_before_the_provider_and_records_it(stack, fake_providers):
    name = _endpoint(stack, fake_providers, "guard-block-in", {"input": {"pii": {"behavior": "BLOCK"}}})
    with pytest.raises(openai.BadRequestError) as raised:
        _client(stack).chat.completions.create(
            model=name, messages=[{"role": "user", "content": f"block-me: charge {CARD}"}])
    assert raised.value.status_code == 400
    assert raised.value.body["error_code"] == "BAD_REQUEST"  # Databricks' error shape
    assert "blocked by the guardrails" in raised.value.body["message"] and "CREDIT_CARD" in raised.value.body["message"]
    assert _sent_to_provider(fake_providers, "block-me") == []   # never sent
    ok = _client(stack).chat.completions.create(model=name, messages=[{"role": "user", "content": "no data here"}])
    assert ok.choices[0].message.content == "echo: no data here"
    rows = wait_for(lambda: (r := stack.api("GET", f"/api/2.0/serving-endpoints/{name}/inference-table")
                             .json()["rows"]) and len(r) >= 2 and r, timeout_s=20, what="two inference rows")
    blocked = next(r for r in rows if r["status_code"] == 400)
    assert blocked["logging_error_codes"] == ["GUARDRAIL_INPUT_BLOCKED"]
    assert CARD not in blocked["request"] and "[CREDIT_CARD]" in blocked["request"]   # no card kept either
    [usage] = stack.api("GET", f"/api/2.0/serving-endpoints/{name}/usage").json()["usage"]
    assert (usage["request_count"], usage["blocked_count"], usage["error_count"]) == (2, 1, 1)


def test_input_pii_mask_sends_the_provider_the_mask(stack, fake_providers):
    name = _endpoint(stack, fake_providers, "guard-mask-in", {"input": {"pii": {"behavior": "MASK"}}},
                     provider="openai")
    answer = _client(stack).chat.completions.create(
        model=name, messages=[{"role": "system", "content": "be brief"},
                              {"role": "user", "content": f"mask-me: card {CARD}, mail {EMAIL}"}])
    assert _sent_to_provider(fake_providers, "mask-me") == ["mask-me: card [CREDIT_CARD], mail [EMAIL_ADDRESS]"]
    assert answer.choices[0].message.content == "echo: mask-me: card [CREDIT_CARD], mail [EMAIL_ADDRESS]"


def test_output_pii_mask_in_plain_and_streamed_answers(stack, fake_providers):
    name = _endpoint(stack, fake_providers, "guard-mask-out", {"output": {"pii": {"behavior": "MASK"}}},
                     provider="anthropic")
    prompt = f"write to {EMAIL} or call (415) 555-0132 " + "please " * 20
    plain = _client(stack).chat.completions.create(model=name, messages=[{"role": "user", "content": prompt}])
    assert plain.choices[0].message.content == "echo: " + prompt.replace(EMAIL, "[EMAIL_ADDRESS]").replace(
        "(415) 555-0132", "[PHONE_NUMBER]")
    chunks = list(_client(stack).chat.completions.create(
        model=name, messages=[{"role": "user", "content": prompt}], stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == plain.choices[0].message.content   # masked whole, though it came word by word
    assert len(chunks) > 5   # still streamed, not buffered into one answer


def test_output_block_stops_a_stream_after_the_text_that_passed(stack, fake_providers):
    name = _endpoint(stack, fake_providers, "guard-block-out", {"output": {"pii": {"behavior": "BLOCK"}}})
    prompt = "one two three four five six seven eight nine ten " * 3 + f"my card is {CARD} " + "more " * 20
    received = ""
    with pytest.raises(openai.APIError) as raised:
        for chunk in _client(stack).chat.completions.create(
                model=name, messages=[{"role": "user", "content": prompt}], stream=True):
            received += "".join(c.delta.content or "" for c in chunk.choices)
    assert "blocked by the guardrails" in str(raised.value.message)
    assert received.startswith("echo: one two three") and "4111" not in received
    plain = stack.api("POST", f"/serving-endpoints/{name}/invocations",
                      json={"messages": [{"role": "user", "content": prompt}]})
    assert plain.status_code == 400 and plain.json()["error_code"] == "BAD_REQUEST" and "4111" not in plain.text
    rows = wait_for(lambda: (r := stack.api("GET", f"/api/2.0/serving-endpoints/{name}/inference-table")
                             .json()["rows"]) and len(r) >= 2 and r, timeout_s=20, what="two inference rows")
    assert [r["logging_error_codes"] for r in rows] == [["GUARDRAIL_OUTPUT_BLOCKED"]] * 2
    assert all(r["status_code"] == 400 and "4111" not in (r["response"] or "") for r in rows)


def test_invalid_keywords_block_requests(stack, fake_providers):
    name = _endpoint(stack, fake_providers, "guard-keywords", {"input": {"invalid_keywords": ["Project Falcon"]}})
    refused = stack.api("POST", f"/serving-endpoints/{name}/invocations",
                        json={"messages": [{"role": "user", "content": "what is project falcon?"}]})
    assert refused.status_code == 400 and "invalid keyword 'Project Falcon'" in refused.json()["message"]
    passed = stack.api("POST", f"/serving-endpoints/{name}/invocations",
                       json={"messages": [{"role": "user", "content": "what is a falcon?"}]})
    assert passed.status_code == 200, passed.text


def test_safety_and_valid_topics_are_judged_by_the_guard_endpoint(stack, fake_providers):
    judge = external_entity(fake_providers, "openai", "llm/v1/chat", name="judge")
    judge["external_model"]["name"] = "__judge__"   # the stand-in answers SAFE / UNSAFE, ON_TOPIC / OFF_TOPIC
    create_external_endpoint(stack, "guard-judge", judge)
    name = _endpoint(stack, fake_providers, "guard-judged-topics", {
        "guard_endpoint": "guard-judge", "input": {"safety": True, "valid_topics": ["cooking", "recipes"]},
        "output": {"safety": True}})
    ok = _client(stack).chat.completions.create(model=name, messages=[{"role": "user", "content": "a cooking tip"}])
    assert ok.choices[0].message.content == "echo: a cooking tip"
    for text, reason in (("cooking an attack plan", "it was judged unsafe"),
                         ("tell me about cars", "it was judged off the allowed topics")):
        with pytest.raises(openai.BadRequestError) as raised:
            _client(stack).chat.completions.create(model=name, messages=[{"role": "user", "content": text}])
        assert reason in raised.value.body["message"]
        assert _sent_to_provider(fake_providers, text) == []   # the judge saw it, the endpoint's model did not
    streamed = list(_client(stack).chat.completions.create(
        model=name, messages=[{"role": "user", "content": "recipes for pasta"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "echo: recipes for pasta"
    # The judge is asked as the caller: one who may query the endpoint but not its guard endpoint is refused.
    caller = stack.user_token("guard-caller@example.com")
    endpoint_id = stack.api("GET", f"/api/2.0/serving-endpoints/{name}").json()["id"]
    acl = {"access_control_list": [{"user_name": "guard-caller@example.com", "permission_level": "CAN_QUERY"}]}
    assert stack.api("PUT", f"/api/2.0/permissions/serving-endpoints/{endpoint_id}", json=acl).status_code == 200
    [refused] = wait_for(lambda: (r := stack.api_as(caller, "POST", f"/serving-endpoints/{name}/invocations", json={
        "messages": [{"role": "user", "content": "a cooking tip"}]})).status_code != 404 and [r], timeout_s=10,
        what="the grant to reach the router")
    assert refused.status_code == 403, refused.text
    assert "guard endpoint 'guard-judge' of endpoint 'guard-judged-topics' could not be queried" in refused.text


def test_safety_and_valid_topics_are_refused_with_a_clear_error(stack, workspace, fake_providers):
    name = _endpoint(stack, fake_providers, "guard-judged", {"input": {"pii": {"behavior": "MASK"}}})
    for params in (AiGatewayGuardrailParameters(safety=True), AiGatewayGuardrailParameters(valid_topics=["cooking"])):
        with pytest.raises(SdkBadRequest) as raised:
            workspace.serving_endpoints.put_ai_gateway(name, guardrails=AiGatewayGuardrails(input=params))
        assert "needs a model to judge it: set request body.guardrails.guard_endpoint" in str(raised.value)
    entity = external_entity(fake_providers, "openai", "llm/v1/chat")
    created = stack.api("POST", "/api/2.0/serving-endpoints", json={
        "name": "guard-judged-2", "config": {"served_entities": [entity]},
        "ai_gateway": {"guardrails": {"output": {"safety": True}}}})
    assert created.status_code == 400 and created.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "ai_gateway.guardrails.output.safety" in created.json()["message"]
    kept = stack.api("GET", f"/api/2.0/serving-endpoints/{name}").json()["ai_gateway"]["guardrails"]
    assert json.dumps(kept) == json.dumps({"input": {"pii": {"behavior": "MASK"}}})   # a refused update changes nothing


def test_custom_model_guardrails_and_legacy_auto_capture(stack, iris_model):
    """A custom model's request is checked string by string; auto_capture_config writes the inference table."""
    body = {"name": "guard-iris", "ai_gateway": {"guardrails": {"input": {"pii": {"behavior": "BLOCK"}}}},
            "config": {"served_entities": [{"entity_name": iris_model.name, "entity_version": iris_model.version}],
                       "auto_capture_config": {"catalog_name": "main", "schema_name": "logs", "enabled": True}}}
    assert stack.api("POST", "/api/2.0/serving-endpoints", json=body).status_code == 200
    assert stack.wait_endpoint("guard-iris")["state"]["ready"] == "READY"
    rows = {"dataframe_records": iris_model.frame.head(2).to_dict(orient="records")}
    ok = stack.api("POST", "/serving-endpoints/guard-iris/invocations", json=rows)
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 2, ok.text
    blocked = stack.api("POST", "/serving-endpoints/guard-iris/invocations",
                        json={**rows, "params": {"note": "bill ann.lee@example.com"}})
    assert blocked.status_code == 400 and "EMAIL_ADDRESS" in blocked.json()["message"]
    table = wait_for(lambda: (r := stack.api("GET", "/api/2.0/serving-endpoints/guard-iris/inference-table")
                              .json()["rows"]) and len(r) >= 2 and r, timeout_s=20, what="two inference rows")
    assert [r["status_code"] for r in table] == [200, 400]
    assert json.loads(table[0]["request"]) == rows and "ann.lee" not in table[1]["request"]
