"""Load accounting per served entity, and the bounded queue where requests wait for a replica.

The query path only touches in-memory counters here (never Redis): `metrics_publisher.py` snapshots them
on an interval. A request for a served entity with no replica that can take it (scaled to zero, all
replicas gone) waits in `Admission.wait` until the routing table brings one, the queue is full or its
deadline passes; the last two answer 503 TEMPORARILY_UNAVAILABLE with Retry-After, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.common.errors import Unavailable
from services.common.load_metrics import EntityLoadReport

if TYPE_CHECKING:
    from services.common.deployments import RouteTarget
    from services.router.backends import RoutingTableFollower


@dataclass
class _EntityLoad:
    in_flight: int = 0       # requests inside this router for the entity: being served or waiting
    queued: int = 0          # of those, waiting for a replica
    arrivals: int = 0        # since this router started (monotonic: the reader takes differences)
    area: float = 0.0        # ∫ in_flight dt since the last snapshot, for the mean
    changed_at: float = 0.0  # when in_flight last changed


class LoadTracker:
    """Counts per deployment key; every method is O(1) and synchronous (it runs on the query path)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._entities: dict[str, _EntityLoad] = {}
        self._snapshot_at = clock()

    def _entity(self, key: str) -> _EntityLoad:
        entity = self._entities.get(key)
        if entity is None:
            entity = self._entities[key] = _EntityLoad(changed_at=self._clock())
        return entity

    def _move(self, entity: _EntityLoad, delta: int) -> None:
        now = self._clock()
        entity.area += entity.in_flight * (now - entity.changed_at)
        entity.changed_at = now
        entity.in_flight += delta

    @contextlib.contextmanager
    def track(self, key: str) -> Iterator[None]:
        """Counts one request for `key` from its arrival until it is answered (or fails)."""
        entity = self._entity(key)
        entity.arrivals += 1
        self._move(entity, +1)
        try:
            yield
        finally:
            self._move(entity, -1)

    def in_flight(self, key: str) -> int:
        entity = self._entities.get(key)
        return entity.in_flight if entity else 0

    def queued(self, key: str) -> int:
        entity = self._entities.get(key)
        return entity.queued if entity else 0

    def current(self) -> list[tuple[str, int, int]]:
        """(deployment key, in flight, queued) of every tracked deployment, now (for the metrics scrape)."""
        return [(key, e.in_flight, e.queued) for key, e in list(self._entities.items())]

    def add_queued(self, key: str, delta: int) -> None:
        self._entity(key).queued += delta

    def retain(self, keys: set[str]) -> None:
        """Forgets deployments that left the routing table and have nothing in flight."""
        for key in [k for k, e in self._entities.items() if k not in keys and e.in_flight == 0]:
            del self._entities[key]

    def snapshot(self) -> dict[str, EntityLoadReport]:
        """Load per deployment key since the previous snapshot (mean in-flight over that period)."""
        now = self._clock()
        period = max(now - self._snapshot_at, 1e-6)
        self._snapshot_at = now
        out = {}
        for key, entity in self._entities.items():
            self._move(entity, 0)
            out[key] = EntityLoadReport(mean_in_flight=entity.area / period, in_flight=entity.in_flight,
                                        queued=entity.queued, arrivals=entity.arrivals)
            entity.area = 0.0
        return out


class Admission:
    """Where a request waits for a replica: at most `queue_limit` per deployment, each until its deadline."""

    def __init__(self, tracker: LoadTracker, *, queue_limit: int, timeout_s: float,
                 on_queued: Callable[[str], None] = lambda key: None, clock: Callable[[], float] = time.monotonic):
        self.tracker = self._tracker = tracker
        self._queue_limit = queue_limit
        self._timeout_s = timeout_s
        self._on_queued = on_queued
        self._clock = clock
        self._changed = asyncio.Event()

    def deadline(self) -> float:
        return self._clock() + self._timeout_s

    def routes_changed(self) -> None:
        """Wakes every waiting request to look at the new routing table."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, key: str, is_servable: Callable[[], bool], deadline: float) -> None:
        """Returns once is_servable() holds; raises Unavailable when the queue is full or at the deadline.

        Queuing signals the scaler at once (`on_queued`: the metrics publisher, which never blocks us).
        """
        if self._tracker.queued(key) >= self._queue_limit:
            raise Unavailable(f"Too many requests are waiting for a replica of this served entity "
                              f"({self._queue_limit}); retry shortly", retry_after_s=1)
        self._tracker.add_queued(key, +1)
        try:
            self._on_queued(key)
            while not is_servable():
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise Unavailable(f"No replica became ready within {self._timeout_s:g} s; the served entity "
                                      "is still scaling up, retry shortly", retry_after_s=5)
                changed = self._changed
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), remaining)
        finally:
            self._tracker.add_queued(key, -1)


def has_untried(routing: "RoutingTableFollower", route: "RouteTarget", tried: set[str]) -> Callable[[], bool]:
    """The condition a request waiting for a replica of `route` waits on: the routing table shows one it has
    not tried yet (or drops the route: the config changed)."""
    def check() -> bool:
        addresses = routing.replica_addresses(route.deployment_key)
        return addresses is None or any(a not in tried for a in addresses)
    return check
