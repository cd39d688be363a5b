"""Every PodiumError leaves REST and gRPC with the same code and the status of the one table."""

from __future__ import annotations

import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.common import errors
from services.common.grpc_edge import grpc_edge

ALL_ERRORS = [errors.PodiumError] + sorted(
    {c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.PodiumError)} - {errors.PodiumError},
    key=lambda c: c.__name__)


@pytest.mark.parametrize("error_class", ALL_ERRORS, ids=lambda c: c.__name__)
def test_every_code_is_in_the_table(error_class):
    assert error_class.code in errors.WIRE_STATUS


@pytest.mark.parametrize("error_class", ALL_ERRORS, ids=lambda c: c.__name__)
async def test_rest_edge(error_class):
    from services.router.rest import error_middleware

    async def handler(request):
        raise error_class("it went wrong")

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/x", handler)
    async with TestClient(TestServer(app)) as client:
        reply = await client.get("/x")
        assert reply.status == error_class("x").http_status   # the table's, unless the class says otherwise
        assert await reply.json() == {"error_code": error_class.code, "message": "it went wrong"}


class _Context:
    def __init__(self, metadata=()):
        self.aborted = None
        self._metadata = metadata

    def invocation_metadata(self):
        return self._metadata

    async def abort(self, code, details, trailing_metadata=()):
        self.aborted = (code, details, dict(trailing_metadata))
        raise grpc.aio.AbortError()


@pytest.mark.parametrize("error_class", ALL_ERRORS, ids=lambda c: c.__name__)
async def test_grpc_edge(error_class):
    class Servicer:
        @grpc_edge
        async def Call(self, request, context):
            raise error_class("it went wrong")

    context = _Context((("x-request-id", "caller-id-1"),))
    with pytest.raises(grpc.aio.AbortError):
        await Servicer().Call(None, context)
    code, details, metadata = context.aborted
    assert code == grpc.StatusCode[errors.WIRE_STATUS[error_class.code][1]]
    assert details == "it went wrong" and metadata["error-code"] == error_class.code
    assert metadata["x-request-id"] == "caller-id-1"   # an error answer names the request too


async def test_unexpected_exceptions_leak_nothing():
    from services.router.rest import error_middleware

    async def handler(request):
        raise RuntimeError("secret internals at /etc/passwd")

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/x", handler)
    async with TestClient(TestServer(app)) as client:
        reply = await client.get("/x")
        assert reply.status == 500
        assert await reply.json() == {"error_code": "INTERNAL_ERROR", "message": "internal error"}
        missing = await client.get("/nope")
        assert missing.status == 404 and (await missing.json())["error_code"] == "NOT_FOUND"
