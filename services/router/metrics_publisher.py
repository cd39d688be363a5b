"""Publishes this router's load per served entity to Redis, for the scaler, and its query outcomes per
deployment (services/common/outcomes.py), for the control plane's rollouts.

One SET with a TTL per interval (never a Redis call per request), and at once when a request starts
waiting for a replica, together with a PUBLISH that wakes the scaler. Redis being down only loses
metrics: the query path never awaits anything here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

import redis.asyncio as redis
from redis.exceptions import RedisError

from services.common.load_metrics import WAKE_CHANNEL, encode_load, load_key
from services.common.outcomes import Outcomes, encode_outcomes, outcomes_key
from services.common.logging import OutageLog
from services.router.admission import LoadTracker

log = logging.getLogger(__name__)


class MetricsPublisher:
    def __init__(self, redis_url: str, tracker: LoadTracker, *, interval_s: float, ttl_s: float,
                 router_id: str | None = None, outcomes: dict[str, Outcomes] | None = None):
        self.router_id = router_id or secrets.token_hex(6)
        self._outcomes = outcomes   # per deployment, for the control plane's rollouts (the same SET cadence)
        self._client = redis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._tracker = tracker
        self._interval_s = interval_s
        self._ttl_ms = max(int(ttl_s * 1000), 1)
        self._kick = asyncio.Event()
        self._waiting: set[str] = set()
        self._outage = OutageLog(log)

    def request_wake(self, deployment_key: str) -> None:
        """A request is waiting for a replica of this deployment: publish now and wake the scaler."""
        self._waiting.add(deployment_key)
        self._kick.set()

    async def run(self) -> None:
        min_gap_s = min(0.05, self._interval_s)  # a burst of waiting requests is one publish, not one each
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self._interval_s)
            self._kick.clear()
            waiting, self._waiting = self._waiting, set()
            await self.publish_once(waiting)
            await asyncio.sleep(min_gap_s)

    async def publish_once(self, waiting: set[str] = frozenset()) -> bool:
        payload = encode_load(self._tracker.snapshot())
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.set(load_key(self.router_id), payload, px=self._ttl_ms)
                if self._outcomes:
                    pipe.set(outcomes_key(self.router_id), encode_outcomes(self._outcomes), px=self._ttl_ms)
                for key in sorted(waiting):
                    pipe.publish(WAKE_CHANNEL, key)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._outage.failed("cannot publish load metrics to Redis (%s); queries are still served", exc)
            return False
        self._outage.succeeded("publishing load metrics to Redis again")
        return True

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._client.delete(load_key(self.router_id), outcomes_key(self.router_id))  # ours leave with us
        await self._client.aclose()
