"""A replica that crashes on a request: the router re-sends it once, never to every replica in turn."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from aiohttp.test_utils import TestClient, TestServer

from services.router.rest import build_app
from tests.support.router import StandaloneRouter, invoke

_CRASHING_WORKER = """
import asyncio, os, sys
import grpc
from podium_api.v1 import worker_pb2_grpc

class Crashing(worker_pb2_grpc.WorkerServicer):
    async def PredictStream(self, frames, context):
        async for frame in frames:
            os._exit(1)   # the model takes the process down mid-request
        yield

async def main():
    server = grpc.aio.server()
    worker_pb2_grpc.add_WorkerServicer_to_server(Crashing(), server)
    print(server.add_insecure_port("127.0.0.1:0"), flush=True)
    await server.start()
    await server.wait_for_termination()

asyncio.run(main())
"""


async def test_a_request_that_crashes_its_replica_is_resent_once_only():
    """Predictions are re-sent when a replica dies mid-call, but only once: a poison request must not
    take down every replica of the served entity in turn."""
    workers = [subprocess.Popen([sys.executable, "-c", _CRASHING_WORKER], stdout=subprocess.PIPE) for _ in range(3)]
    try:
        addresses = [f"127.0.0.1:{int(w.stdout.readline())}" for w in workers]
        router = StandaloneRouter(queue_limit=10, timeout_s=30)
        router.route_to(*addresses)
        async with TestClient(TestServer(build_app(router.gateway, 1 << 20))) as client:
            status, retry_after, body = await asyncio.wait_for(invoke(client), 20)
        assert (status, body["error_code"]) == (503, "TEMPORARILY_UNAVAILABLE"), body
        assert retry_after is not None
        for worker in workers:
            try:
                worker.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        assert sorted(w.poll() is None for w in workers) == [False, False, True]   # two crashed, one untouched
        await router.pool.close()
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
