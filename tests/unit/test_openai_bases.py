"""The paths Databricks' OpenAI clients call besides /serving-endpoints (services/router/rest_openai.py): the AI
Gateway V2 base URLs of `DatabricksOpenAI(use_ai_gateway=True)` and `(use_ai_gateway_native_api=True)`, answered
as the /serving-endpoints ones, and the Apps API and `model="apps/<name>"`, refused with a JSON error that says
Podium has no Apps."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.common.errors import InvalidParameter, Unauthenticated
from services.common.principals import Principal
from services.router import agent_wire
from services.router.rest import error_middleware
from services.router.rest_openai import OpenAIRoutes
from services.router.results import QueryResult

TOKEN = "dapi-good"


class StubGateway:
    """The router core's two calls these routes make, recording what they were asked."""

    def __init__(self):
        self.queries = []

    async def authenticate(self, token: str) -> Principal:
        if token != TOKEN:
            raise Unauthenticated("Invalid access token.")
        return Principal("u-1", "alice", "USER")

    async def query_openai(self, token: str, task: str, body: bytes, payload: dict) -> QueryResult:
        await self.authenticate(token)
        name = agent_wire.endpoint_named(payload)   # as the core does
        self.queries.append((task, name))
        return QueryResult(b'{"ok": true}', "application/json", "entity")


@pytest.fixture
async def client():
    gateway = StubGateway()
    app = web.Application(middlewares=[error_middleware])
    OpenAIRoutes(gateway).register(app.router)   # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as test_client:
        test_client.gateway = gateway
        yield test_client


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("base", ["/serving-endpoints", "/ai-gateway/mlflow/v1", "/ai-gateway/openai/v1"])
@pytest.mark.parametrize("path, task", [("chat/completions", "llm/v1/chat"), ("completions", "llm/v1/completions"),
                                        ("embeddings", "llm/v1/embeddings"), ("responses", "agent/v1/responses")])
async def test_each_base_reaches_the_same_query(client, base, path, task):
    reply = await client.post(f"{base}/{path}", json={"model": "my-endpoint"}, headers=AUTH)
    assert (reply.status, await reply.json()) == (200, {"ok": True})
    assert client.gateway.queries == [(task, "my-endpoint")]
    refused = await client.post(f"{base}/{path}", json={"model": "my-endpoint"})   # no credential
    assert refused.status == 401 and (await refused.json())["error_code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("base", ["/serving-endpoints", "/ai-gateway/mlflow/v1"])
async def test_a_databricks_app_as_model_is_a_clear_error(client, base):
    reply = await client.post(f"{base}/responses", json={"model": "apps/my-agent", "input": "hi"}, headers=AUTH)
    body = await reply.json()
    assert reply.status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "apps/my-agent" in body["message"] and "does not serve Databricks Apps" in body["message"]
    assert client.gateway.queries == []


@pytest.mark.parametrize("method, path", [("GET", "/api/2.0/apps/my-agent"), ("GET", "/api/2.0/apps"),
                                          ("POST", "/api/2.0/apps"), ("POST", "/api/2.0/apps/my-agent/start"),
                                          ("DELETE", "/api/2.0/apps/my-agent")])
async def test_the_apps_api_says_podium_has_no_apps(client, method, path):
    reply = await client.request(method, path, headers=AUTH)
    body = await reply.json()
    assert reply.status == 404 and body["error_code"] == "NOT_FOUND" and set(body) == {"error_code", "message"}
    assert "does not serve Databricks Apps" in body["message"] and path in body["message"]
    anonymous = await client.request(method, path)
    assert anonymous.status == 401 and (await anonymous.json())["error_code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("payload, error", [
    ({"model": "ep"}, None), ({}, "Missing required field: model"), ({"model": ""}, "Missing required field: model"),
    ({"model": 3}, "Missing required field: model"), ({"model": "apps/x"}, "names a Databricks App")])
def test_endpoint_named(payload, error):
    if error is None:
        assert agent_wire.endpoint_named(payload) == "ep"
    else:
        with pytest.raises(InvalidParameter, match=error):
            agent_wire.endpoint_named(payload)
