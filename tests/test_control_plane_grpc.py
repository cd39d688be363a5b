"""The control plane's gRPC API: the same calls, documents and errors as REST, over the one core."""

from __future__ import annotations

import json

import grpc
import pytest
from databricks.sdk.service.serving import ServingEndpointDetailed

from podium_api.v1 import control_plane_pb2 as pb
from podium_api.v1 import control_plane_pb2_grpc
from tests.support.shapes import sdk_fields
from tests.support.stack import WithCredential, wait_for

pytestmark = pytest.mark.stack

NAME = "grpc-ep"


@pytest.fixture(scope="module")
def stub(stack):
    """The control plane's stub, calling as user `grpc-user`."""
    with grpc.insecure_channel(stack.info["control_plane_target"]) as channel:
        yield WithCredential(control_plane_pb2_grpc.ControlPlaneStub(channel), stack.user_token("grpc-user"))


@pytest.fixture(scope="module")
def grpc_endpoint(stack, stub, iris_model):
    body = {"name": NAME, "config": {"served_entities": [
        {"entity_name": iris_model.name, "entity_version": iris_model.version}]},
        "tags": [{"key": "via", "value": "grpc"}]}
    reply = stub.CreateEndpoint(pb.CreateEndpointRequest(endpoint_json=json.dumps(body)), timeout=10)
    created = json.loads(reply.endpoint_json)
    assert created["name"] == NAME and created["creator"] == "grpc-user"
    yield stack.wait_endpoint(NAME)
    try:
        stub.DeleteEndpoint(pb.DeleteEndpointRequest(name=NAME), timeout=10)
    except grpc.RpcError:
        pass


def _update(stub, method: str, body: dict) -> dict:
    reply = getattr(stub, method)(pb.EndpointUpdateRequest(name=NAME, body_json=json.dumps(body)), timeout=10)
    return json.loads(reply.json if hasattr(reply, "json") and reply.json else reply.endpoint_json)


def _error(call) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code(), dict(raised.value.trailing_metadata())["error-code"], raised.value.details()


def test_get_and_list_match_rest(stack, stub, grpc_endpoint):
    got = json.loads(stub.GetEndpoint(pb.GetEndpointRequest(name=NAME), timeout=10).endpoint_json)
    rest = stack.api("GET", f"/api/2.0/serving-endpoints/{NAME}").json()
    assert got == rest and ServingEndpointDetailed.from_dict(got).as_dict() == sdk_fields(got)
    listed = json.loads(stub.ListEndpoints(pb.ListEndpointsRequest(), timeout=10).endpoints_json)
    assert NAME in [e["name"] for e in listed["endpoints"]]


def test_option_calls(stack, stub, grpc_endpoint):
    assert _update(stub, "PatchTags", {"add_tags": [{"key": "team", "value": "ml"}]}) == {
        "tags": [{"key": "via", "value": "grpc"}, {"key": "team", "value": "ml"}]}
    assert _update(stub, "PutRateLimits", {"rate_limits": [{"calls": 3, "renewal_period": "minute"}]}) == {
        "rate_limits": [{"calls": 3, "key": "endpoint", "renewal_period": "minute"}]}
    assert _update(stub, "PutAiGateway", {"usage_tracking_config": {"enabled": True}}) == {
        "usage_tracking_config": {"enabled": True}}
    assert _update(stub, "UpdateNotifications", {"email_notifications": {"on_update_failure": ["a@b.co"]}}) == {
        "name": NAME, "email_notifications": {"on_update_failure": ["a@b.co"]}}
    endpoint = _update(stub, "PatchTelemetryConfig", {"telemetry_config": {"telemetry_profile_id": "p1"}})
    assert endpoint["telemetry_config"] == {"telemetry_profile_id": "p1"}
    rest = stack.api("GET", f"/api/2.0/serving-endpoints/{NAME}").json()
    assert rest["ai_gateway"] == {"usage_tracking_config": {"enabled": True}}  # PUT replaced the rate limits too
    assert rest["email_notifications"] == {"on_update_failure": ["a@b.co"]}


def test_served_model_logs(stub, grpc_endpoint, iris_model):
    entity = grpc_endpoint["config"]["served_entities"][0]["name"]
    request = pb.ServedModelLogsRequest(name=NAME, served_model_name=entity)
    build = stub.GetServedModelBuildLogs(request, timeout=10).logs
    assert f"loaded models:/{iris_model.name}/{iris_model.version}" in build
    assert isinstance(stub.GetServedModelLogs(request, timeout=10).logs, str)


def test_errors_carry_status_and_error_code(stub, grpc_endpoint, iris_model):
    assert _error(lambda: stub.GetEndpoint(pb.GetEndpointRequest(name="nope"), timeout=10))[:2] == (
        grpc.StatusCode.NOT_FOUND, "RESOURCE_DOES_NOT_EXIST")
    duplicate = json.dumps({"name": NAME, "config": {"served_entities": [
        {"entity_name": iris_model.name, "entity_version": "1"}]}})
    assert _error(lambda: stub.CreateEndpoint(pb.CreateEndpointRequest(endpoint_json=duplicate), timeout=10))[:2] == (
        grpc.StatusCode.ALREADY_EXISTS, "RESOURCE_ALREADY_EXISTS")
    code, error_code, details = _error(lambda: _update(stub, "PutAiGateway", {"rate_limits": [
        {"calls": 1, "renewal_period": "minute", "key": "endpoint", "principal": "ana"}]}))
    assert (code, error_code) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PARAMETER_VALUE")
    assert "principal" in details
    code, error_code, _ = _error(lambda: stub.PatchTags(pb.EndpointUpdateRequest(name=NAME, body_json="{"), timeout=10))
    assert (code, error_code) == (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")
    assert _error(lambda: stub.GetServedModelLogs(
        pb.ServedModelLogsRequest(name=NAME, served_model_name="nope"), timeout=10))[:2] == (
        grpc.StatusCode.NOT_FOUND, "RESOURCE_DOES_NOT_EXIST")


def test_update_config_and_delete(stack, stub, grpc_endpoint, iris_model):
    config = {"served_entities": [{"name": "v-again", "entity_name": iris_model.name,
                                   "entity_version": iris_model.version}]}
    reply = stub.UpdateConfig(pb.UpdateConfigRequest(name=NAME, config_json=json.dumps(config)), timeout=10)
    assert json.loads(reply.endpoint_json)["pending_config"]["config_version"] == 2
    endpoint = stack.wait_endpoint(NAME)
    assert endpoint["config"]["served_entities"][0]["name"] == "v-again"
    stub.DeleteEndpoint(pb.DeleteEndpointRequest(name=NAME), timeout=10)
    wait_for(lambda: stack.api("GET", f"/api/2.0/serving-endpoints/{NAME}").status_code == 404, what="deletion")
