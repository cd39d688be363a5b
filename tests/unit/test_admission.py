"""Scale from zero at the router: a request for a served entity without a replica waits in a bounded queue,
signals the scaler, and is answered once a replica is routed; a full queue or a passed deadline answers 503
TEMPORARILY_UNAVAILABLE with Retry-After at once, never a hang. Real aiohttp and gRPC servers on port 0;
the routing table is fed as the control plane's stream would feed it."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from aiohttp.test_utils import TestClient, TestServer

from podium_api.v1 import worker_pb2, worker_pb2_grpc
from services.router.admission import LoadTracker
from services.router.backends import WorkerPool
from services.router.rest import build_app
from tests.support.router import TOKEN, StandaloneRouter, invoke


class _Worker(worker_pb2_grpc.WorkerServicer):
    """Stands in for a worker replica: answers every prediction with its own name."""

    def __init__(self, name: str):
        self.name = name

    async def PredictStream(self, request_iterator, context):  # noqa: N802 - gRPC method name
        body = b'{"predictions": ["%s"]}' % self.name.encode()
        async for frame in request_iterator:
            yield worker_pb2.PredictReplyFrame(items=[
                worker_pb2.PredictItemReply(id=item.id, http_status=200, body=body, content_type="application/json")
                for item in frame.items])


@pytest.fixture
async def worker_address():
    server = grpc.aio.server()
    worker = _Worker("replica-1")
    worker_pb2_grpc.add_WorkerServicer_to_server(worker, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(grace=None)


async def test_a_request_waits_for_the_first_replica_and_signals_the_scaler(worker_address):
    router = StandaloneRouter(queue_limit=10, timeout_s=30)
    async with TestClient(TestServer(build_app(router.gateway, 1 << 20))) as client:
        waiting = asyncio.ensure_future(invoke(client))
        await _until(lambda: router.tracker.queued("key-1") == 1)
        assert router.woken == ["key-1"]  # the scaler is told at once
        snapshot = router.tracker.snapshot()["key-1"]
        assert (snapshot.in_flight, snapshot.queued, snapshot.arrivals) == (1, 1, 1)
        assert not waiting.done()
        router.route_to(worker_address)  # the scaler started a replica; the control plane routed it
        status, _, body = await asyncio.wait_for(waiting, 5)
        assert (status, body) == (200, {"predictions": ["replica-1"]})
        assert router.tracker.queued("key-1") == 0
        assert router.tracker.snapshot()["key-1"].in_flight == 0
        await router.pool.close()


async def test_a_full_queue_answers_503_with_retry_after_at_once():
    router = StandaloneRouter(queue_limit=2, timeout_s=30)
    async with TestClient(TestServer(build_app(router.gateway, 1 << 20))) as client:
        waiting = [asyncio.ensure_future(invoke(client)) for _ in range(2)]
        await _until(lambda: router.tracker.queued("key-1") == 2)
        started = time.monotonic()
        status, retry_after, body = await invoke(client)
        assert time.monotonic() - started < 1.0
        assert (status, body["error_code"]) == (503, "TEMPORARILY_UNAVAILABLE")
        assert int(retry_after) >= 1 and "waiting" in body["message"]
        for request in waiting:
            request.cancel()


async def test_a_passed_deadline_answers_503_with_retry_after():
    router = StandaloneRouter(queue_limit=10, timeout_s=0.5)
    async with TestClient(TestServer(build_app(router.gateway, 1 << 20))) as client:
        started = time.monotonic()
        status, retry_after, body = await invoke(client)
        assert 0.5 <= time.monotonic() - started < 3.0
        assert (status, body["error_code"]) == (503, "TEMPORARILY_UNAVAILABLE")
        assert int(retry_after) >= 1
        assert router.tracker.queued("key-1") == 0


async def test_an_unreachable_replica_is_skipped_and_the_request_waits_for_a_live_one(worker_address):
    router = StandaloneRouter(queue_limit=10, timeout_s=30)
    router.route_to("127.0.0.1:1")  # nothing listens there: processed nothing, safe to try elsewhere
    async with TestClient(TestServer(build_app(router.gateway, 1 << 20))) as client:
        waiting = asyncio.ensure_future(invoke(client))
        await _until(lambda: router.tracker.queued("key-1") == 1)
        router.route_to("127.0.0.1:1", worker_address)
        status, _, body = await asyncio.wait_for(waiting, 5)
        assert (status, body) == (200, {"predictions": ["replica-1"]})
        await router.pool.close()


async def test_the_grpc_edge_answers_unavailable_for_a_full_queue():
    from podium_api.v1 import query_pb2, query_pb2_grpc
    from services.router.grpc_api import QueryServicer

    router = StandaloneRouter(queue_limit=1, timeout_s=30)
    server = grpc.aio.server()
    query_pb2_grpc.add_QueryServicer_to_server(QueryServicer(router.gateway), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = query_pb2_grpc.QueryStub(channel)
            first = asyncio.ensure_future(stub.Invoke(query_pb2.InvokeRequest(endpoint="e", body=b"{}"), timeout=30,
                                                  metadata=(("authorization", f"Bearer {TOKEN}"),)))
            await _until(lambda: router.tracker.queued("key-1") == 1)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Invoke(query_pb2.InvokeRequest(endpoint="e", body=b"{}"), timeout=5,
                                  metadata=(("authorization", f"Bearer {TOKEN}"),))
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert ("error-code", "TEMPORARILY_UNAVAILABLE") in tuple(refused.value.trailing_metadata() or ())
            first.cancel()
    finally:
        await server.stop(grace=None)


def test_load_tracker_reports_the_mean_in_flight_over_the_interval():
    now = [0.0]
    tracker = LoadTracker(clock=lambda: now[0])
    with tracker.track("k"):
        now[0] = 1.0
        with tracker.track("k"):
            now[0] = 2.0
        now[0] = 4.0
    report = tracker.snapshot()["k"]
    assert report.mean_in_flight == pytest.approx((1 * 1 + 2 * 1 + 1 * 2) / 4.0)
    assert (report.in_flight, report.arrivals) == (0, 2)
    now[0] = 6.0
    assert tracker.snapshot()["k"].mean_in_flight == 0.0  # a new interval
    tracker.retain(set())
    assert tracker.snapshot() == {}


async def _until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_requests_beyond_the_concurrency_bound_are_503_json_at_once():
    from aiohttp import web

    from services.router.rest import concurrency_limit, error_middleware

    release = asyncio.Event()
    inside = []

    async def slow(request):
        inside.append(request)
        await release.wait()
        return web.json_response({"ok": True})
    app = web.Application(middlewares=[error_middleware, concurrency_limit(2)])
    app.router.add_get("/slow", slow)
    async with TestClient(TestServer(app)) as client:
        held = [asyncio.ensure_future(client.get("/slow")) for _ in range(2)]
        await _until(lambda: len(inside) == 2)  # both inside the handler now
        refused = await client.get("/slow")
        assert refused.status == 503 and refused.headers["Retry-After"] == "1"
        assert (await refused.json())["error_code"] == "TEMPORARILY_UNAVAILABLE"
        release.set()
        assert [r.status for r in await asyncio.gather(*held)] == [200, 200]
        assert (await client.get("/slow")).status == 200   # the slots were given back


async def test_an_unreachable_replica_is_ejected_until_the_table_drops_it_or_the_time_passes():
    pool = WorkerPool(eject_s=0.2)
    pool.eject("10.0.0.1:1")
    assert pool.is_ejected("10.0.0.1:1") and not pool.is_ejected("10.0.0.2:1")
    await asyncio.sleep(0.25)
    assert not pool.is_ejected("10.0.0.1:1")   # a blip: it gets requests again
    pool.eject("10.0.0.1:1")
    pool.keep_only({"10.0.0.2:1"})              # gone from the routing table: forgotten (bounded memory)
    assert not pool.is_ejected("10.0.0.1:1")    # (within eject_s: only keep_only can have cleared it)
