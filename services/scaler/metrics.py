"""The scaler's view of the routers' load, read from Redis, and the wake-up channel.

`LoadReader.read()` sums every live router's key into one LoadSample per deployment; it returns None when
Redis cannot be read, which the policy answers by holding replica counts (never scaling to zero blind).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as redis
from redis.exceptions import RedisError

from services.common.load_metrics import LOAD_KEY_PREFIX, WAKE_CHANNEL, decode_load
from services.common.logging import OutageLog
from services.scaler.policy import LoadSample

log = logging.getLogger(__name__)


class LoadReader:
    def __init__(self, redis_url: str, timeout_s: float = 1.0):
        self._client = redis.Redis.from_url(redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._url = redis_url
        # Last arrivals count per (router, deployment) and when it was read, for arrival rates.
        self._arrivals: dict[tuple[str, str], int] = {}
        self._read_at: float | None = None
        self._outage = OutageLog(log)

    async def read(self, now: float) -> dict[str, LoadSample] | None:
        """Load per deployment key at `now` (monotonic), summed over routers; None if Redis is unreadable."""
        try:
            keys = [key async for key in self._client.scan_iter(match=LOAD_KEY_PREFIX + "*", count=200)]
            values = await self._client.mget(keys) if keys else []
        except (RedisError, OSError) as exc:
            self._outage.failed("cannot read load metrics from Redis (%s): holding replica counts", exc)
            return None
        self._outage.succeeded("reading load metrics from Redis again")
        elapsed = None if self._read_at is None else max(now - self._read_at, 1e-3)
        self._read_at = now
        totals: dict[str, list[float]] = {}
        arrivals: dict[tuple[str, str], int] = {}
        for key, raw in zip(keys, values):
            if raw is None:  # expired between SCAN and MGET
                continue
            router = (key.decode() if isinstance(key, bytes) else key).removeprefix(LOAD_KEY_PREFIX)
            for deployment, report in decode_load(raw).items():
                total = totals.setdefault(deployment, [0.0, 0, 0.0])
                total[0] += max(report.mean_in_flight, report.in_flight)
                total[1] += report.queued
                before = self._arrivals.get((router, deployment))
                arrivals[(router, deployment)] = report.arrivals
                if before is not None and elapsed is not None:
                    # A counter that went down belongs to a restarted router: all its arrivals are new.
                    new = report.arrivals - before if report.arrivals >= before else report.arrivals
                    total[2] += new / elapsed
        self._arrivals = arrivals
        return {key: LoadSample(now, concurrency, int(queued), rate) for key, (concurrency, queued, rate) in totals.items()}

    async def listen_for_wakes(self, on_wake: Callable[[str], None], retry_s: float = 1.0) -> None:
        """Calls on_wake(deployment key) for every wake-up a router publishes; reconnects while Redis is away."""
        # Its own connection, without a read timeout: a subscriber waits for messages indefinitely.
        client = redis.Redis.from_url(self._url, socket_connect_timeout=1.0)
        try:
            while True:
                pubsub = client.pubsub()
                try:
                    await pubsub.subscribe(WAKE_CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            data = message.get("data")
                            on_wake(data.decode() if isinstance(data, bytes) else str(data))
                except (RedisError, OSError):
                    pass  # read() reports the outage; subscribe again shortly
                finally:
                    with contextlib.suppress(RedisError, OSError):
                        await pubsub.aclose()
                await asyncio.sleep(retry_s)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    async def close(self) -> None:
        await self._client.aclose()
