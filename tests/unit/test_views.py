"""Every rendered field is one the databricks-sdk dataclasses know: answers round-trip through them unchanged."""

from __future__ import annotations

from databricks.sdk.service.serving import (
    EndpointTags, PutAiGatewayResponse, ServingEndpoint, ServingEndpointDetailed,
)

from services.control_plane import spec, views
from services.control_plane.state import IN_PROGRESS, PODIUM_STATE_FIELDS, READY, Observation, deployment_key
from tests.support.shapes import sdk_fields



def _endpoint_with_everything() -> dict:
    request = spec.validate_create({
        "name": "full", "config": {"served_entities": [
            {"entity_name": "c.s.m", "entity_version": "1", "environment_vars": {"A": "1"},
             "min_provisioned_concurrency": 0, "max_provisioned_concurrency": 8, "scale_to_zero_enabled": True},
            {"name": "champ", "entity_name": "c.s.m", "entity_version": "champion", "workload_size": "Large"}],
            "traffic_config": {"routes": [{"served_model_name": "m-1", "traffic_percentage": 60},
                                          {"served_entity_name": "champ", "traffic_percentage": 40}]},
            "auto_capture_config": {"catalog_name": "main", "schema_name": "s", "enabled": True}},
        "tags": [{"key": "a", "value": "b"}, {"key": "flag"}],
        "ai_gateway": {"guardrails": {"input": {"pii": {"behavior": "BLOCK"}, "invalid_keywords": ["x"]}},
                       "rate_limits": [{"tokens": 9, "renewal_period": "minute", "key": "user_group",
                                        "principal": "g"}],
                       "usage_tracking_config": {"enabled": True}, "fallback_config": {"enabled": False},
                       "inference_table_config": {"catalog_name": "c", "schema_name": "s", "enabled": True}},
        "email_notifications": {"on_update_failure": ["a@b.co"]},
        "telemetry_config": {"enabled_telemetry_features": ["TELEMETRY_FEATURE_LOGS"],
                             "inference_table_config": {"name": "t", "sampling_fraction": 0.5},
                             "table_names": {"logs_table": "l"}},
        "description": "all of it", "budget_policy_id": "bp"})
    config = request["config"]
    entities = [{**e, "creator": "ana", "creation_timestamp": 1} for e in config["served_entities"]]
    serving = {**config, "served_entities": entities, "config_version": 1}
    pending = {**serving, "config_version": 2, "start_time": 5}
    return {"id": "abc", "name": "full", "creator": "ana", "creation_timestamp": 1, "last_updated_timestamp": 5,
            "config": serving, "pending_config": pending, "state": {"ready": READY, "config_update": IN_PROGRESS},
            "failure": "", **{k: request[k] for k in ("tags", "ai_gateway", "email_notifications",
                                                      "telemetry_config", "route_optimized", "description",
                                                      "budget_policy_id")}}


def test_detailed_round_trips_through_serving_endpoint_detailed():
    endpoint = _endpoint_with_everything()
    observed = {deployment_key("abc", endpoint["config"]["served_entities"][0]): Observation(("127.0.0.1:1",))}
    rendered = views.detailed(endpoint, observed, "CAN_MANAGE")
    assert ServingEndpointDetailed.from_dict(rendered).as_dict() == sdk_fields(rendered)
    assert {k: rendered["config"]["served_entities"][0]["state"][k] for k in PODIUM_STATE_FIELDS} == \
        {"desired_replicas": 0, "ready_replicas": 1, "starting_replicas": 0}
    for field in ("id", "creator", "creation_timestamp", "last_updated_timestamp", "state", "config",
                  "pending_config", "tags", "permission_level", "route_optimized", "ai_gateway",
                  "email_notifications", "telemetry_config", "description", "budget_policy_id"):
        assert field in rendered, field
    assert rendered["pending_config"]["start_time"] == 5 and rendered["config"]["config_version"] == 1
    assert rendered["config"]["served_entities"][0]["state"]["deployment"] == "DEPLOYMENT_READY"
    assert rendered["config"]["auto_capture_config"]["catalog_name"] == "main"
    assert "failure" not in rendered and "rate_limits" not in rendered  # legacy limits live in ai_gateway


def test_summary_round_trips_through_serving_endpoint():
    rendered = views.summary(_endpoint_with_everything())
    assert ServingEndpoint.from_dict(rendered).as_dict() == rendered
    assert rendered["config"]["served_entities"][1] == {"name": "champ", "entity_name": "c.s.m",
                                                        "entity_version": "champion"}
    assert "email_notifications" not in rendered  # not a field of the list item


def test_option_answers_round_trip():
    endpoint = _endpoint_with_everything()
    gateway = views.ai_gateway(endpoint)
    assert PutAiGatewayResponse.from_dict(gateway).as_dict() == gateway
    assert set(gateway) == {"guardrails", "rate_limits", "usage_tracking_config", "fallback_config",
                            "inference_table_config"}
    tags = {"tags": endpoint["tags"]}
    assert EndpointTags.from_dict(tags).as_dict() == tags


def test_a_bare_endpoint_shows_no_empty_options():
    request = spec.validate_create({"name": "bare", "config": {"served_entities": [
        {"entity_name": "m", "entity_version": "1"}]}})
    endpoint = {**request, "id": "x", "creator": "ana", "creation_timestamp": 1, "last_updated_timestamp": 1,
                "config": None, "pending_config": {**request["config"], "config_version": 1, "start_time": 1},
                "state": {"ready": "NOT_READY", "config_update": IN_PROGRESS}}
    rendered = views.detailed(endpoint, {}, "CAN_QUERY")
    assert not {"ai_gateway", "email_notifications", "telemetry_config", "description", "budget_policy_id",
                "config"} & set(rendered)
    # The SDK writes no empty list back (a missing list parses as []): everything else round-trips.
    assert ServingEndpointDetailed.from_dict(rendered).as_dict() == \
        {k: v for k, v in sdk_fields(rendered).items() if v != []}
    assert rendered["tags"] == []  # kept on the wire: mlflow users read endpoint["tags"] from the plain dict
