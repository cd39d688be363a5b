"""Rate limits enforced in Redis, so every router replica draws on the same budgets.

One Lua script refills, checks and takes from all the buckets a request draws on, atomically, on Redis's
own clock (routers' clocks may disagree). Its arithmetic is services/router/policy/rate_limit.py `take`,
line for line; tests/stack/test_rate_limit.py runs both on the same inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.common.errors import RateLimited, Unavailable
from services.common.gateway_routes import EntityPrice, RateLimitRule
from services.common.logging import OutageLog
from services.common.principals import Principal
from services.router.budgets import SpendCharge, SpendMeter
from services.router.policy.rate_limit import (
    Budget, Draw, TOKENS, admission_draws, budgets_for, retry_after_s, usage_draws,
)

log = logging.getLogger(__name__)

# KEYS: one hash per bucket {l: level, t: updated_at_ms}. ARGV[1]: now in ms ("" = Redis's clock), then five
# per bucket: capacity, period_ms, need, cost, force. Returns {admitted, retry_after_ms, worst index}.
# Levels are written with %.17g so they read back exactly (Lua's default tostring keeps 14 digits).
TAKE_SCRIPT = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local levels, stamps = {}, {}
local retry, worst = 0, -1
for i, key in ipairs(KEYS) do
  local b = 1 + (i - 1) * 5
  local capacity, period = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local need, force = tonumber(ARGV[b + 3]), ARGV[b + 5] == '1'
  local state = redis.call('HMGET', key, 'l', 't')
  local level, stamp = capacity, now
  if state[1] then
    local updated = tonumber(state[2])
    stamp = math.max(now, updated)
    level = math.min(capacity, tonumber(state[1]) + (stamp - updated) * capacity / period)
  end
  levels[i], stamps[i] = level, stamp
  if not force and level < need then
    local wait = period
    if capacity > 0 then wait = math.ceil((need - level) * period / capacity) end
    if wait > retry then retry, worst = wait, i - 1 end
  end
end
if retry > 0 then return {0, retry, worst} end
for i, key in ipairs(KEYS) do
  local b = 1 + (i - 1) * 5
  local capacity, period, cost = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 4])
  local level = levels[i] - cost
  redis.call('HSET', key, 'l', string.format('%.17g', level), 't', string.format('%d', stamps[i]))
  -- A missing bucket reads as full: let it vanish once it would have refilled.
  local ttl = period
  if capacity > 0 then ttl = math.ceil((capacity - level) * period / capacity) end
  redis.call('PEXPIRE', key, ttl + 1000)
end
return {1, 0, -1}
"""


class RedisBuckets:
    """The script, run against one Redis (a URL: redis://, rediss:// or unix://)."""

    def __init__(self, redis_url: str, timeout_s: float):
        self._redis = aioredis.Redis.from_url(redis_url, socket_timeout=timeout_s,
                                              socket_connect_timeout=timeout_s)
        self._script = self._redis.register_script(TAKE_SCRIPT)

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

    async def take(self, keys: Sequence[str], draws: Sequence[Draw], now_ms: int | None = None
                   ) -> tuple[bool, int, int]:
        args: list[str] = ["" if now_ms is None else str(now_ms)]
        for d in draws:
            args += [repr(float(d.capacity)), str(d.period_ms), repr(float(d.need)), repr(float(d.cost)),
                     "1" if d.force else "0"]
        admitted, retry_ms, worst = await self._script(keys=list(keys), args=args)
        return bool(admitted), int(retry_ms), int(worst)

    async def close(self) -> None:
        await self._redis.aclose()


class RateLimiter:
    """Admits requests against an endpoint's limits, and charges tokens once an answer says how many. Its
    `spend` admits against the endpoint's spend budgets, on the same Redis."""

    def __init__(self, buckets: RedisBuckets | None, *, is_fail_open: bool = True):
        self._buckets = buckets
        self.spend = SpendMeter(buckets.redis if buckets is not None else None, is_fail_open=is_fail_open)
        # PODIUM_REDIS_FAILURE_MODE: while Redis cannot be reached, admit unmetered ("open") or answer 503
        # ("closed"). Either way the query path waits at most rate_limit_timeout_s on Redis.
        self._is_fail_open = is_fail_open
        self._outage = OutageLog(log)

    @staticmethod
    def _keys(endpoint_id: str, budgets: Sequence[Budget]) -> list[str]:
        # {endpoint_id}: a Redis Cluster hash tag, so one request's buckets share a slot.
        return [f"podium:rl:{{{endpoint_id}}}:{b.name}" for b in budgets]

    async def admit(self, endpoint_name: str, endpoint_id: str, rules: Sequence[RateLimitRule],
                    caller: Principal) -> list[Budget]:
        """The budgets drawn on (to charge tokens to later); raises RateLimited with Retry-After."""
        budgets = budgets_for(rules, caller)
        if not budgets:
            return budgets
        if self._buckets is None:
            raise Unavailable(f"Endpoint '{endpoint_name}' has rate limits but this router has no Redis "
                              "to enforce them (set PODIUM_REDIS_URL)", retry_after_s=5)
        try:
            admitted, retry_ms, worst = await self._buckets.take(
                self._keys(endpoint_id, budgets), admission_draws(budgets))
        except (RedisError, OSError) as exc:
            self._outage.failed("rate-limit store unreachable (%s): %s", type(exc).__name__,
                                "admitting requests unmetered" if self._is_fail_open else "refusing rate-limited requests")
            if self._is_fail_open:
                return []   # nothing was drawn, so nothing is charged afterwards
            raise Unavailable("The rate-limit store is unreachable; try again shortly", retry_after_s=1) from None
        self._outage.succeeded("rate-limit store reachable again")
        if not admitted:
            raise RateLimited(f"Rate limit exceeded for endpoint '{endpoint_name}': "
                              f"{budgets[worst].describe()}", retry_after_s=retry_after_s(retry_ms))
        return budgets

    async def charge(self, endpoint_id: str, budgets: Sequence[Budget | SpendCharge], input_tokens: int,
                     output_tokens: int, price: EntityPrice | None) -> None:
        """Charges an answer's tokens to the rate limits and its cost to the spend budgets it was admitted by."""
        await self.charge_tokens(endpoint_id, [b for b in budgets if isinstance(b, Budget)],
                                 input_tokens + output_tokens)
        await self.spend.charge(endpoint_id, [b for b in budgets if isinstance(b, SpendCharge)], input_tokens,
                                output_tokens, price)

    async def charge_tokens(self, endpoint_id: str, budgets: Sequence[Budget], tokens_used: int) -> None:
        token_budgets = [b for b in budgets if b.kind == TOKENS]
        if not token_budgets or tokens_used <= 0 or self._buckets is None:
            return
        try:
            await self._buckets.take(self._keys(endpoint_id, token_budgets), usage_draws(token_budgets, tokens_used))
        except (RedisError, OSError) as exc:  # the answer is already given: note it and go on
            log.warning("could not charge %d tokens to the rate-limit store: %s", tokens_used, type(exc).__name__)

    async def close(self) -> None:
        if self._buckets is not None:
            await self._buckets.close()
