"""The transport's own time to a first streamed event, with the clients bench/agents.py uses: a grpc.aio
Query server whose InvokeStream yields one event at once, and an aiohttp server answering one server-sent
event at once, both on uvloop as Podium's router runs. Run as `python -m bench.stream_floor` it serves both
on port 0 and prints `grpc=<target> http=<url>` when ready."""

from __future__ import annotations

from aiohttp import web

from podium_api.v1 import query_pb2, query_pb2_grpc
from services.common import event_loop


class _Floor(query_pb2_grpc.QueryServicer):
    async def InvokeStream(self, request, context):
        await context.send_initial_metadata((("served-model-name", "floor"),))   # as the router sends it
        yield query_pb2.InvokeEvent(data=b'{"delta": "first"}')
        yield query_pb2.InvokeEvent(data=b'{"delta": "last"}')


async def _invocations(request: web.Request) -> web.StreamResponse:
    await request.read()
    reply = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await reply.prepare(request)
    await reply.write(b'data: {"delta": "first"}\n\n')
    await reply.write(b'data: {"delta": "last"}\n\ndata: [DONE]\n\n')
    await reply.write_eof()
    return reply


async def _serve() -> None:
    import grpc

    server = grpc.aio.server()
    query_pb2_grpc.add_QueryServicer_to_server(_Floor(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    app = web.Application()
    app.router.add_post("/serving-endpoints/{name}/invocations", _invocations)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    http_port = site._server.sockets[0].getsockname()[1]
    print(f"grpc=127.0.0.1:{port} http=http://127.0.0.1:{http_port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    event_loop.run(_serve())
