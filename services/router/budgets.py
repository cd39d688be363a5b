"""Spend budgets kept in Redis, so every router replica counts against the same spent amounts.

One hash per budget and scope, {w: the window's start in ms, s: spent in it}, named by Spend.name under the
endpoint's id. Admission reads Redis's clock and the hashes in one round trip and decides in Python
(services/router/policy/budget.py); the answer's cost is added by one Lua script that starts the amount afresh
when the stored window is an earlier one, so two routers never lose each other's charges. A hash expires when
its window ends.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.common.errors import RateLimited, Unavailable
from services.common.gateway_routes import BudgetRule, EntityPrice
from services.common.logging import OutageLog
from services.common.principals import Principal
from services.router.policy.budget import (
    Spend, Window, cost_of, first_over, format_amount, report, retry_after_s, spends_for, spent_in, window_of,
)

log = logging.getLogger(__name__)

# KEYS: the budgets' hashes. ARGV: three per key: the window's start (ms), its end (ms), the cost to add.
# A charge for a window older than the stored one (an answer that ended after the period turned) is dropped
# rather than wiping the new window's amount.
CHARGE_SCRIPT = """
for i, key in ipairs(KEYS) do
  local b = (i - 1) * 3
  local start, stop, cost = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local stored = redis.call('HGET', key, 'w')
  if not stored or tonumber(stored) < tonumber(start) then
    redis.call('HSET', key, 'w', start, 's', '0')
    stored = start
  end
  if tonumber(stored) == tonumber(start) then
    redis.call('HINCRBYFLOAT', key, 's', cost)
    redis.call('PEXPIREAT', key, stop)
  end
end
return 1
"""


@dataclass(frozen=True)
class SpendCharge:
    """A budget a request was admitted against, and the window its answer's cost goes to."""

    spend: Spend
    window: Window


class SpendMeter:
    """Admits requests against an endpoint's spend budgets, and charges answers' costs to them."""

    def __init__(self, redis: aioredis.Redis | None, *, is_fail_open: bool = True):
        self._redis = redis
        self._script = redis.register_script(CHARGE_SCRIPT) if redis is not None else None
        self._is_fail_open = is_fail_open   # PODIUM_REDIS_FAILURE_MODE, as the rate limits
        self._outage = OutageLog(log)

    @staticmethod
    def _key(endpoint_id: str, name: str) -> str:
        # {endpoint_id}: a Redis Cluster hash tag, so one request's budgets share a slot.
        return f"podium:budget:{{{endpoint_id}}}:{name}"

    async def admit(self, endpoint_name: str, endpoint_id: str, rules: Sequence[BudgetRule],
                    caller: Principal) -> list[SpendCharge]:
        """The budgets counted against (to charge the answer to); raises RateLimited until the window ends."""
        spends = spends_for(rules, caller)
        if not spends:
            return []
        if self._redis is None:
            raise Unavailable(f"Endpoint '{endpoint_name}' has spend budgets but this router has no Redis "
                              "to enforce them (set PODIUM_REDIS_URL)", retry_after_s=5)
        try:
            now_ms, stored = await self._read(endpoint_id, [s.name for s in spends])
        except (RedisError, OSError) as exc:
            self._outage.failed("budget store unreachable (%s): %s", type(exc).__name__,
                                "admitting requests unmetered" if self._is_fail_open else "refusing budgeted requests")
            if self._is_fail_open:
                return []
            raise Unavailable("The budget store is unreachable; try again shortly", retry_after_s=1) from None
        self._outage.succeeded("budget store reachable again")
        windows = [window_of(s.rule.renewal_period, now_ms) for s in spends]
        spent = [spent_in(w_start, amount, window) for (w_start, amount), window in zip(stored, windows)]
        worst = first_over(spends, spent)
        if worst >= 0:
            spend, window = spends[worst], windows[worst]
            raise RateLimited(
                f"Budget exceeded for endpoint '{endpoint_name}': {spend.describe()} (spent "
                f"{format_amount(spend.rule.unit, spent[worst])} in {window.label}); it renews at "
                f"{_iso(window.end_ms)}", retry_after_s=retry_after_s(window, now_ms))
        return [SpendCharge(s, w) for s, w in zip(spends, windows)]

    async def charge(self, endpoint_id: str, charges: Sequence[SpendCharge], input_tokens: int,
                     output_tokens: int, price: EntityPrice | None) -> None:
        """Adds the answer's cost to each budget it was admitted against (off the request path)."""
        args: list[str] = []
        for c in charges:
            args += [str(c.window.start_ms), str(c.window.end_ms),
                     repr(cost_of(c.spend.rule.unit, input_tokens, output_tokens, price))]
        if not charges or self._script is None:
            return
        try:
            await self._script(keys=[self._key(endpoint_id, c.spend.name) for c in charges], args=args)
        except (RedisError, OSError) as exc:  # the answer is already given: note it and go on
            log.warning("could not charge a spend budget: %s", type(exc).__name__)

    async def report(self, endpoint_id: str, rules: Sequence[BudgetRule]) -> list[dict]:
        """One row per budget in use, with what was spent in its current window (policy/budget.py `report`)."""
        if self._redis is None:
            raise Unavailable("this router has no Redis to read spend budgets from")
        prefix = self._key(endpoint_id, "")
        try:
            names = [key.decode()[len(prefix):]
                     async for key in self._redis.scan_iter(match=f"{_glob(prefix)}*", count=500)]
            now_ms, stored = await self._read(endpoint_id, names)
        except (RedisError, OSError) as exc:
            raise Unavailable(f"The budget store is unreachable ({type(exc).__name__}); try again shortly",
                              retry_after_s=1) from None
        spent = {name: spent_in(w_start, amount, window_of(name.split(":", 2)[1], now_ms))
                 for name, (w_start, amount) in zip(names, stored)}
        return report(rules, spent, now_ms)

    async def _read(self, endpoint_id: str, names: Sequence[str]) -> tuple[int, list[tuple]]:
        """Redis's clock (ms) and each budget's stored (window start, spent), in one round trip."""
        pipe = self._redis.pipeline(transaction=False)   # type: ignore[union-attr]
        pipe.time()
        for name in names:
            pipe.hmget(self._key(endpoint_id, name), "w", "s")
        seconds_micros, *stored = await pipe.execute()
        return seconds_micros[0] * 1000 + seconds_micros[1] // 1000, [tuple(s) for s in stored]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _glob(text: str) -> str:
    """`text` as a literal in a SCAN pattern (endpoint ids are hex, but the braces of the hash tag are not)."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
