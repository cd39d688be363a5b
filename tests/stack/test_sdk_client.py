"""The whole serving-endpoint API driven by databricks-sdk's WorkspaceClient, unmodified, against `podium up`."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import grpc
import jsonschema
import pytest
import requests
from databricks.sdk import errors
from databricks.sdk.service.serving import (
    AiGatewayGuardrailParameters, AiGatewayGuardrailPiiBehavior, AiGatewayGuardrailPiiBehaviorBehavior,
    AiGatewayGuardrails, AiGatewayInferenceTableConfig, AiGatewayRateLimit, AiGatewayRateLimitKey,
    AiGatewayRateLimitRenewalPeriod, AiGatewayUsageTrackingConfig, EmailNotifications, EndpointCoreConfigInput,
    EndpointTag, FallbackConfig, RateLimit, RateLimitKey, RateLimitRenewalPeriod, ServedEntityInput,
    ServingEndpoint, ServingEndpointDetailed, TelemetryConfig, TelemetryFeature,
)
from openapi_spec_validator import validate as validate_openapi
from prometheus_client.parser import text_string_to_metric_families

from podium_api.v1 import query_pb2, query_pb2_grpc
from tests.support.shapes import sdk_fields
from tests.support.stack import wait_for, worker_pids

pytestmark = pytest.mark.stack

NAME = "sdk-ep"


def _entity(model, version: str) -> ServedEntityInput:
    return ServedEntityInput(entity_name=model.name, entity_version=version, workload_size="Small",
                             scale_to_zero_enabled=False)


@pytest.fixture(scope="module")
def sdk_endpoint(stack, workspace, versioned_model):
    first, _ = versioned_model
    endpoint = workspace.serving_endpoints.create_and_wait(
        NAME, config=EndpointCoreConfigInput(name=NAME, served_entities=[_entity(first, "1")]),
        tags=[EndpointTag(key="stage", value="dev"), EndpointTag(key="owner")], description="made by the SDK",
        timeout=timedelta(minutes=3))
    yield endpoint
    if stack.api("GET", f"/api/2.0/serving-endpoints/{NAME}").status_code == 200:
        workspace.serving_endpoints.delete(NAME)


def _records(model) -> list[dict]:
    return model.frame.to_dict(orient="records")


def test_create_and_wait_gives_the_detailed_endpoint(sdk_endpoint, versioned_model):
    assert sdk_endpoint.name == NAME and sdk_endpoint.id and sdk_endpoint.creator
    assert sdk_endpoint.creation_timestamp > 1_600_000_000_000  # epoch milliseconds
    assert sdk_endpoint.last_updated_timestamp >= sdk_endpoint.creation_timestamp
    assert sdk_endpoint.state.ready.value == "READY" and sdk_endpoint.state.config_update.value == "NOT_UPDATING"
    assert sdk_endpoint.config.config_version == 1 and sdk_endpoint.pending_config is None
    [entity] = sdk_endpoint.config.served_entities
    assert (entity.name, entity.entity_version, entity.workload_size) == ("versioned-1", "1", "Small")
    assert entity.state.deployment.value == "DEPLOYMENT_READY"
    assert [(t.key, t.value) for t in sdk_endpoint.tags] == [("stage", "dev"), ("owner", None)]
    assert sdk_endpoint.permission_level.value == "CAN_MANAGE" and sdk_endpoint.route_optimized is False
    assert sdk_endpoint.description == "made by the SDK"


def test_get_and_list_round_trip_through_the_sdk_dataclasses(stack, workspace, sdk_endpoint):
    raw = stack.api("GET", f"/api/2.0/serving-endpoints/{NAME}").json()
    # No field the SDK does not know but Podium's replica counts, none lost.
    assert ServingEndpointDetailed.from_dict(raw).as_dict() == sdk_fields(raw)
    assert workspace.serving_endpoints.get(NAME).id == sdk_endpoint.id
    listed = stack.api("GET", "/api/2.0/serving-endpoints").json()["endpoints"]
    [item] = [e for e in listed if e["name"] == NAME]
    assert ServingEndpoint.from_dict(item).as_dict() == item
    assert item["config"] == {"served_entities": [{"name": "versioned-1", "entity_name": "main.default.versioned",
                                                   "entity_version": "1"}],
                              "served_models": [{"name": "versioned-1", "model_name": "main.default.versioned",
                                                 "model_version": "1"}]}
    assert NAME in [e.name for e in workspace.serving_endpoints.list()]


def test_query_names_the_served_entity(workspace, sdk_endpoint, versioned_model):
    first, _ = versioned_model
    reply = workspace.serving_endpoints.query(NAME, dataframe_records=_records(first))
    assert reply.predictions == first.model.predict(first.frame).tolist()
    assert reply.served_model_name == "versioned-1"


def test_patch_tags_answers_the_full_tag_list(stack, workspace, sdk_endpoint):
    answer = workspace.serving_endpoints.patch(NAME, add_tags=[EndpointTag(key="team", value="ml"),
                                                               EndpointTag(key="owner", value="ana")],
                                               delete_tags=["stage"])
    assert [(t.key, t.value) for t in answer.tags] == [("owner", "ana"), ("team", "ml")]
    raw = stack.api("PATCH", f"/api/2.0/serving-endpoints/{NAME}/tags/", json={"delete_tags": ["team"]})  # §7.2
    assert raw.json() == {"tags": [{"key": "owner", "value": "ana"}]}  # an object, never a bare list (§7.14)
    assert [t.key for t in workspace.serving_endpoints.get(NAME).tags] == ["owner"]


def test_put_ai_gateway_stores_and_answers_all_five_parts(stack, workspace, sdk_endpoint):
    guardrails = AiGatewayGuardrails(
        input=AiGatewayGuardrailParameters(invalid_keywords=["secret"], safety=False,
                                           pii=AiGatewayGuardrailPiiBehavior(AiGatewayGuardrailPiiBehaviorBehavior.BLOCK)),
        output=AiGatewayGuardrailParameters(pii=AiGatewayGuardrailPiiBehavior(AiGatewayGuardrailPiiBehaviorBehavior.MASK)))
    limits = [AiGatewayRateLimit(renewal_period=AiGatewayRateLimitRenewalPeriod.MINUTE, calls=100,
                                 key=AiGatewayRateLimitKey.USER),
              AiGatewayRateLimit(renewal_period=AiGatewayRateLimitRenewalPeriod.MINUTE, tokens=5000,
                                 key=AiGatewayRateLimitKey.USER_GROUP, principal="analysts")]
    answer = workspace.serving_endpoints.put_ai_gateway(
        NAME, guardrails=guardrails, rate_limits=limits, fallback_config=FallbackConfig(enabled=False),
        usage_tracking_config=AiGatewayUsageTrackingConfig(enabled=True),
        inference_table_config=AiGatewayInferenceTableConfig(catalog_name="main", schema_name="logs",
                                                             table_name_prefix="iris", enabled=True))
    assert answer.guardrails == guardrails and answer.rate_limits == limits
    assert answer.fallback_config.enabled is False and answer.usage_tracking_config.enabled is True
    assert answer.inference_table_config.table_name_prefix == "iris"
    stored = workspace.serving_endpoints.get(NAME).ai_gateway
    assert stored.guardrails == guardrails and stored.rate_limits == limits
    # (Enforced: tests/stack/test_ai_gateway.py. The next test replaces these limits, then lifts them.)
    assert stack.api("GET", f"/api/2.0/serving-endpoints/{NAME}").json()["ai_gateway"]["rate_limits"][0]["calls"] == 100


def test_legacy_rate_limits_are_the_ai_gateway_rate_limits(stack, workspace, sdk_endpoint):
    answer = workspace.serving_endpoints.put(NAME, rate_limits=[
        RateLimit(calls=10, renewal_period=RateLimitRenewalPeriod.MINUTE, key=RateLimitKey.USER)])
    assert answer.rate_limits == [RateLimit(calls=10, renewal_period=RateLimitRenewalPeriod.MINUTE,
                                            key=RateLimitKey.USER)]
    stored = stack.api("GET", f"/api/2.0/serving-endpoints/{NAME}").json()["ai_gateway"]
    assert stored["rate_limits"] == [{"calls": 10, "key": "user", "renewal_period": "minute"}]
    assert stored["usage_tracking_config"] == {"enabled": True}  # the rest of the AI gateway is untouched
    bad = stack.api("PUT", f"/api/2.0/serving-endpoints/{NAME}/rate-limits",
                    json={"rate_limits": [{"calls": 10, "renewal_period": "hour"}]})
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "renewal_period" in bad.json()["message"]
    with pytest.raises(errors.InvalidParameterValue):
        workspace.serving_endpoints.put(NAME, rate_limits=[RateLimit(calls=-1, renewal_period=RateLimitRenewalPeriod.MINUTE)])
    # Lifted again: the load tests below send far more than 10 calls a minute.
    lifted = stack.api("PUT", f"/api/2.0/serving-endpoints/{NAME}/rate-limits", json={"rate_limits": []})
    assert lifted.status_code == 200 and "rate_limits" not in stack.api(
        "GET", f"/api/2.0/serving-endpoints/{NAME}").json()["ai_gateway"]


def test_notifications_and_telemetry_config(workspace, sdk_endpoint):
    answer = workspace.serving_endpoints.update_notifications(NAME, email_notifications=EmailNotifications(
        on_update_failure=["ops@example.com"], on_update_success=["ana@example.com"]))
    assert answer.name == NAME and answer.email_notifications.on_update_failure == ["ops@example.com"]
    telemetry = TelemetryConfig(enabled_telemetry_features=[TelemetryFeature.TELEMETRY_FEATURE_LOGS],
                                telemetry_profile_id="profile-1")
    endpoint = workspace.serving_endpoints.patch_telemetry_config(NAME, telemetry_config=telemetry)
    assert endpoint.name == NAME and endpoint.telemetry_config == telemetry
    got = workspace.serving_endpoints.get(NAME)
    assert got.email_notifications.on_update_success == ["ana@example.com"] and got.telemetry_config == telemetry
    with pytest.raises(errors.InvalidParameterValue, match="email"):
        workspace.serving_endpoints.update_notifications(
            NAME, email_notifications=EmailNotifications(on_update_failure=["not an address"]))


def test_build_logs_and_logs_are_the_workers_output(stack, workspace, sdk_endpoint, versioned_model):
    build = workspace.serving_endpoints.build_logs(NAME, "versioned-1").logs
    assert "the platform's default environment" in build
    assert "downloading models:/main.default.versioned/1" in build and "loaded models:/main.default.versioned/1" in build
    assert "prediction failed" not in build
    bad = stack.api("POST", f"/serving-endpoints/{NAME}/invocations", json={"rows": [[1, 2]]})
    assert bad.status_code == 400
    logs = workspace.serving_endpoints.logs(NAME, "versioned-1").logs
    assert "prediction failed: HTTP 400" in logs and "downloading" not in logs
    assert all(json.loads(line)["level"] for line in logs.splitlines() if line.startswith("{"))
    with pytest.raises(errors.ResourceDoesNotExist):
        workspace.serving_endpoints.logs(NAME, "no-such-model")


def test_export_metrics_counts_requests_per_served_entity(stack, workspace, sdk_endpoint, versioned_model):
    first, _ = versioned_model

    def samples() -> dict:
        text = workspace.serving_endpoints.export_metrics(NAME).contents.read().decode()
        return {(s.name, s.labels.get("served_entity_name"), s.labels.get("le")): s.value
                for family in text_string_to_metric_families(text) for s in family.samples
                if s.labels.get("endpoint_name") == NAME}

    before = samples()
    for _ in range(3):
        assert stack.api("POST", f"/serving-endpoints/{NAME}/invocations",
                         json={"dataframe_records": _records(first)}).status_code == 200
    assert stack.api("POST", f"/serving-endpoints/{NAME}/invocations", data=b"{").status_code == 400
    after = samples()
    key = ("request_count_total", "versioned-1", None)
    assert after[key] - before.get(key, 0) == 4
    assert after[("request_4xx_count_total", "versioned-1", None)] - before.get(("request_4xx_count_total", "versioned-1", None), 0) == 1
    assert after[("request_5xx_count_total", "versioned-1", None)] == before.get(("request_5xx_count_total", "versioned-1", None), 0)
    assert after[("request_latency_ms_count", "versioned-1", None)] == after[key]
    assert after[("request_latency_ms_bucket", "versioned-1", "+Inf")] == after[key]
    # Unknown endpoints make no series, and the router's gRPC API exports the same text.
    assert stack.api("POST", "/serving-endpoints/typo/invocations", json={}).status_code == 404
    with grpc.insecure_channel(stack.info["grpc_target"]) as channel:
        reply = query_pb2_grpc.QueryStub(channel).ExportMetrics(query_pb2.EndpointContentsRequest(endpoint=NAME),
                                                                timeout=10, metadata=stack.grpc_metadata())
    assert b'request_count_total{endpoint_name="sdk-ep",served_entity_name="versioned-1"}' in reply.contents
    assert b"typo" not in reply.contents
    with pytest.raises(errors.ResourceDoesNotExist):
        workspace.serving_endpoints.export_metrics("typo")


def test_open_api_document_describes_the_signature(stack, workspace, sdk_endpoint, versioned_model):
    first, _ = versioned_model
    document = json.loads(workspace.serving_endpoints.get_open_api(NAME).contents.read())
    validate_openapi(document)  # a valid OpenAPI 3.1 document
    assert document["servers"] == [{"url": stack.url}]
    operation = document["paths"][f"/serving-endpoints/{NAME}/invocations"]["post"]
    request = {"components": document["components"],
               **operation["requestBody"]["content"]["application/json"]["schema"]}
    jsonschema.validate({"dataframe_records": _records(first)}, request)
    jsonschema.validate({"dataframe_split": {"columns": list(first.frame.columns), "data": first.frame.values.tolist()}},
                        request)
    with pytest.raises(jsonschema.ValidationError):  # a string where the signature says double
        jsonschema.validate({"dataframe_records": [{**_records(first)[0], "sepal_length": "x"}]}, request)
    # What the schema accepts, the endpoint answers.
    assert stack.api("POST", f"/serving-endpoints/{NAME}/invocations",
                     json={"inputs": {c: first.frame[c].tolist() for c in first.frame.columns}}).status_code == 200
    assert f"/serving-endpoints/{NAME}/served-models/versioned-1/invocations" in document["paths"]
    with grpc.insecure_channel(stack.info["grpc_target"]) as channel:
        reply = query_pb2_grpc.QueryStub(channel).GetOpenApi(query_pb2.EndpointContentsRequest(endpoint=NAME),
                                                             timeout=30, metadata=stack.grpc_metadata())
    assert json.loads(reply.contents)["paths"] == document["paths"]


def test_served_model_path_queries_one_entity(stack, sdk_endpoint, versioned_model):
    first, _ = versioned_model
    reply = stack.api("POST", f"/serving-endpoints/{NAME}/served-models/versioned-1/invocations",
                      json={"dataframe_records": _records(first)})
    assert reply.status_code == 200 and reply.headers["served-model-name"] == "versioned-1"
    missing = stack.api("POST", f"/serving-endpoints/{NAME}/served-models/nope/invocations", json={})
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_errors_come_out_as_the_sdk_exception_classes(workspace, sdk_endpoint, versioned_model):
    first, _ = versioned_model
    with pytest.raises(errors.ResourceDoesNotExist):
        workspace.serving_endpoints.get("no-such-endpoint")
    with pytest.raises(errors.ResourceDoesNotExist):
        workspace.serving_endpoints.patch("no-such-endpoint", add_tags=[EndpointTag(key="a")])
    with pytest.raises(errors.ResourceAlreadyExists):
        workspace.serving_endpoints.create(NAME, config=EndpointCoreConfigInput(
            name=NAME, served_entities=[_entity(first, "1")]))
    with pytest.raises(errors.InvalidParameterValue, match="workload_size"):
        workspace.serving_endpoints.create("sdk-bad", config=EndpointCoreConfigInput(
            name="sdk-bad", served_entities=[ServedEntityInput(entity_name=first.name, entity_version="1",
                                                               workload_size="Huge")]))
    with pytest.raises(errors.InvalidParameterValue, match="renewal_period"):
        workspace.serving_endpoints.put_ai_gateway(NAME, rate_limits=[AiGatewayRateLimit.from_dict(
            {"renewal_period": "hour", "calls": 1})])


def test_failed_create_raises_operation_failed(stack, workspace):
    with pytest.raises(errors.OperationFailed, match="UPDATE_FAILED"):
        workspace.serving_endpoints.create_and_wait("sdk-ghost", config=EndpointCoreConfigInput(
            name="sdk-ghost", served_entities=[ServedEntityInput(entity_name="main.default.ghost-sdk",
                                                                 entity_version="1")]),
            timeout=timedelta(minutes=2))
    # The failed replica exited, but what it printed while trying is still there.
    build = workspace.serving_endpoints.build_logs("sdk-ghost", "ghost-sdk-1").logs
    assert "downloading models:/main.default.ghost-sdk/1" in build
    workspace.serving_endpoints.delete("sdk-ghost")


def test_update_config_serves_every_query_while_it_moves_to_a_new_version(stack, workspace, sdk_endpoint,
                                                                         versioned_model):
    """Zero downtime: queries run in threads through a whole update, and not one fails."""
    first, second = versioned_model
    body = json.dumps({"dataframe_records": _records(first)})
    stop = threading.Event()
    answers: list[tuple[int, str, str]] = []

    def query_until_stopped():
        with requests.Session() as session:  # plain requests: no client-side retry may hide a failure
            while not stop.is_set():
                reply = session.post(f"{stack.url}/serving-endpoints/{NAME}/invocations", data=body,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {stack.admin_token}"}, timeout=60)
                answers.append((reply.status_code, reply.headers.get("served-model-name", ""),
                                reply.text if reply.status_code != 200 else ""))

    threads = [threading.Thread(target=query_until_stopped) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: any(a[1] == "versioned-1" for a in answers), timeout_s=30, interval_s=0.05,
                 what="queries answered by version 1 before the update starts")
        updated = workspace.serving_endpoints.update_config_and_wait(
            NAME, served_entities=[_entity(second, "2")], timeout=timedelta(minutes=3))
        switched_at = len(answers)
        # Keep querying while the scaler retires version 1's replica (it drains, then stops), and a while after.
        wait_for(lambda: not worker_pids(stack.data_dir, f"models:/{first.name}/1"), timeout_s=60,
                 what="version 1's replica to stop")
        retired_at = len(answers)
        wait_for(lambda: len(answers) >= retired_at + 20, timeout_s=30, interval_s=0.05,
                 what="queries answered after version 1's replica stopped")
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    failures = [a for a in answers if a[0] != 200]
    assert failures == [], f"{len(failures)} of {len(answers)} queries failed, first: {failures[:3]}"
    assert updated.config.config_version == 2 and updated.pending_config is None
    assert [e.name for e in updated.config.served_entities] == ["versioned-2"]
    served = [a[1] for a in answers]
    assert "versioned-1" in served[:switched_at] and set(served[switched_at + 8:]) == {"versioned-2"}
    assert len(answers) > 50


def test_update_in_progress_is_a_conflict_and_delete_answers_empty_json(stack, workspace, sdk_endpoint,
                                                                        versioned_model):
    first, _ = versioned_model
    workspace.serving_endpoints.update_config(NAME, served_entities=[_entity(first, "1")])
    with pytest.raises(errors.ResourceConflict):
        workspace.serving_endpoints.update_config(NAME, served_entities=[_entity(first, "1")])
    reply = stack.api("DELETE", f"/api/2.0/serving-endpoints/{NAME}")
    assert reply.status_code == 200 and reply.json() == {}
    with pytest.raises(errors.ResourceDoesNotExist):
        workspace.serving_endpoints.get(NAME)
