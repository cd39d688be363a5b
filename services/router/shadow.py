"""Shadow traffic: a copy of a share of an endpoint's queries sent to its shadow served entities, whose
answers are compared with the live ones and never reach the caller (docs/progressive-delivery.md).

The query path only draws and puts the copy in a bounded queue (never awaits it): a full queue drops the
copy, counted. A few tasks take copies off the queue and send them to a replica of the shadow deployment
under the forwarding deadline (their load is counted for the scaler like any query's); each answer is
compared with the live one row by row (policy/shadow_compare.py). Prometheus series, per endpoint and
shadow entity: `podium_router_shadow_requests_total{outcome}` (equal, numeric_difference, different,
error, dropped), `podium_router_shadow_rows_total{comparison}`, and the largest numeric and text-length
differences seen, `podium_router_shadow_max_abs_difference` and `podium_router_shadow_max_length_difference`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.common.deployments import EndpointRoutes, RouteTarget
from services.common.errors import PodiumError
from services.router.policy.replica_choice import pick_replica
from services.router.policy.shadow_compare import DIFFERENT, EQUAL, NUMERIC, compare_answers

if TYPE_CHECKING:
    from services.router.admission import LoadTracker
    from services.router.backends import RoutingTableFollower, WorkerPool
    from services.router.results import QueryResult

log = logging.getLogger(__name__)

LABELS = ("endpoint_name", "served_entity_name")


@dataclass(frozen=True)
class ShadowCopy:
    endpoint_name: str
    route: RouteTarget
    body: bytes
    content_type: str
    live_body: bytes


class ShadowMirror:
    def __init__(self, pool: "WorkerPool", routing: "RoutingTableFollower", tracker: "LoadTracker",
                 registry: CollectorRegistry, *, queue_limit: int = 100, senders: int = 4, timeout_s: float = 30.0,
                 max_queued_bytes: int = 64 * 1024 * 1024, rng: random.Random | None = None):
        self._pool, self._routing, self._tracker = pool, routing, tracker
        self._queue: asyncio.Queue[ShadowCopy] = asyncio.Queue(maxsize=queue_limit)
        # Bodies may be large (16 MB each): the queue is bounded in bytes as well as in copies.
        self._max_queued_bytes, self._queued_bytes = max_queued_bytes, 0
        self._senders, self._timeout_s = senders, timeout_s
        self._rng = rng or random.Random()
        self._requests = Counter("podium_router_shadow_requests", "Copies of queries for shadow served entities, "
                                 "by outcome", LABELS + ("outcome",), registry=registry)
        self._rows = Counter("podium_router_shadow_rows", "Rows of shadow answers compared with the live ones",
                             LABELS + ("comparison",), registry=registry)
        self._largest = Gauge("podium_router_shadow_max_abs_difference", "The largest numeric difference of a "
                              "shadow answer from the live one", LABELS, registry=registry)
        self._longest = Gauge("podium_router_shadow_max_length_difference", "The largest difference in length, "
                              "in characters, of a shadow's text answer from the live one", LABELS, registry=registry)
        self._max: dict[tuple[str, str], float] = {}
        self._max_length: dict[tuple[str, str], int] = {}

    def offer(self, endpoint: EndpointRoutes, body: bytes, content_type: str, result: "QueryResult") -> None:
        """Queues a copy of an answered query for each of the endpoint's shadow entities its draw picks."""
        for route in endpoint.routes:
            if route.shadow_percentage <= 0 or self._rng.random() * 100 >= route.shadow_percentage:
                continue
            size = len(body) + len(result.body)
            if self._queue.full() or self._queued_bytes + size > self._max_queued_bytes:
                self._count(endpoint.name, route, "dropped")   # under pressure the shadow loses copies, never
                continue                                       # the caller time
            self._queue.put_nowait(ShadowCopy(endpoint.name, route, body, content_type, result.body))
            self._queued_bytes += size

    async def run(self) -> None:
        async with asyncio.TaskGroup() as senders:
            for _ in range(self._senders):
                senders.create_task(self._send_forever())

    async def _send_forever(self) -> None:
        while True:
            copy = await self._queue.get()
            self._queued_bytes -= len(copy.body) + len(copy.live_body)
            try:
                await self._send(copy)
            except Exception:   # one copy's failure is counted and never stops the sender
                log.exception("shadow copy failed")
                self._count(copy.endpoint_name, copy.route, "error")

    async def _send(self, copy: ShadowCopy) -> None:
        addresses = self._routing.replica_addresses(copy.route.deployment_key) or ()
        address = pick_replica([a for a in addresses if not self._pool.is_ejected(a)] or list(addresses),
                               self._pool.in_flight, self._rng.randint)
        if address is None:   # no ready replica: a copy never waits for one
            self._count(copy.endpoint_name, copy.route, "dropped")
            return
        try:
            with self._tracker.track(copy.route.deployment_key):
                reply = await self._pool.predict(address, copy.body, copy.content_type or "application/json",
                                                 self._timeout_s)
        except (PodiumError, asyncio.TimeoutError):
            self._count(copy.endpoint_name, copy.route, "error")
            return
        if reply.http_status != 200:
            self._count(copy.endpoint_name, copy.route, "error")
            return
        comparison = compare_answers(copy.live_body, reply.body)
        self._count(copy.endpoint_name, copy.route, comparison.verdict)
        labels = (copy.endpoint_name, copy.route.served_entity_name)
        for name, rows in ((EQUAL, comparison.rows_equal), (NUMERIC, comparison.rows_numeric),
                           (DIFFERENT, comparison.rows_different)):
            if rows:
                self._rows.labels(*labels, name).inc(rows)
        if comparison.verdict == NUMERIC and comparison.max_abs_difference > self._max.get(labels, 0.0):
            self._max[labels] = comparison.max_abs_difference
            self._largest.labels(*labels).set(comparison.max_abs_difference)
        if comparison.max_length_difference > self._max_length.get(labels, 0):
            self._max_length[labels] = comparison.max_length_difference
            self._longest.labels(*labels).set(comparison.max_length_difference)

    def _count(self, endpoint_name: str, route: RouteTarget, outcome: str) -> None:
        self._requests.labels(endpoint_name, route.served_entity_name, outcome).inc()
