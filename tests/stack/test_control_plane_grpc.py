"""The control plane's Management service: every REST management call as one gRPC `Call` named by its operation,
with the same documents and errors as REST, over the same cores."""

from __future__ import annotations

import json

import grpc
import pytest
from databricks.sdk.service.serving import ServingEndpointDetailed

from podium_api.v1 import management_pb2 as pb
from podium_api.v1 import management_pb2_grpc
from tests.support.shapes import sdk_fields
from tests.support.stack import WithCredential, wait_for

pytestmark = pytest.mark.stack

NAME = "grpc-ep"


@pytest.fixture(scope="module")
def call(stack):
    """Calls one management operation as user `grpc-user`; returns its JSON answer."""
    with grpc.insecure_channel(stack.info["control_plane_target"]) as channel:
        stub = WithCredential(management_pb2_grpc.ManagementStub(channel), stack.user_token("grpc-user"))

        def management_call(operation: str, body: dict | bytes | None = None, **params: str) -> dict:
            raw = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
            reply = stub.Call(pb.ManagementCall(operation=operation, params=params, body=raw), timeout=10)
            return json.loads(reply.json)
        yield management_call


@pytest.fixture(scope="module")
def grpc_endpoint(stack, call, iris_model):
    body = {"name": NAME, "config": {"served_entities": [
        {"entity_name": iris_model.name, "entity_version": iris_model.version}]},
        "tags": [{"key": "via", "value": "grpc"}]}
    with pytest.raises(grpc.RpcError) as refused:   # serving a catalog model needs EXECUTE on it
        call("CREATE_ENDPOINT", body)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED and iris_model.name in refused.value.details()
    grant = {"changes": [{"principal": "grpc-user", "add": ["EXECUTE"]}]}
    assert stack.api("PATCH", f"/api/2.1/unity-catalog/permissions/function/{iris_model.name}", json=grant).status_code == 200
    created = call("CREATE_ENDPOINT", body)
    assert created["name"] == NAME and created["creator"] == "grpc-user"
    yield stack.wait_endpoint(NAME)
    try:
        call("DELETE_ENDPOINT", name=NAME)
    except grpc.RpcError:
        pass


def _error(call) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code(), dict(raised.value.trailing_metadata())["error-code"], raised.value.details()


def test_get_and_list_match_rest(stack, call, grpc_endpoint):
    got = call("GET_ENDPOINT", name=NAME)
    rest = stack.api("GET", f"/api/2.0/serving-endpoints/{NAME}").json()
    assert got == rest and ServingEndpointDetailed.from_dict(got).as_dict() == sdk_fields(got)
    assert NAME in [e["name"] for e in call("LIST_ENDPOINTS")["endpoints"]]


def test_option_calls(stack, call, grpc_endpoint):
    assert call("PATCH_TAGS", {"add_tags": [{"key": "team", "value": "ml"}]}, name=NAME) == {
        "tags": [{"key": "via", "value": "grpc"}, {"key": "team", "value": "ml"}]}
    assert call("PUT_RATE_LIMITS", {"rate_limits": [{"calls": 3, "renewal_period": "minute"}]}, name=NAME) == {
        "rate_limits": [{"calls": 3, "key": "endpoint", "renewal_period": "minute"}]}
    assert call("PUT_AI_GATEWAY", {"usage_tracking_config": {"enabled": True}}, name=NAME) == {
        "usage_tracking_config": {"enabled": True}}
    assert call("UPDATE_NOTIFICATIONS", {"email_notifications": {"on_update_failure": ["a@b.co"]}}, name=NAME) == {
        "name": NAME, "email_notifications": {"on_update_failure": ["a@b.co"]}}
    endpoint = call("PATCH_TELEMETRY_CONFIG", {"telemetry_config": {"telemetry_profile_id": "p1"}}, name=NAME)
    assert endpoint["telemetry_config"] == {"telemetry_profile_id": "p1"}
    rest = stack.api("GET", f"/api/2.0/serving-endpoints/{NAME}").json()
    assert rest["ai_gateway"] == {"usage_tracking_config": {"enabled": True}}  # PUT replaced the rate limits too
    assert rest["email_notifications"] == {"on_update_failure": ["a@b.co"]}


def test_served_model_logs(call, grpc_endpoint, iris_model):
    entity = grpc_endpoint["config"]["served_entities"][0]["name"]
    build = call("GET_SERVED_MODEL_BUILD_LOGS", name=NAME, served_model=entity)["logs"]
    assert f"loaded models:/{iris_model.name}/{iris_model.version}" in build
    assert isinstance(call("GET_SERVED_MODEL_LOGS", name=NAME, served_model=entity)["logs"], str)


def test_errors_carry_status_and_error_code(call, grpc_endpoint, iris_model):
    assert _error(lambda: call("GET_ENDPOINT", name="nope"))[:2] == (
        grpc.StatusCode.NOT_FOUND, "RESOURCE_DOES_NOT_EXIST")
    duplicate = {"name": NAME, "config": {"served_entities": [{"entity_name": iris_model.name, "entity_version": "1"}]}}
    assert _error(lambda: call("CREATE_ENDPOINT", duplicate))[:2] == (
        grpc.StatusCode.ALREADY_EXISTS, "RESOURCE_ALREADY_EXISTS")
    code, error_code, details = _error(lambda: call("PUT_AI_GATEWAY", {"rate_limits": [
        {"calls": 1, "renewal_period": "minute", "key": "endpoint", "principal": "ana"}]}, name=NAME))
    assert (code, error_code) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PARAMETER_VALUE")
    assert "principal" in details
    code, error_code, _ = _error(lambda: call("PATCH_TAGS", b"{", name=NAME))
    assert (code, error_code) == (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")
    assert _error(lambda: call("GET_SERVED_MODEL_LOGS", name=NAME, served_model="nope"))[:2] == (
        grpc.StatusCode.NOT_FOUND, "RESOURCE_DOES_NOT_EXIST")
    assert _error(lambda: call("REBOOT_ENDPOINT", name=NAME)) == (
        grpc.StatusCode.UNIMPLEMENTED, "NOT_IMPLEMENTED", "Unknown management operation 'REBOOT_ENDPOINT'")


def test_update_config_and_delete(stack, call, grpc_endpoint, iris_model):
    config = {"served_entities": [{"name": "v-again", "entity_name": iris_model.name,
                                   "entity_version": iris_model.version}]}
    assert call("UPDATE_CONFIG", config, name=NAME)["pending_config"]["config_version"] == 2
    endpoint = stack.wait_endpoint(NAME)
    assert endpoint["config"]["served_entities"][0]["name"] == "v-again"
    assert call("DELETE_ENDPOINT", name=NAME) == {}
    wait_for(lambda: stack.api("GET", f"/api/2.0/serving-endpoints/{NAME}").status_code == 404, what="deletion")
