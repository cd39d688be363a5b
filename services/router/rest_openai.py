"""REST adapter of the OpenAI-style paths, and the server-sent events every streamed answer leaves as.

- POST /serving-endpoints/chat/completions, /completions, /embeddings, /responses: the openai SDK's calls with
  `base_url=<router>/serving-endpoints`; the endpoint is the body's `model` (reference §6).
- The same four under /ai-gateway/mlflow/v1 and /ai-gateway/openai/v1: the base URLs databricks-openai's
  `DatabricksOpenAI(use_ai_gateway=True)` and `(use_ai_gateway_native_api=True)` call (Databricks' AI Gateway
  V2), answered as the /serving-endpoints ones are (docs/agents.md).
- The Apps API (/api/2.0/apps...), which `model="apps/<name>"` makes databricks-openai call: Podium has no Apps,
  and says so to an authenticated caller.
- Streamed answers leave as server-sent events, chunk by chunk as the provider sends them.
"""

from __future__ import annotations

import contextlib

from aiohttp import web

from services.common.errors import NotFound
from services.router.agent_wire import NO_APPS
from services.router.ai_gateway import json_object
from services.router.core import Gateway
from services.router.rest_identity import bearer_token
from services.router.results import QueryResult, answer_metadata

# `responses` (the openai SDK's responses.create, as DatabricksOpenAI and get_open_ai_client call it) reaches
# endpoints serving an MLflow ResponsesAgent (docs/agents.md).
OPENAI_TASKS = {"chat/completions": "llm/v1/chat", "completions": "llm/v1/completions",
                "embeddings": "llm/v1/embeddings", "responses": "agent/v1/responses"}
# The OpenAI-style base URLs: Podium's, and databricks-openai's for Databricks' AI Gateway V2 (the MLflow API and
# the "native" OpenAI one), which reach the same endpoints by the same `model`.
BASE_PATHS = ("/serving-endpoints", "/ai-gateway/mlflow/v1", "/ai-gateway/openai/v1")
APPS_API = "/api/2.0/apps"
APPS_METHODS = ("GET", "POST", "PATCH", "DELETE")   # what the Apps API answers (list, get, create, update, ...)


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


class OpenAIRoutes:
    def __init__(self, gateway: Gateway):
        self._gateway = gateway

    def register(self, router: web.UrlDispatcher) -> None:
        for base in BASE_PATHS:
            for path, task in OPENAI_TASKS.items():
                router.add_post(f"{base}/{path}", self._handler(task))
                router.add_post(f"{base}/{path}/", self._handler(task))
        for method in APPS_METHODS:
            router.add_route(method, APPS_API, self.no_apps)
            router.add_route(method, APPS_API + "/{rest:.*}", self.no_apps)

    async def no_apps(self, request: web.Request) -> web.Response:
        """Any Apps API call (databricks-openai looks an App up with GET /api/2.0/apps/{name}): 404 NOT_FOUND,
        as for any path Podium has no API at, saying what to do instead; a caller must authenticate first."""
        await self._gateway.authenticate(bearer_token(request))
        raise NotFound(f"{request.method} {request.path}: {NO_APPS}")

    def _handler(self, task: str):
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            result = await self._gateway.query_openai(bearer_token(request), task, body, json_object(body))
            if result.stream is not None:
                return await stream_events(request, result)
            return web.Response(body=result.body, content_type="application/json", headers=answer_headers(result))
        return handle
