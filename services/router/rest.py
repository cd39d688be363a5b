"""REST adapter of the router (aiohttp): the app, its one error shape, and the serving API's query paths.

build_app registers every route, family by family, each family handed the core it calls:
- ServingRoutes (here): queries (invocations), metrics, OpenAPI documents, the AI gateway's records, and
  Podium's read-only registry view;
- ManagementRoutes (rest_management.py): serving endpoints, SCIM, tokens, permissions, secrets: one table;
- OpenAIRoutes (rest_openai.py), OpenInferenceRoutes (oip_rest.py), SignInRoutes (rest_identity.py), the UI.

Each handler parses the wire, calls one core method and renders the answer; every error leaves as
`{"error_code", "message"}` with the status from services/common/errors.py, aiohttp's own 404/405/413 too,
except on the Open Inference Protocol's paths (oip_rest.py), where it is that protocol's `{"error": ...}`.
Handlers only extract the caller's `Authorization: Bearer` credential; the cores decide what it may do.
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web

from services.common.errors import (
    BadRequest, InvalidParameter, MethodNotAllowed, NotFound, PayloadTooLarge, PodiumError, Unavailable,
)
from services.common.request_context import (
    REQUEST_ID_HEADER, TRACEPARENT, choose_request_id, request_id_var, traceparent_var,
)
from services.router.core import Gateway
from services.router.external.client import HOP_HEADER
from services.router.management_openapi import management_document
from services.router.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from services.router.oip_rest import OpenInferenceRoutes, is_oip_path
from services.router.rest_identity import SignInRoutes, base_url, bearer_token
from services.router.rest_management import ENDPOINTS, SLASH, ManagementRoutes
from services.router.rest_openai import OpenAIRoutes, answer_headers, stream_events
from services.router.sign_in import SignIn
from services.router.ui import add_ui_routes

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = web.AppKey("max_request_bytes", int)
JSON = "application/json"
REGISTRY = "/api/2.0/podium/registered-models"
DEFAULT_PAGE = 100   # records per page of the inference table


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


@web.middleware
async def hop_guard(request: web.Request, handler) -> web.StreamResponse:
    """Refuses a request that a Podium router sent (as an external model's provider call): an endpoint whose
    provider URL points back at Podium fails after one hop instead of looping."""
    if HOP_HEADER in request.headers:
        raise BadRequest("This request came from a Podium router calling an external model provider; Podium "
                         "does not serve as its own provider")
    return await handler(request)


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


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type=JSON)


def _int_param(request: web.Request, name: str, default: int | None) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidParameter(f"{name} must be an integer") from None


async def health(request: web.Request) -> web.Response:
    return _json(b'{"status":"ok"}')


async def management_openapi(request: web.Request) -> web.Response:
    # Describes the API, holds no data: answered without a credential, like databricks-config.
    return _json(orjson.dumps(management_document(base_url(request))))


class ServingRoutes:
    def __init__(self, gateway: Gateway):
        self._gateway = gateway

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_post("/serving-endpoints/{name}/invocations" + SLASH, self.invocations)
        router.add_post("/serving-endpoints/{name}/served-models/{served_entity}/invocations" + SLASH,
                        self.invocations)
        router.add_get(ENDPOINTS + "/{name}/metrics" + SLASH, self.export_metrics)
        router.add_get(ENDPOINTS + "/{name}/openapi" + SLASH, self.get_open_api)
        # The AI gateway's records (Podium extensions; Databricks keeps these in Unity Catalog tables).
        router.add_get(ENDPOINTS + "/{name}/inference-table" + SLASH, self.inference_table)
        router.add_get(ENDPOINTS + "/{name}/usage" + SLASH, self.usage)
        # Podium's own read-only registry view, for the UI's model pickers and the playground's example.
        router.add_get(REGISTRY + SLASH, self.list_registered_models)
        router.add_get(REGISTRY + "/{name}/versions/{version}/signature" + SLASH, self.get_model_signature)

    async def invocations(self, request: web.Request) -> web.StreamResponse:
        # The payload is not parsed here: the worker scores the caller's bytes with MLflow's own parser.
        # /served-models/{served_entity}/invocations queries that served entity, whatever the traffic split.
        result = await self._gateway.query(
            bearer_token(request), request.match_info["name"], await request.read(),
            request.headers.get("Content-Type", JSON), served_entity_name=request.match_info.get("served_entity"))
        if result.stream is not None:  # an external model asked for `stream: true`
            return await stream_events(request, result)
        return web.Response(body=result.body,
                            headers={**answer_headers(result), "Content-Type": result.content_type})

    async def export_metrics(self, request: web.Request) -> web.Response:
        text = await self._gateway.export_metrics(bearer_token(request), request.match_info["name"])
        return web.Response(body=text, headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def get_open_api(self, request: web.Request) -> web.Response:
        # The document's server is where this caller reached us (behind a proxy: the Host it sent).
        return _json(await self._gateway.get_open_api(bearer_token(request), request.match_info["name"],
                                                      base_url(request)))

    async def inference_table(self, request: web.Request) -> web.Response:
        answer = await self._gateway.inference_table(
            bearer_token(request), request.match_info["name"], _int_param(request, "start_time_ms", None),
            _int_param(request, "end_time_ms", None), _int_param(request, "max_results", DEFAULT_PAGE) or 0,
            request.query.get("page_token"))
        return _json(orjson.dumps(answer))

    async def usage(self, request: web.Request) -> web.Response:
        answer = await self._gateway.usage(
            bearer_token(request), request.match_info["name"], _int_param(request, "start_time_ms", None),
            _int_param(request, "end_time_ms", None))
        return _json(orjson.dumps(answer))

    async def list_registered_models(self, request: web.Request) -> web.Response:
        return _json(await self._gateway.list_registered_models(bearer_token(request)))

    async def get_model_signature(self, request: web.Request) -> web.Response:
        return _json(await self._gateway.get_model_signature(
            bearer_token(request), request.match_info["name"], request.match_info["version"]))


def build_app(gateway: Gateway, max_request_bytes: int, max_concurrent_requests: int = 2000, *,
              sign_in: SignIn | None = None) -> web.Application:
    """The router's whole REST API. Without `sign_in`, the OAuth token endpoint answers 503."""
    app = web.Application(middlewares=[error_middleware, hop_guard, concurrency_limit(max_concurrent_requests)],
                          client_max_size=max_request_bytes)
    app[MAX_REQUEST_BYTES] = max_request_bytes
    app.router.add_get("/healthz", health)
    app.router.add_get("/api/2.0/podium/openapi.json", management_openapi)
    SignInRoutes(sign_in).register(app.router)
    ManagementRoutes(gateway).register(app.router)
    ServingRoutes(gateway).register(app.router)
    OpenAIRoutes(gateway).register(app.router)
    OpenInferenceRoutes(gateway).register(app.router)
    add_ui_routes(app)   # static files only, holding no data: every call the UI makes carries the signed-in token
    return app
