"""Rate limits as token buckets: which budgets a request draws on, and whether they admit it. Pure.

A limit of `calls` per renewal period is a bucket holding up to `calls` that refills continuously at
calls/period: a burst of `calls` passes at once, then one more every period/calls. A `tokens` limit is a
bucket of tokens: a request is admitted while it holds at least one, and the tokens the answer used are
taken afterwards (usage is known only then), so a bucket may go into debt and admit nothing until it
refills. `take` is the oracle of the Lua script in services/router/rate_limit.py, which runs the same
arithmetic atomically in Redis so every router replica shares one budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from services.common.gateway_routes import RateLimitRule
from services.common.principals import SERVICE_PRINCIPAL, USER, Principal

CALLS, TOKENS = "calls", "tokens"


class Keyed(Protocol):
    """A rule that applies to callers by `key` (endpoint | user | user_group | service_principal) and `principal`."""

    @property
    def key(self) -> str: ...
    @property
    def principal(self) -> str: ...


R = TypeVar("R", bound=Keyed)


@dataclass(frozen=True)
class Bucket:
    level: float
    updated_at_ms: int


@dataclass(frozen=True)
class Draw:
    """One bucket's part in a take."""

    capacity: float
    period_ms: int
    need: float = 1.0     # the level that admits (after refill)
    cost: float = 1.0     # taken from the level when every bucket admits
    force: bool = False   # take `cost` whatever the level (tokens used by an answer already given)


@dataclass(frozen=True)
class Budget:
    """A bucket a request counts against: `scope` says whose it is, for the bucket's name and messages."""

    kind: str             # calls | tokens
    scope: str            # endpoint | user:<name> | user_group:<group> | service_principal:<id>
    rule: RateLimitRule

    @property
    def capacity(self) -> int:
        return self.rule.calls if self.kind == CALLS else self.rule.tokens  # type: ignore[return-value]

    @property
    def name(self) -> str:
        """Unique per budget: a changed limit starts a fresh bucket rather than inheriting a stale level."""
        return f"{self.kind}:{self.rule.renewal_period_s}:{self.capacity}:{self.scope}"

    def describe(self) -> str:
        period = "minute" if self.rule.renewal_period_s == 60 else f"{self.rule.renewal_period_s} s"
        who = "the endpoint" if self.scope == "endpoint" else self.scope.replace(":", " ", 1)
        return f"{self.capacity} {self.kind} per {period} for {who}"


def budgets_for(rules: Sequence[RateLimitRule], caller: Principal) -> list[Budget]:
    """The budgets a request by `caller` draws on (whose they are: `scopes_for`)."""
    out: list[Budget] = []
    for rule, scope in scopes_for(rules, caller):
        if rule.calls is not None:
            out.append(Budget(CALLS, scope, rule))
        if rule.tokens is not None:
            out.append(Budget(TOKENS, scope, rule))
    return list({b.name: b for b in out}.values())  # two equal limits are one budget


def scopes_for(rules: Sequence[R], caller: Principal) -> list[tuple[R, str]]:
    """(rule, scope) for each rule that applies to `caller`: rate limits and spend budgets alike.

    `endpoint` rules are one scope for everyone. `user` and `service_principal` rules without a
    principal give each such caller its own scope, unless a rule names that caller (which then replaces the
    default). `user_group` rules are shared by the group's members: one naming a group applies to its
    members; one without a principal gives every group of the caller its own shared scope.
    """
    own_kind = SERVICE_PRINCIPAL if caller.kind == SERVICE_PRINCIPAL else USER
    named = {(r.key, r.principal) for r in rules if r.principal}
    out: list[tuple[R, str]] = []
    for rule in rules:
        if rule.key == "endpoint":
            scopes = ["endpoint"]
        elif rule.key == own_kind:
            if rule.principal:
                scopes = [f"{own_kind}:{caller.name}"] if rule.principal == caller.name else []
            else:
                scopes = [] if (own_kind, caller.name) in named else [f"{own_kind}:{caller.name}"]
        elif rule.key == "user_group":
            if rule.principal:
                scopes = [f"user_group:{rule.principal}"] if rule.principal in caller.group_names else []
            else:
                scopes = [f"user_group:{g}" for g in sorted(caller.group_names) if ("user_group", g) not in named]
        else:
            scopes = []
        out += [(rule, scope) for scope in scopes]
    return out


def admission_draws(budgets: Sequence[Budget]) -> list[Draw]:
    """Before the request: one call from each calls budget; tokens budgets must not be in debt."""
    return [Draw(b.capacity, b.rule.renewal_period_s * 1000, 1.0, 1.0 if b.kind == CALLS else 0.0)
            for b in budgets]


def usage_draws(budgets: Sequence[Budget], tokens_used: int) -> list[Draw]:
    """After the answer: the tokens it used, taken from each tokens budget whatever their level."""
    return [Draw(b.capacity, b.rule.renewal_period_s * 1000, 0.0, float(tokens_used), True) for b in budgets]


def take(buckets: Sequence[Bucket | None], draws: Sequence[Draw], now_ms: int
         ) -> tuple[bool, int, int, list[Bucket | None]]:
    """(admitted, retry_after_ms, index of the bucket that must wait longest or -1, buckets after).

    A missing bucket is full. Nothing is taken unless every bucket admits; a denied take leaves the
    buckets as they were. A clock that steps back mints nothing.
    """
    levels, stamps = [], []
    retry_ms, worst = 0, -1
    for i, (bucket, draw) in enumerate(zip(buckets, draws)):
        level, stamp = draw.capacity, now_ms
        if bucket is not None:
            stamp = max(now_ms, bucket.updated_at_ms)
            level = min(draw.capacity,
                        bucket.level + (stamp - bucket.updated_at_ms) * draw.capacity / draw.period_ms)
        levels.append(level)
        stamps.append(stamp)
        if not draw.force and level < draw.need:
            wait = draw.period_ms
            if draw.capacity > 0:
                wait = math.ceil((draw.need - level) * draw.period_ms / draw.capacity)
            if wait > retry_ms:
                retry_ms, worst = wait, i
    if retry_ms > 0:
        return False, retry_ms, worst, list(buckets)
    return True, 0, -1, [Bucket(level - d.cost, stamp) for level, stamp, d in zip(levels, stamps, draws)]


def retry_after_s(retry_ms: int) -> int:
    """Retry-After is whole seconds (clients sleep that long): round up, at least 1."""
    return max(1, math.ceil(retry_ms / 1000))
