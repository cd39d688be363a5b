"""Spend budgets' pure decisions as tables: whose budgets a request counts against, the calendar window, what an
answer costs, whether a caller is over, and the rows usage shows."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from services.common.gateway_routes import BudgetRule, EntityPrice
from services.common.principals import SERVICE_PRINCIPAL, USER, Principal
from services.router.policy.budget import (
    Spend, cost_of, first_over, report, retry_after_s, spends_for, spent_in, window_of,
)

ALICE = Principal("1", "alice@example.com", USER, group_names=frozenset({"data-science", "ml"}))
BOB = Principal("2", "bob@example.com", USER, group_names=frozenset({"ml"}))
ROBOT = Principal("3", "6f1c-app-id", SERVICE_PRINCIPAL)


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize("period, now, start, end, label", [
    pytest.param("day", "2026-12-06T21:57:00", "2026-12-06T00:00:00", "2026-12-07T00:00:00", "2026-12-06",
                 id="a day runs midnight to midnight UTC"),
    pytest.param("day", "2026-12-06T00:00:00", "2026-12-06T00:00:00", "2026-12-07T00:00:00", "2026-12-06",
                 id="midnight begins the new day"),
    pytest.param("day", "2026-12-05T23:59:59.999", "2026-12-05T00:00:00", "2026-12-06T00:00:00", "2026-12-05",
                 id="the last millisecond is still the old day"),
    pytest.param("month", "2026-12-06T21:57:00", "2026-12-01T00:00:00", "2027-01-01T00:00:00", "2026-12",
                 id="December ends at the new year"),
    pytest.param("month", "2028-02-29T12:00:00", "2028-02-01T00:00:00", "2028-03-01T00:00:00", "2028-02",
                 id="a leap February"),
    pytest.param("month", "2027-01-31T23:59:59.999", "2027-01-01T00:00:00", "2027-02-01T00:00:00", "2027-01",
                 id="the month's last millisecond"),
])
def test_window_of(period, now, start, end, label):
    window = window_of(period, _ms(now))
    assert (window.start_ms, window.end_ms, window.label) == (_ms(start), _ms(end), label)


def test_window_of_agrees_with_the_standard_library_over_four_centuries():
    rng = random.Random(18)
    for now_ms in [rng.randrange(-2 * 10**12, 2 * 10**13) for _ in range(5000)]:
        now = datetime.fromtimestamp(now_ms / 1000, UTC)
        day, month = window_of("day", now_ms), window_of("month", now_ms)
        assert day.label == now.strftime("%Y-%m-%d") and month.label == now.strftime("%Y-%m"), now_ms
        assert day.start_ms <= now_ms < day.end_ms and month.start_ms <= day.start_ms < month.end_ms
        assert window_of("day", month.start_ms).label.endswith("-01")
        assert window_of("month", month.end_ms).start_ms == month.end_ms


def _scopes(rules, caller):
    return [f"{s.rule.limit:g} {s.name}" for s in spends_for(rules, caller)]


@pytest.mark.parametrize("rules, caller, want", [
    pytest.param([BudgetRule("endpoint", limit=1000)], ALICE, ["1000 tokens:day:endpoint"], id="endpoint: one"),
    pytest.param([BudgetRule("user", limit=10)], ALICE, ["10 tokens:day:user:alice@example.com"],
                 id="user: each user their own"),
    pytest.param([BudgetRule("user", limit=10), BudgetRule("user", "alice@example.com", limit=99)], ALICE,
                 ["99 tokens:day:user:alice@example.com"], id="a named user replaces the default"),
    pytest.param([BudgetRule("user", limit=10), BudgetRule("user", "alice@example.com", limit=99)], BOB,
                 ["10 tokens:day:user:bob@example.com"], id="others keep the default"),
    pytest.param([BudgetRule("user", limit=10), BudgetRule("user", "alice@example.com", "usd", 5, "month")], ALICE,
                 ["10 tokens:day:user:alice@example.com", "5 usd:month:user:alice@example.com"],
                 id="a named budget replaces only the default of its unit and period"),
    pytest.param([BudgetRule("user", limit=10)], ROBOT, [], id="user budgets skip service principals"),
    pytest.param([BudgetRule("service_principal", limit=7)], ROBOT, ["7 tokens:day:service_principal:6f1c-app-id"],
                 id="service principal: each its own"),
    pytest.param([BudgetRule("user_group", "ml", limit=50)], BOB, ["50 tokens:day:user_group:ml"],
                 id="a named group is shared by its members"),
    pytest.param([BudgetRule("user_group", limit=50)], ALICE,
                 ["50 tokens:day:user_group:data-science", "50 tokens:day:user_group:ml"], id="every group"),
    pytest.param([BudgetRule("endpoint", limit=1000),
                  BudgetRule("user", unit="usd", limit=2.5, renewal_period="month")],
                 BOB, ["1000 tokens:day:endpoint", "2.5 usd:month:user:bob@example.com"], id="endpoint and user"),
])
def test_spends_for(rules, caller, want):
    assert _scopes(rules, caller) == want


DAY = window_of("day", _ms("2026-12-06T12:00:00"))


@pytest.mark.parametrize("stored_start, stored_spent, want", [
    pytest.param(None, None, 0.0, id="nothing spent yet"),
    pytest.param(str(DAY.start_ms).encode(), b"123.5", 123.5, id="spent in this window"),
    pytest.param(str(DAY.start_ms - 86_400_000).encode(), b"999", 0.0, id="yesterday's spend counts nothing"),
])
def test_spent_in(stored_start, stored_spent, want):
    assert spent_in(stored_start, stored_spent, DAY) == want


TEN = Spend("endpoint", BudgetRule("endpoint", limit=10))
FIVE = Spend("user:bob", BudgetRule("user", limit=5))


@pytest.mark.parametrize("spent, want", [
    pytest.param([0.0, 0.0], -1, id="nothing spent"),
    pytest.param([9.0, 4.99], -1, id="just under both"),
    pytest.param([9.0, 5.0], 1, id="reaching the limit stops"),
    pytest.param([12.0, 7.0], 0, id="the first over is named"),
])
def test_first_over(spent, want):
    assert first_over([TEN, FIVE], spent) == want


def test_a_zero_budget_admits_nothing():
    assert first_over([Spend("endpoint", BudgetRule("endpoint", limit=0))], [0.0]) == 0


PRICE = EntityPrice("gpt", input_per_million_tokens_usd=2.0, output_per_million_tokens_usd=8.0)


@pytest.mark.parametrize("unit, tokens_in, tokens_out, price, want", [
    pytest.param("tokens", 12, 30, None, 42.0, id="tokens: input and output"),
    pytest.param("tokens", 12, 30, PRICE, 42.0, id="tokens ignore prices"),
    pytest.param("usd", 1_000_000, 0, PRICE, 2.0, id="a million input tokens"),
    pytest.param("usd", 500_000, 250_000, PRICE, 3.0, id="input and output at their own prices"),
    pytest.param("usd", 100, 100, None, 0.0, id="no price: nothing"),
])
def test_cost_of(unit, tokens_in, tokens_out, price, want):
    assert cost_of(unit, tokens_in, tokens_out, price) == pytest.approx(want)


@pytest.mark.parametrize("now, want", [
    pytest.param("2026-12-06T23:59:59", 1, id="a second before midnight"),
    pytest.param("2026-12-06T23:59:59.999", 1, id="at least one second"),
    pytest.param("2026-12-06T12:00:00.5", 43200, id="rounded up"),
])
def test_retry_after_is_the_rest_of_the_window(now, want):
    assert retry_after_s(window_of("day", _ms(now)), _ms(now)) == want


def test_report_shows_each_budget_in_use():
    rules = [BudgetRule("endpoint", limit=1000), BudgetRule("user", unit="usd", limit=2.5, renewal_period="month"),
             BudgetRule("user", "carol@example.com", "usd", 10, "month")]
    spent = {"tokens:day:endpoint": 420.0, "usd:month:user:bob@example.com": 0.1234567,
             "usd:month:user:carol@example.com": 3.0, "tokens:day:user:bob@example.com": 5.0}
    now = _ms("2026-12-06T12:00:00")
    assert report(rules, spent, now) == [
        {"key": "endpoint", "renewal_period": "day", "period": "2026-12-06", "limit_tokens": 1000,
         "spent_tokens": 420, "renews_at_ms": _ms("2026-12-07T00:00:00")},
        # carol has her own budget, so the default's row leaves her out; bob's tokens are not this budget's
        {"key": "user", "renewal_period": "month", "period": "2026-12", "limit_usd": 2.5, "spent_usd": 0.123457,
         "renews_at_ms": _ms("2027-01-01T00:00:00"), "principal": "bob@example.com"},
        {"key": "user", "renewal_period": "month", "period": "2026-12", "limit_usd": 10.0, "spent_usd": 3.0,
         "renews_at_ms": _ms("2027-01-01T00:00:00"), "principal": "carol@example.com"},
    ]


def test_describe_names_amount_period_and_whom():
    assert FIVE.describe() == "5 tokens per day for user bob"
    assert Spend("endpoint", BudgetRule("endpoint", unit="usd", limit=1.5, renewal_period="month")).describe() \
        == "1.5 USD per month for the endpoint"
