"""REST adapter of the router (aiohttp): the Databricks serving API's paths and JSON shapes.

Each handler parses the wire, calls one Gateway method and renders the answer; every error leaves as
`{"error_code", "message"}` with the status from services/common/errors.py, aiohttp's own 404/405/413 too,
except on the Open Inference Protocol's paths (oip_rest.py), where it is that protocol's `{"error": ...}`.
Handlers only extract the caller's `Authorization: Bearer` credential; the Gateway decides what it may do.
Identity, permission and secret routes live in rest_identity.py.
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web

from services.common.errors import (
    MethodNotAllowed, NotFound, PayloadTooLarge, PodiumError, BadRequest, Unavailable,
)
from services.common.request_context import (
    REQUEST_ID_HEADER, TRACEPARENT, choose_request_id, request_id_var, traceparent_var,
)
from services.router.core import Gateway
from services.router.management_openapi import management_document
from services.router.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from services.router.oip_rest import OpenInferenceRoutes, is_oip_path
from services.router.rest_gateway import answer_headers, stream_events
from services.router.rest_identity import add_identity_routes, base_url, bearer_token
from services.router.ui import add_ui_routes

log = logging.getLogger(__name__)

GATEWAY = web.AppKey("gateway", Gateway)
MAX_REQUEST_BYTES = web.AppKey("max_request_bytes", int)
JSON = "application/json"
# Optional trailing slash: mlflow calls /api/2.0/serving-endpoints/ (sic) for list and create.
SLASH = "{slash:/?}"
ENDPOINTS = "/api/2.0/serving-endpoints"
REGISTRY = "/api/2.0/podium/registered-models"


def error_response(error: PodiumError, is_oip: bool = False) -> web.Response:
    headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s else None
    if is_oip:
        body = orjson.dumps({"error": error.message})
    else:
        body = orjson.dumps({"error_code": error.code, "message": error.message})
    return web.Response(status=error.http_status, body=body, content_type=JSON, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Every answer, an error too, carries the request's x-request-id (the caller's when sane); the id and
    the caller's `traceparent` ride in the request context for the core, its logs and the worker."""
    request_id = choose_request_id(request.headers.get(REQUEST_ID_HEADER))
    id_token = request_id_var.set(request_id)
    parent_token = traceparent_var.set(request.headers.get(TRACEPARENT, ""))
    try:
        response = await handler(request)
    except Exception as exc:  # noqa: BLE001 - every failure becomes the one JSON shape of its path
        response = _failure(request, exc)
    finally:
        request_id_var.reset(id_token)
        traceparent_var.reset(parent_token)
    if not response.prepared:   # a streamed answer sent it with its first bytes (answer_headers)
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


def concurrency_limit(max_requests: int):
    """A middleware answering 503 TEMPORARILY_UNAVAILABLE beyond `max_requests` requests at once: with
    16 MB bodies, what a router holds is bounded by this times the body limit."""
    in_flight = 0

    @web.middleware
    async def limit(request: web.Request, handler) -> web.StreamResponse:
        nonlocal in_flight
        if in_flight >= max_requests:
            raise Unavailable(f"This router is serving {max_requests} requests already; retry shortly",
                              retry_after_s=1)
        in_flight += 1
        try:
            return await handler(request)
        finally:
            in_flight -= 1
    return limit


def _failure(request: web.Request, exc: Exception) -> web.Response:
    is_oip = is_oip_path(request.path)
    if isinstance(exc, PodiumError):
        return error_response(exc, is_oip)
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        # (aiohttp's exception does not keep the limit it enforced: the app does)
        limit = request.app.get(MAX_REQUEST_BYTES)
        return error_response(PayloadTooLarge(f"Request body is larger than {limit} bytes" if limit else
                                              "Request body is too large"), is_oip)
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return error_response(MethodNotAllowed(f"{request.method} is not allowed on {request.path}"), is_oip)
    if isinstance(exc, web.HTTPNotFound):
        return error_response(NotFound(f"No API at {request.method} {request.path}"), is_oip)
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        return error_response(PodiumError(exc.reason, http_status=exc.status), is_oip)
    if isinstance(exc, web.HTTPException):
        raise exc
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return error_response(PodiumError("internal error"), is_oip)


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=JSON)


async def _body(request: web.Request) -> bytes:
    body = await request.read()
    try:
        orjson.loads(body or b"null")
    except orjson.JSONDecodeError:
        raise BadRequest("Request body is not valid JSON") from None
    return body


async def databricks_config(request: web.Request) -> web.Response:
    # Every databricks-sdk client (and so every mlflow call) probes this first, unauthenticated: answer fast.
    return _json(orjson.dumps(Gateway.host_metadata(base_url(request))))


async def health(request: web.Request) -> web.Response:
    return _json(b'{"status":"ok"}')


async def create_endpoint(request: web.Request) -> web.Response:
    return _json(await request.app[GATEWAY].create_endpoint(bearer_token(request), await _body(request)))


async def list_endpoints(request: web.Request) -> web.Response:
    return _json(await request.app[GATEWAY].list_endpoints(bearer_token(request)))


async def get_endpoint(request: web.Request) -> web.Response:
    return _json(await request.app[GATEWAY].get_endpoint(bearer_token(request), request.match_info["name"]))


async def delete_endpoint(request: web.Request) -> web.Response:
    await request.app[GATEWAY].delete_endpoint(bearer_token(request), request.match_info["name"])
    return _json(b"{}")  # mlflow's delete_endpoint needs a JSON body


async def update_config(request: web.Request) -> web.Response:
    return _json(await request.app[GATEWAY].update_config(
        bearer_token(request), request.match_info["name"], await _body(request)))


async def patch_tags(request: web.Request) -> web.Response:
    return _json(await request.app[GATEWAY].patch_tags(
        bearer_token(request), request.match_info["name"], await _body(request)))


async def put_ai_gateway(request: web.Request) -> web.Response:
    return _json(await request.app[GATEWAY].put_ai_gateway(
        bearer_token(request), request.match_info["name"], await _body(request)))


async def put_rate_limits(request: web.Request) -> web.Response:
    return _json(await request.app[GATEWAY].put_rate_limits(
        bearer_token(request), request.match_info["name"], await _body(request)))


async def update_notifications(request: web.Request) -> web.Response:
    return _json(await request.app[GATEWAY].update_notifications(
        bearer_token(request), request.match_info["name"], await _body(request)))


async def patch_telemetry_config(request: web.Request) -> web.Response:
    return _json(await request.app[GATEWAY].patch_telemetry_config(
        bearer_token(request), request.match_info["name"], await _body(request)))


async def served_model_logs(request: web.Request) -> web.Response:
    logs = await request.app[GATEWAY].served_model_logs(
        bearer_token(request), request.match_info["name"], request.match_info["served_model"], build=False)
    return _json(orjson.dumps({"logs": logs}))


async def served_model_build_logs(request: web.Request) -> web.Response:
    logs = await request.app[GATEWAY].served_model_logs(
        bearer_token(request), request.match_info["name"], request.match_info["served_model"], build=True)
    return _json(orjson.dumps({"logs": logs}))


async def export_metrics(request: web.Request) -> web.Response:
    text = await request.app[GATEWAY].export_metrics(bearer_token(request), request.match_info["name"])
    return web.Response(body=text, headers={"Content-Type": METRICS_CONTENT_TYPE})


async def get_open_api(request: web.Request) -> web.Response:
    # The document's server is where this caller reached us (behind a proxy: the Host it sent).
    return _json(await request.app[GATEWAY].get_open_api(bearer_token(request), request.match_info["name"],
                                                          f"{request.scheme}://{request.host}"))


async def management_openapi(request: web.Request) -> web.Response:
    # Describes the API, holds no data: answered without a credential, like databricks-config.
    return _json(orjson.dumps(management_document(f"{request.scheme}://{request.host}")))


async def list_registered_models(request: web.Request) -> web.Response:
    return _json(await request.app[GATEWAY].list_registered_models(bearer_token(request)))


async def get_model_signature(request: web.Request) -> web.Response:
    return _json(await request.app[GATEWAY].get_model_signature(
        bearer_token(request), request.match_info["name"], request.match_info["version"]))


async def invocations(request: web.Request) -> web.StreamResponse:
    # The payload is not parsed here: the worker scores the caller's bytes with MLflow's own parser.
    # /served-models/{served_entity}/invocations queries that served entity, whatever the traffic split.
    result = await request.app[GATEWAY].query(
        bearer_token(request), request.match_info["name"], await request.read(),
        request.headers.get("Content-Type", JSON), served_entity_name=request.match_info.get("served_entity"))
    if result.stream is not None:  # an external model asked for `stream: true`
        return await stream_events(request, result)
    return web.Response(body=result.body, headers={**answer_headers(result), "Content-Type": result.content_type})


def build_app(gateway: Gateway, max_request_bytes: int, max_concurrent_requests: int = 2000) -> web.Application:
    app = web.Application(middlewares=[error_middleware, concurrency_limit(max_concurrent_requests)],
                          client_max_size=max_request_bytes)
    app[GATEWAY] = gateway
    app[MAX_REQUEST_BYTES] = max_request_bytes
    app.router.add_get("/.well-known/databricks-config", databricks_config)
    app.router.add_get("/healthz", health)
    app.router.add_post(ENDPOINTS + SLASH, create_endpoint)
    app.router.add_get(ENDPOINTS + SLASH, list_endpoints)
    app.router.add_get(ENDPOINTS + "/{name}" + SLASH, get_endpoint)
    app.router.add_delete(ENDPOINTS + "/{name}" + SLASH, delete_endpoint)
    app.router.add_put(ENDPOINTS + "/{name}/config" + SLASH, update_config)
    app.router.add_patch(ENDPOINTS + "/{name}/tags" + SLASH, patch_tags)
    app.router.add_put(ENDPOINTS + "/{name}/ai-gateway" + SLASH, put_ai_gateway)
    app.router.add_put(ENDPOINTS + "/{name}/rate-limits" + SLASH, put_rate_limits)
    app.router.add_patch(ENDPOINTS + "/{name}/notifications" + SLASH, update_notifications)
    app.router.add_patch(ENDPOINTS + "/{name}/telemetry-config" + SLASH, patch_telemetry_config)
    app.router.add_get(ENDPOINTS + "/{name}/served-models/{served_model}/logs" + SLASH, served_model_logs)
    app.router.add_get(ENDPOINTS + "/{name}/served-models/{served_model}/build-logs" + SLASH, served_model_build_logs)
    app.router.add_get(ENDPOINTS + "/{name}/metrics" + SLASH, export_metrics)
    app.router.add_get(ENDPOINTS + "/{name}/openapi" + SLASH, get_open_api)
    app.router.add_post("/serving-endpoints/{name}/invocations" + SLASH, invocations)
    app.router.add_post("/serving-endpoints/{name}/served-models/{served_entity}/invocations" + SLASH, invocations)
    OpenInferenceRoutes(gateway).register(app.router)
    # Podium's own read-only registry view, for the UI's model pickers and the playground's example.
    app.router.add_get("/api/2.0/podium/openapi.json", management_openapi)
    app.router.add_get(REGISTRY + SLASH, list_registered_models)
    app.router.add_get(REGISTRY + "/{name}/versions/{version}/signature" + SLASH, get_model_signature)
    add_identity_routes(app, GATEWAY)
    add_ui_routes(app)   # static files only, holding no data: every call the UI makes carries the signed-in token
    return app
