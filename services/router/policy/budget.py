"""Spend budgets: whose budgets a request counts against, the calendar window it falls in, what an answer costs,
and whether a caller is over. Pure.

A budget of `limit` tokens (or US dollars) per calendar day or month, in UTC, counts what the answers in its
scope used since the window began. A request is admitted while the spent amount is below the limit; the answer's
cost is added once the answer says how many tokens it used, so answers in flight when a budget is reached may
take it past its limit, and the next request is refused until the window ends. services/router/budgets.py keeps
the spent amounts in Redis and reads the time from Redis's clock, as the rate limits do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.common.gateway_routes import BudgetRule, EntityPrice
from services.common.principals import Principal
from services.router.policy.rate_limit import scopes_for

TOKENS, USD = "tokens", "usd"
DAY, MONTH = "day", "month"
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Window:
    """One renewal period: [start_ms, end_ms), named by its date (2026-12-06) or month (2026-12)."""

    start_ms: int
    end_ms: int
    label: str


@dataclass(frozen=True)
class Spend:
    """A budget a request counts against: `scope` says whose it is (endpoint | user:<name> | user_group:<group> |
    service_principal:<id>)."""

    scope: str
    rule: BudgetRule

    @property
    def name(self) -> str:
        """Unique per unit, period and scope, not per limit: a changed limit keeps what was already spent."""
        return f"{self.rule.unit}:{self.rule.renewal_period}:{self.scope}"

    def describe(self) -> str:
        who = "the endpoint" if self.scope == "endpoint" else self.scope.replace(":", " ", 1)
        return f"{format_amount(self.rule.unit, self.rule.limit)} per {self.rule.renewal_period} for {who}"


def window_of(period: str, now_ms: int) -> Window:
    """The calendar day or month (UTC) that holds `now_ms` (Unix time has no leap seconds: a day is 86,400 s)."""
    day = now_ms // DAY_MS
    year, month, date = civil_from_days(day)
    if period == DAY:
        return Window(day * DAY_MS, (day + 1) * DAY_MS, f"{year:04d}-{month:02d}-{date:02d}")
    following = (year + 1, 1) if month == 12 else (year, month + 1)
    return Window(days_from_civil(year, month, 1) * DAY_MS, days_from_civil(*following, 1) * DAY_MS,
                  f"{year:04d}-{month:02d}")


def civil_from_days(days: int) -> tuple[int, int, int]:
    """(year, month, day) of the proleptic Gregorian date `days` after 1970-01-01 (H. Hinnant's algorithm)."""
    z = days + 719_468
    era = z // 146_097
    day_of_era = z - era * 146_097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153     # 0 = March
    month = shifted_month + 3 if shifted_month < 10 else shifted_month - 9
    return year_of_era + era * 400 + (month <= 2), month, day_of_year - (153 * shifted_month + 2) // 5 + 1


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to the proleptic Gregorian date (the inverse of civil_from_days)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def spends_for(rules: Sequence[BudgetRule], caller: Principal) -> list[Spend]:
    """The budgets a request by `caller` counts against. Whose they are follows the rate limits' keys; a budget
    naming a principal replaces the default budget of the same unit and period for it."""
    out: dict[str, Spend] = {}
    for unit, period in dict.fromkeys((r.unit, r.renewal_period) for r in rules):
        group = [r for r in rules if (r.unit, r.renewal_period) == (unit, period)]
        for rule, scope in scopes_for(group, caller):
            out.setdefault(Spend(scope, rule).name, Spend(scope, rule))
    return list(out.values())


def spent_in(stored_window_start: str | bytes | None, stored_spent: str | bytes | None, window: Window) -> float:
    """What was spent in `window`: a stored amount from an earlier window counts nothing."""
    if stored_window_start is None or stored_spent is None or int(stored_window_start) != window.start_ms:
        return 0.0
    return float(stored_spent)


def first_over(spends: Sequence[Spend], spent: Sequence[float]) -> int:
    """The index of the first budget spent up to its limit, or -1 when every one admits."""
    for i, (spend, amount) in enumerate(zip(spends, spent)):
        if amount >= spend.rule.limit:
            return i
    return -1


def cost_of(unit: str, input_tokens: int, output_tokens: int, price: EntityPrice | None) -> float:
    """What an answer costs a budget: its tokens, or their price in USD (no price: nothing, as write time
    refuses a usd budget over an unpriced served entity)."""
    if unit == TOKENS:
        return float(input_tokens + output_tokens)
    if price is None:
        return 0.0
    return (input_tokens * price.input_per_million_tokens_usd
            + output_tokens * price.output_per_million_tokens_usd) / 1_000_000


def retry_after_s(window: Window, now_ms: int) -> int:
    """Seconds until the window ends and the budget renews: rounded up, at least 1."""
    return max(1, math.ceil((window.end_ms - now_ms) / 1000))


def format_amount(unit: str, amount: float) -> str:
    return f"{amount:g} tokens" if unit == TOKENS else f"{amount:.6g} USD"


def report(rules: Sequence[BudgetRule], spent_by_name: Mapping[str, float], now_ms: int) -> list[dict]:
    """One row per budget in use: the endpoint's, each named principal's, and each caller's or group's that has
    spent in the current window (`spent_by_name`: Spend.name → amount in its current window)."""
    rows = []
    for rule in rules:
        kind = f"{rule.unit}:{rule.renewal_period}:"
        if rule.key == "endpoint":
            scopes = ["endpoint"]
        elif rule.principal:
            scopes = [f"{rule.key}:{rule.principal}"]
        else:
            named = {r.principal for r in rules if r.principal and (r.key, r.unit, r.renewal_period)
                     == (rule.key, rule.unit, rule.renewal_period)}
            scopes = sorted(n[len(kind):] for n in spent_by_name if n.startswith(f"{kind}{rule.key}:")
                            and n[len(kind) + len(rule.key) + 1:] not in named)
        window = window_of(rule.renewal_period, now_ms)
        for scope in scopes:
            row = {"key": rule.key, "renewal_period": rule.renewal_period, "period": window.label,
                   f"limit_{rule.unit}": _plain(rule.unit, rule.limit),
                   f"spent_{rule.unit}": _plain(rule.unit, spent_by_name.get(f"{kind}{scope}", 0.0)),
                   "renews_at_ms": window.end_ms}
            if scope != "endpoint":
                row["principal"] = scope.split(":", 1)[1]
            rows.append(row)
    return rows


def _plain(unit: str, amount: float) -> int | float:
    return int(amount) if unit == TOKENS else round(amount, 6)
