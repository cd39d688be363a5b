"""The router's shadow mirror in-process: copies drawn at the shadow's share, a full queue dropping copies
(counted) without the caller waiting, answers compared and counted by outcome; a replica failing counted
as an error; comparisons written to the inference table and published for rollouts; which queries are copied."""

from __future__ import annotations

import asyncio
import dataclasses
import random

import pytest
from prometheus_client import CollectorRegistry

from services.common.deployments import EndpointRoutes, RouteTarget
from services.common.errors import ReplicaUnreachable
from services.common.gateway_routes import GatewayPolicy
from services.common.guardrail_rules import GuardrailSide, Guardrails
from services.common.outcomes import shadow_key
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


class Log:
    def __init__(self):
        self.records = []

    def record(self, record):
        self.records.append(record)


async def _settle(mirror: ShadowMirror, registry: CollectorRegistry, count: int) -> None:
    running = asyncio.create_task(mirror.run())
    for _ in range(200):
        if sum(_counts(registry).values()) >= count:
            break
        await asyncio.sleep(0.01)
    running.cancel()


async def test_an_inference_table_gets_each_comparison_under_the_live_request_id():
    registry, log, outcomes = CollectorRegistry(), Log(), {}
    pool = Pool([b'{"predictions": [1]}', b'{"predictions": [2]}', ReplicaUnreachable("gone")])
    mirror = ShadowMirror(pool, Routing(), LoadTracker(), registry, senders=1, outcomes=outcomes,
                          inference_log=log, clock=lambda: 1000.0)
    mirror._rng.random = lambda: 0.0
    recorded = dataclasses.replace(ENDPOINT, gateway=GatewayPolicy(inference_table=True))
    for request_id in ("r-1", "r-2", "r-3"):
        mirror.offer(recorded, b'{"inputs": [1]}', "application/json",
                     QueryResult(b'{"predictions": [1]}', "application/json", "live", request_id=request_id),
                     live_key="k-live")
    await _settle(mirror, registry, 3)
    rows = [(r.request_id, r.endpoint_id, r.served_entity_name, r.status_code, r.response, r.logging_error_codes,
             r.timestamp_ms) for r in log.records]
    assert rows == [("r-1", "id", "shadow", 200, b'{"predictions": [1]}', ["SHADOW_EQUAL"], 1_000_000),
                    ("r-2", "id", "shadow", 200, b'{"predictions": [2]}', ["SHADOW_DIFFERENT"], 1_000_000),
                    ("r-3", "id", "shadow", 503, b"", ["SHADOW_ERROR"], 1_000_000)]
    assert all(r.request == b'{"inputs": [1]}' and r.requester == "" for r in log.records)
    # ... and the same verdicts are published per shadow deployment, for a rollout's shadow gate
    assert outcomes[shadow_key("k-shadow")].as_list() == [1, 0, 1, 1, 0, 0, 0]


async def test_without_an_inference_table_nothing_is_recorded_but_outcomes_are_published():
    registry, log, outcomes = CollectorRegistry(), Log(), {}
    mirror = ShadowMirror(Pool([b'{"predictions": [1]}']), Routing(), LoadTracker(), registry, senders=1,
                          outcomes=outcomes, inference_log=log)
    mirror._rng.random = lambda: 0.0
    mirror.offer(ENDPOINT, b"{}", "application/json", QueryResult(b'{"predictions": [1]}', "application/json", "live"))
    await _settle(mirror, registry, 1)
    assert log.records == [] and outcomes[shadow_key("k-shadow")].as_list() == [1, 0, 0, 0, 0, 0, 0]


@pytest.mark.parametrize("endpoint, live_key, copied", [
    pytest.param(ENDPOINT, "k-live", True, id="plain endpoint"),
    pytest.param(dataclasses.replace(ENDPOINT, gateway=GatewayPolicy(usage_tracking=True)), "k-live", True,
                 id="AI gateway without guardrails"),
    pytest.param(dataclasses.replace(ENDPOINT, gateway=GatewayPolicy(guardrails=Guardrails(
        input=GuardrailSide(pii="MASK")))), "k-live", False, id="input guardrail rewrites what the model is sent"),
    pytest.param(dataclasses.replace(ENDPOINT, gateway=GatewayPolicy(guardrails=Guardrails(
        output=GuardrailSide(invalid_keywords=("x",))))), "k-live", False, id="output guardrail"),
    pytest.param(dataclasses.replace(ENDPOINT, gateway=GatewayPolicy(task="llm/v1/chat")), "k-live", False,
                 id="external model"),
    pytest.param(ENDPOINT, "k-shadow", False, id="the shadow answered live: never compared with itself"),
])
def test_which_queries_are_copied(endpoint, live_key, copied):
    registry = CollectorRegistry()
    mirror = ShadowMirror(Pool([]), Routing(), LoadTracker(), registry, max_queued_bytes=0)
    mirror._rng.random = lambda: 0.0

    async def offer():   # no byte may queue: a copy that is made is counted as dropped at once
        mirror.offer(endpoint, b"{}", "application/json", QueryResult(b"{}", "application/json", "live"),
                     live_key=live_key)
    asyncio.run(offer())
    assert _counts(registry) == ({"dropped": 1} if copied else {})
