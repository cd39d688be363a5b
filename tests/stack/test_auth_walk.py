"""Every REST route and every gRPC method of a real stack, walked with no credential, bad ones, an expired
and a revoked one, and with each permission level: the answer is always the one the rules give.

The tables below must name every route the router registers and every method of every gRPC service;
a test fails when a route or method is added without being classified here.
"""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import grpc
import jwt
import pytest
from google.protobuf import message_factory

from tritonclient.grpc import service_pb2 as grpc_predict_v2_pb2   # the same `inference` protocol as Podium's
# (podium_api.inference and tritonclient.grpc register the same protobuf names: only one may be imported)

from podium_api.v1 import control_plane_pb2, identity_pb2, management_pb2, query_pb2, scaler_pb2, worker_pb2
from tests.support.stack import wait_for

pytestmark = pytest.mark.stack

EP = "walk-ep"
INVALID = {"error_code": "UNAUTHENTICATED", "message": "Invalid access token."}
SCIM = "/api/2.0/preview/scim/v2"
NOT_A_MODEL = {"served_entities": [{"entity_name": "main.default.absent", "entity_version": "1"}]}

# (method, route template, who may call it). Who: public | person (any user or service principal) |
# admin | view / query / manage (that permission on the endpoint named in the path).
REST_ROUTES = [
    ("GET", "/.well-known/databricks-config", "public"), ("GET", "/healthz", "public"),
    ("GET", "/oidc/.well-known/oauth-authorization-server", "public"), ("POST", "/oidc/v1/token", "public"),
    ("POST", "/api/2.0/serving-endpoints", "person"), ("GET", "/api/2.0/serving-endpoints", "person"),
    ("GET", "/api/2.0/serving-endpoints/{name}", "view"), ("DELETE", "/api/2.0/serving-endpoints/{name}", "manage"),
    ("PUT", "/api/2.0/serving-endpoints/{name}/config", "manage"),
    ("PATCH", "/api/2.0/serving-endpoints/{name}/tags", "manage"),
    ("PUT", "/api/2.0/serving-endpoints/{name}/ai-gateway", "manage"),
    ("PUT", "/api/2.0/serving-endpoints/{name}/rate-limits", "manage"),
    ("PATCH", "/api/2.0/serving-endpoints/{name}/notifications", "manage"),
    ("PATCH", "/api/2.0/serving-endpoints/{name}/telemetry-config", "manage"),
    ("GET", "/api/2.0/serving-endpoints/{name}/served-models/{served_model}/logs", "manage"),
    ("GET", "/api/2.0/serving-endpoints/{name}/served-models/{served_model}/build-logs", "manage"),
    ("GET", "/api/2.0/serving-endpoints/{name}/rollout", "view"),
    *[("POST", f"/api/2.0/serving-endpoints/{{name}}/rollout/{action}", "manage")
      for action in ("pause", "resume", "promote", "abort")],
    ("GET", "/api/2.0/serving-endpoints/{name}/metrics", "view"),
    ("GET", "/api/2.0/serving-endpoints/{name}/openapi", "view"),
    ("GET", "/api/2.0/serving-endpoints/{name}/inference-table", "manage"),
    ("GET", "/api/2.0/serving-endpoints/{name}/usage", "manage"),
    # The OpenAI-style paths name the endpoint in the body's `model`.
    *[("POST", f"{base}/{path}{slash}", "query")
      for base in ("/serving-endpoints", "/ai-gateway/mlflow/v1", "/ai-gateway/openai/v1")
      for path in ("chat/completions", "completions", "embeddings", "responses") for slash in ("", "/")],
    # Podium has no Databricks Apps: any authenticated caller is told so (404).
    *[(m, f"/api/2.0/apps{rest}", "person") for m in ("GET", "POST", "PATCH", "DELETE") for rest in ("", "/{rest}")],
    ("POST", "/serving-endpoints/{name}/invocations", "query"),
    ("POST", "/serving-endpoints/{name}/served-models/{served_entity}/invocations", "query"),
    ("GET", f"{SCIM}/Me", "person"),
    *[(m, f"{SCIM}/{r}{suffix}", who) for r in ("Users", "Groups", "ServicePrincipals") for m, suffix, who in (
        ("GET", "", "person"), ("POST", "", "admin"), ("GET", "/{id}", "person"), ("PUT", "/{id}", "admin"),
        ("PATCH", "/{id}", "admin"), ("DELETE", "/{id}", "admin"))],
    ("POST", "/api/2.0/token/create", "person"), ("GET", "/api/2.0/token/list", "person"),
    ("POST", "/api/2.0/token/delete", "person"),
    ("GET", "/api/2.0/token-management/tokens", "admin"), ("GET", "/api/2.0/token-management/tokens/{id}", "admin"),
    ("DELETE", "/api/2.0/token-management/tokens/{id}", "admin"),
    ("POST", "/api/2.0/token-management/on-behalf-of/tokens", "admin"),
    ("POST", "/api/2.0/accounts/servicePrincipals/{id}/credentials/secrets", "admin"),
    ("GET", "/api/2.0/accounts/servicePrincipals/{id}/credentials/secrets", "admin"),
    ("DELETE", "/api/2.0/accounts/servicePrincipals/{id}/credentials/secrets/{sub_id}", "admin"),
    ("GET", "/api/2.0/permissions/serving-endpoints/{id}", "view"),
    ("PUT", "/api/2.0/permissions/serving-endpoints/{id}", "manage"),
    ("PATCH", "/api/2.0/permissions/serving-endpoints/{id}", "manage"),
    ("GET", "/api/2.0/permissions/serving-endpoints/{id}/permissionLevels", "view"),
    ("POST", "/api/2.0/secrets/scopes/create", "person"), ("GET", "/api/2.0/secrets/scopes/list", "person"),
    ("POST", "/api/2.0/secrets/scopes/delete", "person"), ("POST", "/api/2.0/secrets/put", "person"),
    ("POST", "/api/2.0/secrets/delete", "person"), ("GET", "/api/2.0/secrets/list", "person"),
    ("GET", "/api/2.0/secrets/get", "person"),
    # Secret ACLs need MANAGE on the scope, decided per scope like the other secrets routes.
    ("POST", "/api/2.0/secrets/acls/put", "person"), ("GET", "/api/2.0/secrets/acls/get", "person"),
    ("GET", "/api/2.0/secrets/acls/list", "person"), ("POST", "/api/2.0/secrets/acls/delete", "person"),
    # Unity Catalog grants: anyone reads (seeing only their own assignments without MANAGE); changing them
    # needs MANAGE on the securable or above it ("grant"), or an admin.
    ("GET", "/api/2.1/unity-catalog/permissions/{securable_type}/{full_name}", "person"),
    ("PATCH", "/api/2.1/unity-catalog/permissions/{securable_type}/{full_name}", "grant"),
    ("GET", "/api/2.1/unity-catalog/effective-permissions/{securable_type}/{full_name}", "person"),
    ("GET", "/api/2.0/podium/openapi.json", "public"),   # describes the API, holds no data
    ("GET", "/api/2.0/podium/registered-models", "person"),
    ("GET", "/api/2.0/podium/registered-models/{name}/versions/{version}/signature", "person"),
    # The web UI's static files: they hold no data (every call the UI makes carries the signed-in token).
    ("GET", "/ui", "public"), ("GET", "/ui/", "public"), ("GET", "/ui/static/{path}", "public"),
]
# Open Inference Protocol v2: a model is an endpoint, a version one of its served entities.
for _prefix in ("", "/serving-endpoints/{prefix}"):
    REST_ROUTES += [("GET", _prefix + "/v2", "person"), ("GET", _prefix + "/v2/health/live", "person"),
                    ("GET", _prefix + "/v2/health/ready", "person")]
    for _model in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        REST_ROUTES += [("GET", _prefix + _model, "view"), ("GET", _prefix + _model + "/ready", "view"),
                        ("GET", _prefix + _model + "/config", "view"), ("POST", _prefix + _model + "/infer", "query")]
OIP_INFER = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1.0]}]}

# gRPC: (service module, service, method, who). Who as above, plus `internal` (Podium's service
# credential only) and `router` (a worker: the router's worker credential only).
GRPC_METHODS = [
    (query_pb2, "Query", "Invoke", "query"),
    (query_pb2, "Query", "InvokeStream", "query"),
    (query_pb2, "Query", "ExportMetrics", "view"),
    (query_pb2, "Query", "GetOpenApi", "view"),
    (management_pb2, "Management", "Call", "person"),   # each operation as its REST route (REST_ROUTES)
    (scaler_pb2, "Scaler", "GetReplicaLogs", "internal"),
    (control_plane_pb2, "ControlPlane", "WatchRoutingTable", "internal"),
    (control_plane_pb2, "ControlPlane", "ListDeployments", "internal"),
    (control_plane_pb2, "ControlPlane", "ReportDeployments", "internal"),
    (identity_pb2, "Identity", "Authenticate", "internal"),
    (identity_pb2, "Identity", "IssueOAuthToken", "public"),
    (identity_pb2, "Identity", "ResolveSecrets", "internal"),
    (identity_pb2, "Identity", "ResolveEnvironment", "internal"),
    (identity_pb2, "Identity", "IssueReplicaCredential", "internal"),
    (identity_pb2, "Identity", "RevokeReplicaCredential", "internal"),
    (worker_pb2, "Worker", "PredictStream", "router"),
    (worker_pb2, "Worker", "PredictEvents", "router"),
    (worker_pb2, "Worker", "Metadata", "router"),
    *[(grpc_predict_v2_pb2, "GRPCInferenceService", m, "person") for m in ("ServerLive", "ServerReady", "ServerMetadata")],
    (grpc_predict_v2_pb2, "GRPCInferenceService", "ModelReady", "view"),
    (grpc_predict_v2_pb2, "GRPCInferenceService", "ModelMetadata", "view"),
    (grpc_predict_v2_pb2, "GRPCInferenceService", "ModelInfer", "query"),
]
GRPC_MODULES = (query_pb2, control_plane_pb2, identity_pb2, management_pb2, worker_pb2, scaler_pb2)
INFERENCE_PROTO = Path(__file__).resolve().parents[2] / "protos" / "podium_api" / "inference" / "grpc_predict_v2.proto"


def _api(stack, token, method, path, **kwargs):
    return stack.api_as(token, method, path, **kwargs)


def _obo(stack, body) -> dict:
    reply = stack.api("POST", "/api/2.0/token-management/on-behalf-of/tokens", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.fixture(scope="module")
def world(stack):
    """Users holding each level on `walk-ep` (one through a group), and bad credentials of every kind."""
    created = stack.api("POST", "/api/2.0/serving-endpoints", json={"name": EP, "config": NOT_A_MODEL})
    assert created.status_code == 200, created.text
    endpoint_id = created.json()["id"]
    tokens, ids = {}, {}
    for who in ("none", "view", "query", "manage", "member"):
        user = stack.api("POST", f"{SCIM}/Users", json={"userName": f"walk-{who}"})
        assert user.status_code == 201, user.text
        ids[who] = user.json()["id"]
        tokens[who] = _obo(stack, {"user_name": f"walk-{who}", "lifetime_seconds": 3600})["token_value"]
    group = stack.api("POST", f"{SCIM}/Groups", json={"displayName": "walk-group", "members": [{"value": ids["member"]}]})
    assert group.status_code == 201, group.text
    # Serving main.default.absent needs EXECUTE on it: walk-none and walk-manage create endpoints below.
    execute = {"changes": [{"principal": f"walk-{who}", "add": ["EXECUTE"]} for who in ("none", "manage")]}
    assert stack.api("PATCH", "/api/2.1/unity-catalog/permissions/schema/main.default", json=execute).status_code == 200
    acl = {"access_control_list": [
        {"user_name": "walk-view", "permission_level": "CAN_VIEW"},
        {"user_name": "walk-query", "permission_level": "CAN_QUERY"},
        {"user_name": "walk-manage", "permission_level": "CAN_MANAGE"},
        {"group_name": "walk-group", "permission_level": "CAN_QUERY"}]}
    assert stack.api("PUT", f"/api/2.0/permissions/serving-endpoints/{endpoint_id}", json=acl).status_code == 200
    tokens["admin"] = stack.admin_token

    expired = _obo(stack, {"user_name": "walk-manage", "lifetime_seconds": 1})["token_value"]
    expires_at = time.monotonic() + 1.2
    revoked = _obo(stack, {"user_name": "walk-manage", "lifetime_seconds": 3600})
    assert _api(stack, revoked["token_value"], "GET", f"{SCIM}/Me").status_code == 200   # now cached
    token_id = revoked["token_info"]["token_id"]
    assert stack.api("DELETE", f"/api/2.0/token-management/tokens/{token_id}").status_code == 200
    wait_for(lambda: _api(stack, revoked["token_value"], "GET", f"{SCIM}/Me").status_code == 401, timeout_s=10,
             what="revocation to reach the router")
    time.sleep(max(0.0, expires_at - time.monotonic()))
    bad = {
        "missing": None,
        "malformed": "not a token",
        "unknown PAT": "dapi" + "0" * 64,
        "wrong scheme": None,        # sent as `Authorization: Basic ...` below
        "forged JWT": jwt.encode({"sub": ids["manage"], "iss": "podium", "aud": "podium", "exp": time.time() + 600},
                                 b"k" * 32, algorithm="HS256", headers={"kid": "k-forged"}),
        "unsigned JWT": jwt.encode({"sub": ids["manage"], "exp": time.time() + 600}, None, algorithm="none"),
        "expired": expired,
        "revoked": revoked["token_value"],
    }
    return {"tokens": tokens, "ids": ids, "endpoint_id": endpoint_id, "bad": bad, "group_id": group.json()["id"]}


UNKNOWN_NAME, UNKNOWN_ID = "walk-no-such", "f" * 32


def _path(template: str, world: dict, name: str = EP, endpoint_id: str | None = None) -> str:
    path = template.replace("{name}", name).replace("{model}", name).replace("{prefix}", name)
    path = path.replace("{version}", "absent-1").replace("{served_entity}", "absent-1")
    path = path.replace("{served_model}", "absent-1")
    path = path.replace("{securable_type}", "schema").replace("{full_name}", "main.default")
    return path.replace("{id}", (endpoint_id or world["endpoint_id"]) if "permissions" in template
                        else world["ids"]["none"]).replace("{sub_id}", "0" * 16)


def _is_oip(template: str) -> bool:
    from services.router.oip_rest import is_oip_path

    return is_oip_path(template)


OPENAI_PATHS = ("/chat/completions", "/completions", "/embeddings", "/responses")   # under each OpenAI-style base


def _body_for(template: str, name: str = EP) -> dict:
    if template.rstrip("/").endswith(OPENAI_PATHS):
        return {"model": name, "messages": [{"role": "user", "content": "hi"}], "prompt": "hi", "input": "hi"}
    return OIP_INFER if template.endswith("/infer") else {}


def _error_code(reply) -> str:
    """The error's code; the Open Inference Protocol's paths carry only a message, in its own shape."""
    body = reply.json()
    return body.get("error_code") or {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                                      404: "RESOURCE_DOES_NOT_EXIST"}.get(reply.status_code, "")


def test_tables_cover_every_route_and_method():
    from services.router.rest import build_app

    app = build_app(gateway=None, max_request_bytes=1024)  # routes only: never served
    registered = {(r.method, re.sub(r"\{slash[^}]*\}", "", r.resource.canonical)) for r in app.router.routes()
                  if r.method != "HEAD"}
    assert registered == {(m, p) for m, p, _ in REST_ROUTES}
    methods = {(s.name, m.name) for module in GRPC_MODULES
               for s in module.DESCRIPTOR.services_by_name.values() for m in s.methods}
    methods |= {("GRPCInferenceService", m) for m in re.findall(r"\brpc\s+(\w+)\s*\(", INFERENCE_PROTO.read_text())}
    assert methods == {(s, m) for _, s, m, _ in GRPC_METHODS}
    # Each management route's operation is one the control plane serves, and it serves no other.
    from services.control_plane.operations import Operations
    from services.router.rest_management import ROUTES

    assert {r.operation for r in ROUTES} == Operations(None, None, None, None).names


@pytest.mark.parametrize("method, template, who", [r for r in REST_ROUTES if r[2] != "public"],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_rest_rejects_every_bad_credential(stack, world, method, template, who):
    for label, token in world["bad"].items():
        headers = {"Authorization": "Basic YWRtaW46YWRtaW4="} if label == "wrong scheme" else {}
        reply = _api(stack, token, method, _path(template, world), json=_body_for(template), headers=headers)
        expected = {"error": INVALID["message"]} if _is_oip(template) else INVALID
        assert (reply.status_code, reply.json()) == (401, expected), f"{label}: {reply.text}"


# Expected status per caller for each endpoint-scoped route (the allowed calls are made harmless:
# an invalid config is refused only after the permission check, queries hit a not-yet-ready endpoint).
LEVEL_EXPECTATIONS = {
    "view": {"none": 404, "view": 200, "query": 200, "manage": 200, "member": 200, "admin": 200},
    "query": {"none": 404, "view": 403, "query": 503, "manage": 503, "member": 503, "admin": 503},
    "manage": {"none": 404, "view": 403, "query": 403, "manage": None, "member": 403, "admin": None},
}
ALLOWED_MANAGE = {("PUT", "/config"): 400, ("PUT", "permissions"): 200, ("PATCH", "permissions"): 200,
                  ("DELETE", "serving-endpoints"): 200}


# What an allowed caller gets from OIP routes of `walk-ep`, whose model never loads (after every check).
OIP_ALLOWED = {"/ready": 400, "/config": 503, "/infer": 503, "{model}": 503}


@pytest.mark.parametrize("method, template, who", [
    r for r in REST_ROUTES if r[2] in LEVEL_EXPECTATIONS and "{version}" not in r[1] and "{served_entity}" not in r[1]],
    ids=lambda v: v if isinstance(v, str) else None)
def test_rest_endpoint_routes_at_each_permission_level(stack, world, method, template, who):
    for caller, expected in LEVEL_EXPECTATIONS[who].items():
        body = {"served_entities": "not a list"} if template.endswith("/serving-endpoints/{name}/config") \
            else _body_for(template)
        if _is_oip(template) and expected in (200, 503):
            expected = next(v for suffix, v in OIP_ALLOWED.items() if template.endswith(suffix))
        if "permissions" in template and method in ("PUT", "PATCH"):
            body = {"access_control_list": [{"user_name": "walk-manage", "permission_level": "CAN_MANAGE"},
                                            {"user_name": "walk-view", "permission_level": "CAN_VIEW"},
                                            {"user_name": "walk-query", "permission_level": "CAN_QUERY"},
                                            {"group_name": "walk-group", "permission_level": "CAN_QUERY"}]}
        if method == "DELETE" and expected is None:
            continue  # covered below, on endpoints of its own
        if expected is None:
            expected = next((v for (m, part), v in ALLOWED_MANAGE.items() if m == method and part in template), None)
        reply = _api(stack, world["tokens"][caller], method, _path(template, world), json=body)
        if expected is None:   # allowed: whatever the call answers, it got past authentication and permission
            assert reply.status_code not in (401, 403, 404), f"{caller}: {reply.status_code} {reply.text}"
            continue
        assert reply.status_code == expected, f"{caller}: {reply.status_code} {reply.text}"
        if expected == 404:  # the same answer an unknown name gets: nothing leaks
            unknown_body = _body_for(template, UNKNOWN_NAME) if "model" in body else body
            unknown = _api(stack, world["tokens"]["admin"], method,
                           _path(template, world, UNKNOWN_NAME, UNKNOWN_ID), json=unknown_body)
            seen = reply.text.replace(EP, UNKNOWN_NAME).replace(world["endpoint_id"], UNKNOWN_ID)
            assert (unknown.status_code, unknown.json()) == (404, json.loads(seen)), caller
        if expected == 403:
            assert _error_code(reply) == "PERMISSION_DENIED"
        if expected == 200 and template == "/api/2.0/serving-endpoints/{name}":
            level = {"view": "CAN_VIEW", "query": "CAN_QUERY", "member": "CAN_QUERY"}.get(caller, "CAN_MANAGE")
            assert reply.json()["permission_level"] == level


def test_delete_needs_manage_and_list_shows_only_viewable(stack, world):
    tokens = world["tokens"]
    for caller in ("manage", "admin"):
        body = {"name": f"walk-del-{caller}", "config": NOT_A_MODEL}
        assert _api(stack, tokens["manage"], "POST", "/api/2.0/serving-endpoints", json=body).status_code == 200
        reply = _api(stack, tokens[caller], "DELETE", f"/api/2.0/serving-endpoints/walk-del-{caller}")
        assert (reply.status_code, reply.json()) == (200, {})
    for caller, visible in (("none", False), ("view", True), ("member", True), ("admin", True)):
        names = [e["name"] for e in _api(stack, tokens[caller], "GET", "/api/2.0/serving-endpoints").json()["endpoints"]]
        assert (EP in names) == visible, caller
    mine = _api(stack, tokens["none"], "POST", "/api/2.0/serving-endpoints", json={"name": "walk-mine", "config": NOT_A_MODEL})
    assert mine.status_code == 200 and mine.json()["creator"] == "walk-none"
    assert mine.json()["permission_level"] == "CAN_MANAGE"
    assert _api(stack, tokens["view"], "GET", "/api/2.0/serving-endpoints/walk-mine").status_code == 404
    assert _api(stack, tokens["none"], "DELETE", "/api/2.0/serving-endpoints/walk-mine").status_code == 200


@pytest.mark.parametrize("method, template, who", [r for r in REST_ROUTES if r[2] == "admin"],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_admin_routes_refuse_other_users(stack, world, method, template, who):
    for caller in ("manage", "member"):
        reply = _api(stack, world["tokens"][caller], method, _path(template, world), json={})
        assert (reply.status_code, _error_code(reply)) == (403, "PERMISSION_DENIED"), reply.text


@pytest.mark.parametrize("method, template", [r[:2] for r in REST_ROUTES if r[2] == "grant"])
def test_grant_routes_need_manage_on_the_securable(stack, world, method, template):
    grant = {"changes": [{"principal": "walk-view", "add": ["EXECUTE"]}]}
    for caller in ("none", "view", "manage", "member"):   # walk-none and walk-manage hold EXECUTE, not MANAGE
        reply = _api(stack, world["tokens"][caller], method, _path(template, world), json=grant)
        assert (reply.status_code, _error_code(reply)) == (403, "PERMISSION_DENIED"), f"{caller}: {reply.text}"
    reply = _api(stack, world["tokens"]["admin"], method, _path(template, world), json=grant)
    assert reply.status_code == 200, reply.text
    assert {"principal": "walk-view", "privileges": ["EXECUTE"]} in reply.json()["privilege_assignments"]
    revoke = {"changes": [{"principal": "walk-view", "remove": ["EXECUTE"]}]}
    assert _api(stack, world["tokens"]["admin"], method, _path(template, world), json=revoke).status_code == 200


def test_serving_a_catalog_model_needs_execute_on_it(stack, world):
    body = {"name": "walk-no-execute", "config": NOT_A_MODEL}
    reply = _api(stack, world["tokens"]["view"], "POST", "/api/2.0/serving-endpoints", json=body)
    assert (reply.status_code, _error_code(reply)) == (403, "PERMISSION_DENIED") and "main.default.absent" in reply.text
    update = _api(stack, world["tokens"]["manage"], "PUT", f"/api/2.0/serving-endpoints/{EP}/config",
                  json={"served_entities": [{"entity_name": "main.other.model", "entity_version": "1"}]})
    assert (update.status_code, _error_code(update)) == (403, "PERMISSION_DENIED") and "main.other.model" in update.text


@pytest.mark.parametrize("method, template", [(m, t) for m, t, w in REST_ROUTES if w == "person"
                                              and not t.startswith("/api/2.0/serving-endpoints")])
def test_person_routes_serve_any_user(stack, world, method, template):
    bodies = {"/api/2.0/token/create": {"lifetime_seconds": 60}, "/api/2.0/secrets/scopes/create": {"scope": "walk-s"},
              "/api/2.0/secrets/put": {"scope": "walk-s", "key": "k", "string_value": "v"}}
    reply = _api(stack, world["tokens"]["none"], method, _path(template, world), json=bodies.get(template, {}))
    assert reply.status_code not in (401, 403) or template == "/api/2.0/secrets/get", reply.text
    if template == "/api/2.0/secrets/get":
        assert reply.status_code == 403  # values are never returned, to anyone


def test_public_routes_need_no_credential(stack):
    assert stack.api_as(None, "GET", "/healthz").status_code == 200
    probe = stack.api_as(None, "GET", "/.well-known/databricks-config").json()
    assert probe["oidc_endpoint"] == stack.url + "/oidc"
    discovery = stack.api_as(None, "GET", "/oidc/.well-known/oauth-authorization-server").json()
    assert discovery["token_endpoint"] == stack.url + "/oidc/v1/token"
    refused = stack.api_as(None, "POST", "/oidc/v1/token", data={"grant_type": "client_credentials"},
                           auth=("nobody", "dose" + "0" * 64))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    wrong_grant = stack.api_as(None, "POST", "/oidc/v1/token", data={"grant_type": "password"})
    assert wrong_grant.status_code == 400 and wrong_grant.json()["error"] == "unsupported_grant_type"


# ---- gRPC ----

def _grpc_call(target: str, module, service: str, method: str, request_fields: dict, token: str | None):
    descriptor = module.DESCRIPTOR.services_by_name[service].methods_by_name[method]
    request_class = message_factory.GetMessageClass(descriptor.input_type)
    reply_class = message_factory.GetMessageClass(descriptor.output_type)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with grpc.insecure_channel(target) as channel:
        path = f"/{module.DESCRIPTOR.package}.{service}/{method}"
        if descriptor.client_streaming:   # one frame, then the end of the stream: the server's answers end too
            stream = channel.stream_stream(path, request_class.SerializeToString, reply_class.FromString)
            list(stream(iter([request_class(**request_fields)]), timeout=10, metadata=metadata))
        elif descriptor.server_streaming:
            stream = channel.unary_stream(path, request_class.SerializeToString, reply_class.FromString)
            next(iter(stream(request_class(**request_fields), timeout=10, metadata=metadata)))
        else:
            channel.unary_unary(path, request_class.SerializeToString, reply_class.FromString)(
                request_class(**request_fields), timeout=10, metadata=metadata)
    return grpc.StatusCode.OK


def _grpc_status(*args) -> grpc.StatusCode:
    try:
        return _grpc_call(*args)
    except grpc.RpcError as exc:
        return exc.code()


def _grpc_requests(world) -> dict:
    return {
        "Invoke": {"endpoint": EP, "body": b"{}"}, "InvokeStream": {"endpoint": EP, "body": b"{}"},
        "WatchRoutingTable": {}, "ListDeployments": {}, "ReportDeployments": {},
        "Authenticate": {"token": world["tokens"]["admin"]},
        "IssueOAuthToken": {"client_id": "nobody", "client_secret": "dose" + "0" * 64},
        "Call": {"operation": "GET_PERMISSIONS", "params": {"id": world["endpoint_id"]}},
        "ResolveSecrets": {"texts": ["{{secrets/walk/none}}"], "endpoint_name": EP},
        "ResolveEnvironment": {"deployment_key": "0" * 20},
        "IssueReplicaCredential": {"deployment_key": "0" * 20, "endpoints": [EP]},
        "RevokeReplicaCredential": {"token_id": "0" * 16},
        "PredictStream": {}, "Metadata": {}, "PredictEvents": {"body": b'{"stream": true}'},
        "ExportMetrics": {"endpoint": EP}, "GetOpenApi": {"endpoint": EP},
        "GetReplicaLogs": {"deployment_key": "0" * 20, "build": True},
        "ServerLive": {}, "ServerReady": {}, "ServerMetadata": {}, "ModelReady": {"name": EP},
        "ModelMetadata": {"name": EP},
        "ModelInfer": {"model_name": EP, "inputs": [grpc_predict_v2_pb2.ModelInferRequest.InferInputTensor(
            name="x", datatype="FP64", shape=[1],
            contents=grpc_predict_v2_pb2.InferTensorContents(fp64_contents=[1.0]))]},
    }


def _target(stack, module, worker_address: str) -> str:
    return {query_pb2: stack.info["grpc_target"], grpc_predict_v2_pb2: stack.info["grpc_target"],
            worker_pb2: worker_address, scaler_pb2: stack.info["scaler_target"]}.get(
        module, stack.info["control_plane_target"])


@pytest.fixture(scope="module")
def worker_address(stack, iris_endpoint):
    """A running worker's address, read from the scaler's log (only the router is told it otherwise)."""
    log = (stack.data_dir / "logs" / "scaler.log").read_text()
    # The latest one still listening: an earlier test may have deleted the endpoint of the last one logged.
    for address in reversed(re.findall(r"is ready at (127\.0\.0\.1:\d+)", log)):
        host, port = address.split(":")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return address
        except OSError:
            continue
    raise AssertionError("no running worker found in the scaler's log")


@pytest.mark.parametrize("module, service, method, who", GRPC_METHODS, ids=lambda v: v if isinstance(v, str) else None)
def test_grpc_rejects_every_bad_credential(stack, world, worker_address, module, service, method, who):
    request = _grpc_requests(world)[method]
    for label, token in world["bad"].items():
        status = _grpc_status(_target(stack, module, worker_address), module, service, method, request, token)
        expected = grpc.StatusCode.UNAUTHENTICATED
        if who == "public":  # the client secret, not a bearer credential, is checked
            assert status == expected, label
            continue
        assert status == expected, f"{service}.{method} with {label}: {status}"


GRPC_LEVELS = {
    "Invoke": {"none": "NOT_FOUND", "view": "PERMISSION_DENIED", "query": "UNAVAILABLE", "admin": "UNAVAILABLE"},
    "InvokeStream": {"none": "NOT_FOUND", "view": "PERMISSION_DENIED", "query": "UNAVAILABLE",
                     "admin": "UNAVAILABLE"},
    "Call": {"none": "NOT_FOUND", "view": "OK", "admin": "OK"},
    "ExportMetrics": {"none": "NOT_FOUND", "view": "OK", "admin": "OK"},
    "GetOpenApi": {"none": "NOT_FOUND"},
    "GetReplicaLogs": {"admin": "UNAUTHENTICATED", "manage": "UNAUTHENTICATED"},
    # Internal methods: a person's credential, even an admin's, is not Podium's service credential.
    "WatchRoutingTable": {"admin": "UNAUTHENTICATED", "manage": "UNAUTHENTICATED"},
    "ListDeployments": {"admin": "UNAUTHENTICATED"}, "ReportDeployments": {"admin": "UNAUTHENTICATED"},
    "Authenticate": {"admin": "UNAUTHENTICATED"}, "ResolveSecrets": {"admin": "UNAUTHENTICATED"},
    "ResolveEnvironment": {"admin": "UNAUTHENTICATED"}, "IssueReplicaCredential": {"admin": "UNAUTHENTICATED"},
    "RevokeReplicaCredential": {"admin": "UNAUTHENTICATED"},
    # A worker answers the router only.
    "PredictStream": {"admin": "UNAUTHENTICATED", "query": "UNAUTHENTICATED"},
    "PredictEvents": {"admin": "UNAUTHENTICATED", "query": "UNAUTHENTICATED"},
    "Metadata": {"admin": "UNAUTHENTICATED", "manage": "UNAUTHENTICATED"},
    # Open Inference Protocol: the same rules as the Databricks paths.
    "ServerLive": {"none": "OK"}, "ServerReady": {"none": "OK"}, "ServerMetadata": {"none": "OK"},
    "ModelReady": {"none": "NOT_FOUND", "view": "OK", "admin": "OK"},
    "ModelMetadata": {"none": "NOT_FOUND", "view": "UNAVAILABLE"},
    "ModelInfer": {"none": "NOT_FOUND", "view": "PERMISSION_DENIED", "query": "UNAVAILABLE", "member": "UNAVAILABLE"},
}


@pytest.mark.parametrize("module, service, method, who", [m for m in GRPC_METHODS if m[2] in GRPC_LEVELS],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_grpc_methods_at_each_permission_level(stack, world, worker_address, module, service, method, who):
    request = _grpc_requests(world)[method]
    for caller, expected in GRPC_LEVELS[method].items():
        status = _grpc_status(_target(stack, module, worker_address), module, service, method, request,
                              world["tokens"][caller])
        assert status.name == expected, f"{service}.{method} as {caller}: {status}"


def test_grpc_create_is_open_to_any_user_and_the_creator_manages(stack, world):
    tokens, target = world["tokens"], stack.info["control_plane_target"]
    create = {"operation": "CREATE_ENDPOINT", "body": json.dumps({"name": "walk-grpc", "config": NOT_A_MODEL}).encode()}
    delete = {"operation": "DELETE_ENDPOINT", "params": {"name": "walk-grpc"}}
    assert _grpc_status(target, management_pb2, "Management", "Call", create, tokens["none"]) == grpc.StatusCode.OK
    assert _grpc_status(target, management_pb2, "Management", "Call", delete, tokens["view"]) == \
        grpc.StatusCode.NOT_FOUND
    assert _grpc_status(target, management_pb2, "Management", "Call", delete, tokens["none"]) == grpc.StatusCode.OK
