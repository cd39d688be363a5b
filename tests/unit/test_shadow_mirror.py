"""The router's shadow mirror in-process: copies drawn at the shadow's share, a full queue dropping copies
(counted) without the caller waiting, answers compared and counted by outcome; a replica failing counted
as an error."""

from __future__ import annotations

import asyncio
import random

from prometheus_client import CollectorRegistry

from services.common.deployments import EndpointRoutes, RouteTarget
from services.common.errors import ReplicaUnreachable
from services.router.admission import LoadTracker
from services.router.metrics import EndpointMetrics
from services.router.prediction_stream import WorkerReply
from services.router.results import QueryResult
from services.router.shadow import ShadowMirror

LIVE = RouteTarget("live", 100, "k-live", ("127.0.0.1:1",))
SHADOW = RouteTarget("shadow", 0, "k-shadow", ("127.0.0.1:2",), shadow_percentage=50)
ENDPOINT = EndpointRoutes("e", "id", (LIVE, SHADOW))


class Pool:
    def __init__(self, answers):
        self.answers = list(answers)
        self.sent: list[bytes] = []
        self.in_flight: dict[str, int] = {}

    def is_ejected(self, address: str) -> bool:
        return False

    async def predict(self, address, body, content_type, timeout_s):
        assert address == "127.0.0.1:2"   # only the shadow's replicas get copies
        self.sent.append(body)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return WorkerReply(200, answer, "application/json")


class Routing:
    def replica_addresses(self, key):
        return {"k-shadow": SHADOW.replica_addresses}.get(key)


def _counts(registry: CollectorRegistry) -> dict[str, float]:
    return {s.labels["outcome"]: s.value for f in registry.collect() if f.name == "podium_router_shadow_requests"
            for s in f.samples if s.name.endswith("_total")}


def test_copies_follow_the_share_and_a_full_queue_drops_them():
    registry = CollectorRegistry()
    mirror = ShadowMirror(Pool([]), Routing(), LoadTracker(), registry, queue_limit=5, rng=random.Random(1))

    async def offer_many():   # no sender runs: the queue fills, and offer never waits
        for _ in range(1000):
            mirror.offer(ENDPOINT, b"{}", "application/json", QueryResult(b"{}", "application/json", "live"))
    asyncio.run(offer_many())
    counts = _counts(registry)
    assert counts == {"dropped": counts["dropped"]} and 440 <= counts["dropped"] + 5 <= 560   # 50 % ± 6 points


async def test_answers_are_compared_and_failures_counted():
    registry = CollectorRegistry()
    pool = Pool([b'{"predictions": [2.0]}', b'{"predictions": [2.5]}', b'{"predictions": ["x"]}',
                 ReplicaUnreachable("gone")])
    mirror = ShadowMirror(pool, Routing(), LoadTracker(), registry, senders=1, rng=random.Random(0))
    mirror._rng.random = lambda: 0.0   # every query copied
    running = asyncio.create_task(mirror.run())
    for _ in range(4):
        mirror.offer(ENDPOINT, b'{"inputs": [1]}', "application/json",
                     QueryResult(b'{"predictions": [2.0]}', "application/json", "live"))
    for _ in range(200):
        if sum(_counts(registry).values()) == 4:
            break
        await asyncio.sleep(0.01)
    running.cancel()
    assert _counts(registry) == {"equal": 1, "numeric_difference": 1, "different": 1, "error": 1}
    assert pool.sent == [b'{"inputs": [1]}'] * 4
    largest = [s.value for f in registry.collect() if f.name == "podium_router_shadow_max_abs_difference"
               for s in f.samples]
    assert largest == [0.5]


async def test_the_endpoints_metrics_export_carries_its_shadow_comparisons():
    metrics = EndpointMetrics()
    mirror = ShadowMirror(Pool([b'{"predictions": [2.0]}']), Routing(), LoadTracker(), metrics.registry, senders=1)
    mirror._rng.random = lambda: 0.0
    running = asyncio.create_task(mirror.run())
    mirror.offer(ENDPOINT, b"{}", "application/json", QueryResult(b'{"predictions": [2.0]}', "application/json", "live"))
    for _ in range(200):
        if _counts(metrics.registry):
            break
        await asyncio.sleep(0.01)
    running.cancel()
    exported = metrics.export("e").decode()
    assert 'podium_router_shadow_requests_total{endpoint_name="e",outcome="equal",served_entity_name="shadow"} 1.0' \
        in exported
    assert "podium_router_shadow" not in metrics.export("other").decode()


def test_the_queue_is_bounded_in_bytes_too():
    registry = CollectorRegistry()
    mirror = ShadowMirror(Pool([]), Routing(), LoadTracker(), registry, queue_limit=100, max_queued_bytes=1000,
                          rng=random.Random(1))
    mirror._rng.random = lambda: 0.0

    async def offer():
        for _ in range(5):   # 400 bytes each: the third would pass 1000
            mirror.offer(ENDPOINT, b"x" * 300, "application/json", QueryResult(b"y" * 100, "application/json", "live"))
    asyncio.run(offer())
    assert _counts(registry) == {"dropped": 3}
