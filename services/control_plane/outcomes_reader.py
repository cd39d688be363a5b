"""The control plane's read of the routers' query outcomes in Redis (services/common/outcomes.py), which the
rollouts judge canaries by."""

from __future__ import annotations

import logging

import redis.asyncio as redis
from redis.exceptions import RedisError

from services.common.logging import OutageLog
from services.common.outcomes import OUTCOMES_KEY_PREFIX, decode_outcomes

log = logging.getLogger(__name__)


class OutcomesReader:
    def __init__(self, redis_url: str, timeout_s: float = 1.0):
        self._client = redis.Redis.from_url(redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._outage = OutageLog(log)

    async def read(self) -> dict[str, dict[str, list[int]]] | None:
        """{router id: {deployment key: counters}} of every live router; None when Redis cannot be read."""
        try:
            keys = [key async for key in self._client.scan_iter(match=OUTCOMES_KEY_PREFIX + "*", count=200)]
            values = await self._client.mget(keys) if keys else []
        except (RedisError, OSError) as exc:
            self._outage.failed("cannot read query outcomes from Redis (%s): rollouts hold their step", exc)
            return None
        self._outage.succeeded("reading query outcomes from Redis again")
        out = {}
        for key, raw in zip(keys, values):
            if raw is not None:   # expired between SCAN and MGET
                router = (key.decode() if isinstance(key, bytes) else key).removeprefix(OUTCOMES_KEY_PREFIX)
                out[router] = decode_outcomes(raw)
        return out

    async def close(self) -> None:
        await self._client.aclose()
