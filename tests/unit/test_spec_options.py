"""Validation of an endpoint's options (tags, AI gateway, rate limits, notifications, telemetry), without processes."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidParameter, MalformedRequest
from services.control_plane import spec, spec_options

ENTITY = {"entity_name": "c.s.m", "entity_version": "1"}


@pytest.mark.parametrize("tags, add, delete, want", [
    pytest.param([], [{"key": "a", "value": "1"}], [], [{"key": "a", "value": "1"}], id="add to none"),
    pytest.param([{"key": "a", "value": "1"}], [{"key": "a", "value": "2"}], [], [{"key": "a", "value": "2"}],
                 id="an added key overwrites in place"),
    pytest.param([{"key": "a"}, {"key": "b"}], [], ["a", "zzz"], [{"key": "b"}], id="delete; unknown keys are fine"),
    pytest.param([{"key": "a"}, {"key": "b"}], [{"key": "c"}], ["a"], [{"key": "b"}, {"key": "c"}],
                 id="both at once, order kept"),
])
def test_apply_tags_patch(tags, add, delete, want):
    assert spec_options.apply_tags_patch(tags, add, delete) == want


@pytest.mark.parametrize("body, error, needle", [
    ({"add_tags": [{"value": "x"}]}, InvalidParameter, "add_tags[0].key"),
    ({"add_tags": [{"key": "a"}, {"key": "a"}]}, InvalidParameter, "twice"),
    ({"add_tags": [{"key": "a", "value": 3}]}, InvalidParameter, "add_tags[0].value"),
    ({"add_tags": [{"key": "a"}], "delete_tags": ["a"]}, InvalidParameter, "both"),
    ({"delete_tags": [1]}, InvalidParameter, "delete_tags[0]"),
    ({"add_tag": []}, InvalidParameter, "unknown field 'add_tag'"),
    ([{"key": "a"}], MalformedRequest, "request body"),
])
def test_invalid_tag_patches(body, error, needle):
    with pytest.raises(error) as raised:
        spec_options.validate_tags_patch(body)
    assert needle in raised.value.message


def test_ai_gateway_is_normalized():
    gateway = spec_options.validate_ai_gateway({
        "rate_limits": [{"calls": 10, "renewal_period": "minute"},
                        {"tokens": 100, "renewal_period": "minute", "key": "user", "principal": "a@b.co"},
                        {"tokens": 100, "renewal_period": "minute", "key": "user"}],
        "guardrails": {"input": {"pii": {"behavior": "MASK"}, "safety": False}},
        "inference_table_config": {"enabled": False},
        "usage_tracking_config": {},
        "fallback_config": {"enabled": True},
    })
    assert gateway["rate_limits"][0] == {"renewal_period": "minute", "key": "endpoint", "calls": 10}  # key defaults
    assert gateway["rate_limits"][1]["principal"] == "a@b.co"
    assert gateway["guardrails"] == {"input": {"pii": {"behavior": "MASK"}, "safety": False}}
    assert gateway["usage_tracking_config"] == {} and gateway["fallback_config"] == {"enabled": True}
    assert spec_options.validate_ai_gateway({}) == {}


@pytest.mark.parametrize("gateway, needle", [
    ({"rate_limits": [{"calls": 1}]}, "rate_limits[0].renewal_period"),
    ({"rate_limits": [{"calls": 1, "renewal_period": "hour"}]}, "'hour' must be one of minute"),
    ({"rate_limits": [{"renewal_period": "minute"}]}, "calls, tokens or both"),
    ({"rate_limits": [{"calls": -1, "renewal_period": "minute"}]}, "rate_limits[0].calls"),
    ({"rate_limits": [{"calls": 1.5, "renewal_period": "minute"}]}, "non-negative integer"),
    ({"rate_limits": [{"calls": 1, "renewal_period": "minute", "key": "team"}]}, "rate_limits[0].key"),
    ({"rate_limits": [{"calls": 1, "renewal_period": "minute", "principal": "a"}]}, "principal"),
    ({"rate_limits": [{"calls": 1, "renewal_period": "minute"}, {"calls": 2, "renewal_period": "minute"}]},
     "second rate limit"),
    ({"guardrails": {"input": {"pii": {"behavior": "LOG"}}}}, "guardrails.input.pii.behavior"),
    ({"guardrails": {"input": {"safety": "yes"}}}, "guardrails.input.safety"),
    ({"guardrails": {"inputs": {}}}, "unknown field 'inputs'"),
    ({"guardrails": {"output": {"invalid_keywords": "x"}}}, "invalid_keywords"),
    ({"inference_table_config": {"enabled": True}}, "catalog_name"),
    ({"fallback_config": {}}, "fallback_config.enabled"),
    ({"usage_tracking": {"enabled": True}}, "unknown field 'usage_tracking'"),
])
def test_invalid_ai_gateways(gateway, needle):
    with pytest.raises((InvalidParameter, MalformedRequest)) as raised:
        spec_options.validate_ai_gateway(gateway)
    assert needle in raised.value.message


@pytest.mark.parametrize("limits, needle", [
    ([{"renewal_period": "minute"}], "rate_limits[0].calls"),
    ([{"calls": 1, "renewal_period": "minute", "key": "user_group"}], "must be one of endpoint, user"),
    ([{"calls": 1, "renewal_period": "minute", "tokens": 5}], "unknown field 'tokens'"),
    ([{"calls": 1, "renewal_period": "minute"}, {"calls": 1, "renewal_period": "minute", "key": "endpoint"}],
     "second rate limit"),
])
def test_invalid_legacy_rate_limits(limits, needle):
    with pytest.raises(InvalidParameter) as raised:
        spec_options.validate_rate_limits_put({"rate_limits": limits})
    assert needle in raised.value.message


def test_empty_rate_limit_put_clears_the_limits():
    assert spec_options.validate_rate_limits_put({}) == []


@pytest.mark.parametrize("call, body, needle", [
    (spec_options.validate_notifications_patch, {"email_notifications": {"on_update_failure": ["x"]}}, "email"),
    (spec_options.validate_notifications_patch, {"email_notifications": {"on_failure": []}}, "on_failure"),
    (spec_options.validate_telemetry_patch, {"telemetry_config": {"enabled_telemetry_features": ["LOGS"]}},
     "enabled_telemetry_features[0]"),
    (spec_options.validate_telemetry_patch, {"telemetry_config": {"inference_table_config": {"sampling_fraction": 0}}},
     "sampling_fraction"),
    (spec_options.validate_telemetry_patch, {"telemetry_config": {"telemetry_profile_id": "p",
                                                                  "table_names": {"logs_table": "t"}}}, "not both"),
])
def test_invalid_notifications_and_telemetry(call, body, needle):
    with pytest.raises(InvalidParameter) as raised:
        call(body)
    assert needle in raised.value.message


def test_create_keeps_every_option_and_folds_legacy_rate_limits_into_the_ai_gateway():
    created = spec.validate_create({
        "name": "e", "config": {"name": "e", "served_entities": [ENTITY],
                                "auto_capture_config": {"catalog_name": "main", "enabled": True}},
        "tags": [{"key": "a"}], "rate_limits": [{"calls": 5, "renewal_period": "minute"}],
        "email_notifications": {"on_update_success": ["a@b.co"]},
        "telemetry_config": {"enabled_telemetry_features": ["TELEMETRY_FEATURE_TRACES"]},
        "budget_policy_id": "bp", "description": "d"})
    assert created["ai_gateway"] == {"rate_limits": [{"calls": 5, "key": "endpoint", "renewal_period": "minute"}]}
    assert created["email_notifications"] == {"on_update_success": ["a@b.co"]}
    assert created["config"]["auto_capture_config"] == {"catalog_name": "main", "enabled": True}
    assert (created["budget_policy_id"], created["description"], created["tags"]) == ("bp", "d", [{"key": "a"}])
    with pytest.raises(InvalidParameter, match="not both"):
        spec.validate_create({"name": "e", "config": {"served_entities": [ENTITY]},
                              "rate_limits": [{"calls": 5, "renewal_period": "minute"}],
                              "ai_gateway": {"rate_limits": [{"calls": 5, "renewal_period": "minute"}]}})
