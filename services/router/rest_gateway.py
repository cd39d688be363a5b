"""REST adapter of the AI gateway: the OpenAI-style paths, streamed answers, and the records' read API.

- POST /serving-endpoints/chat/completions, /completions, /embeddings: the openai SDK's calls with
  `base_url=<router>/serving-endpoints`; the endpoint is the body's `model` (reference §6).
- Streamed answers leave as server-sent events, chunk by chunk as the provider sends them.
- GET /api/2.0/serving-endpoints/{name}/inference-table and .../usage (Podium extensions; Databricks keeps
  these in Unity Catalog tables): the captured requests and responses, and requests/tokens per requester.
"""

from __future__ import annotations

import contextlib

import orjson
from aiohttp import web

from services.common.errors import BadRequest, InvalidParameter
from services.router.core import Gateway
from services.router.rest_identity import bearer_token
from services.router.results import QueryResult, answer_metadata

CORE = web.AppKey("ai_gateway_core", Gateway)
OPENAI_TASKS = {"chat/completions": "llm/v1/chat", "completions": "llm/v1/completions",
                "embeddings": "llm/v1/embeddings"}
DEFAULT_PAGE = 100


def answer_headers(result: QueryResult) -> dict[str, str]:
    return {"served-model-name": result.served_entity_name, **dict(answer_metadata(result))}


async def stream_events(request: web.Request, result: QueryResult) -> web.StreamResponse:
    """Relays server-sent events as they come; the provider call is released if the caller leaves."""
    assert result.stream is not None
    response = web.StreamResponse(headers={**answer_headers(result), "Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    async with contextlib.aclosing(result.stream) as chunks:  # type: ignore[type-var]
        await response.prepare(request)
        try:
            async for chunk in chunks:
                await response.write(chunk)
        except ConnectionResetError:
            return response  # the caller went away: aclosing stops the provider call and records it
    await response.write_eof()
    return response


async def _openai_call(request: web.Request, task: str) -> web.StreamResponse:
    body = await request.read()
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("Request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest("Request body must be a JSON object")
    result = await request.app[CORE].query_openai(bearer_token(request), task, body, payload)
    if result.stream is not None:
        return await stream_events(request, result)
    return web.Response(body=result.body, content_type="application/json", headers=answer_headers(result))


def _openai_handler(task: str):
    async def handler(request: web.Request) -> web.StreamResponse:
        return await _openai_call(request, task)
    return handler


def _int_param(request: web.Request, name: str, default: int | None) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidParameter(f"{name} must be an integer") from None


async def inference_table(request: web.Request) -> web.Response:
    answer = await request.app[CORE].inference_table(
        bearer_token(request), request.match_info["name"], _int_param(request, "start_time_ms", None),
        _int_param(request, "end_time_ms", None), _int_param(request, "max_results", DEFAULT_PAGE) or 0,
        request.query.get("page_token"))
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


async def usage(request: web.Request) -> web.Response:
    answer = await request.app[CORE].usage(
        bearer_token(request), request.match_info["name"], _int_param(request, "start_time_ms", None), _int_param(request, "end_time_ms", None))
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


def add_routes(app: web.Application, gateway: Gateway) -> None:
    app[CORE] = gateway
    for path, task in OPENAI_TASKS.items():
        app.router.add_post(f"/serving-endpoints/{path}", _openai_handler(task))
        app.router.add_post(f"/serving-endpoints/{path}/", _openai_handler(task))
    app.router.add_get("/api/2.0/serving-endpoints/{name}/inference-table{slash:/?}", inference_table)
    app.router.add_get("/api/2.0/serving-endpoints/{name}/usage{slash:/?}", usage)
