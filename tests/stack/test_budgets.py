"""Spend budgets end to end: a user stopped at the set spend while another still passes (the unmodified openai
SDK against an external model served by the OpenAI stand-in, which reports token usage), a usd budget priced by
the served entity's price table, the spend shown by the usage API and `podium usage`, and the charge script on a
real Redis (windows, renewal, expiry)."""

from __future__ import annotations

import time
import uuid

import openai
import pytest

from podium.redis_server import EmbeddedRedis
from services.common.gateway_routes import BudgetRule
from services.common.errors import RateLimited
from services.common.principals import USER, Principal
from services.router.budgets import SpendCharge, SpendMeter
from services.router.policy.budget import Spend, window_of
from tests.support.cli import podium
from tests.support.external import create_external_endpoint, external_entity
from tests.support.stack import wait_for

pytestmark = pytest.mark.stack

CHAT = "llm/v1/chat"
# The stand-in answers "echo: <prompt>": a one-word prompt costs 1 input and 2 output tokens.
HI = [{"role": "user", "content": "hi"}]


def _client(stack, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/serving-endpoints", api_key=token, max_retries=0)


def _grant_query(stack, endpoint: str, *users: str) -> None:
    endpoint_id = stack.api("GET", f"/api/2.0/serving-endpoints/{endpoint}").json()["id"]
    acl = {"access_control_list": [{"user_name": u, "permission_level": "CAN_QUERY"} for u in users]}
    assert stack.api("PATCH", f"/api/2.0/permissions/serving-endpoints/{endpoint_id}", json=acl).status_code == 200


def _budgets(stack, endpoint: str) -> list[dict]:
    reply = stack.api("GET", f"/api/2.0/serving-endpoints/{endpoint}/usage")
    assert reply.status_code == 200, reply.text
    return reply.json().get("budgets", [])


def test_a_budget_stops_a_user_at_the_set_spend_and_another_user_still_passes(stack, fake_providers, tmp_path):
    name = f"budgeted-{uuid.uuid4().hex[:6]}"
    create_external_endpoint(stack, name, external_entity(fake_providers, "openai", CHAT), ai_gateway={
        "budgets": [{"key": "user", "limit_tokens": 5, "renewal_period": "day"}]})
    alice, bob = (f"{who}-{name}@example.com" for who in ("alice", "bob"))
    as_alice, as_bob = _client(stack, stack.user_token(alice)), _client(stack, stack.user_token(bob))
    _grant_query(stack, name, alice, bob)
    wait_for(lambda: _answers(as_alice, name), timeout_s=10, what="the grant to reach the router")   # 3 tokens
    assert as_alice.chat.completions.create(model=name, messages=HI).usage.total_tokens == 3   # 3 < 5: admitted
    # Tokens are charged once the answer is given, off the request path: wait for both charges to land.
    wait_for(lambda: [b for b in _budgets(stack, name) if b.get("principal") == alice and b["spent_tokens"] == 6],
             timeout_s=10, what="alice's 6 tokens to be charged")

    with pytest.raises(openai.RateLimitError) as refused:
        as_alice.chat.completions.create(model=name, messages=HI)
    assert refused.value.status_code == 429
    assert refused.value.body["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    message = refused.value.body["message"]
    assert f"Budget exceeded for endpoint '{name}': 5 tokens per day for user {alice} (spent 6 tokens in " in message
    assert "it renews at " in message and "T00:00:00Z" in message
    retry_after = int(refused.value.response.headers["Retry-After"])
    assert 0 < retry_after <= 86_400

    assert as_bob.chat.completions.create(model=name, messages=HI).choices[0].message.content == "echo: hi"
    rows = wait_for(lambda: (rows := {b["principal"]: b for b in _budgets(stack, name)}).get(bob) and rows,
                    timeout_s=10, what="bob's spend to show")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert rows[alice] == {"key": "user", "principal": alice, "renewal_period": "day", "period": today,
                           "limit_tokens": 5, "spent_tokens": 6, "renews_at_ms": rows[alice]["renews_at_ms"]}
    assert rows[bob]["spent_tokens"] == 3

    shown = podium("usage", name, home=tmp_path, data_dir=stack.data_dir)
    assert shown.returncode == 0, shown.stderr
    line = next(row for row in shown.stdout.splitlines() if alice in row)
    assert line.split()[:5] == ["user", alice, today, "6", "5"]


def _answers(client: openai.OpenAI, name: str) -> bool:
    try:
        client.chat.completions.create(model=name, messages=HI)
        return True
    except (openai.NotFoundError, openai.PermissionDeniedError):   # the router has not heard of it (or the grant) yet
        return False


def test_a_usd_budget_charges_by_the_served_entitys_prices_streams_included(stack, fake_providers):
    name = f"usd-budget-{uuid.uuid4().hex[:6]}"
    # 0.1 USD per input token and 0.2 per output token: "hi" costs 1 * 0.1 + 2 * 0.2 = 0.5 USD.
    entity = external_entity(fake_providers, "openai", CHAT, pricing={
        "input_per_million_tokens_usd": 100_000, "output_per_million_tokens_usd": 200_000})
    unpriced = stack.api("POST", "/api/2.0/serving-endpoints", json={
        "name": name, "config": {"served_entities": [external_entity(fake_providers, "openai", CHAT)]},
        "ai_gateway": {"budgets": [{"limit_usd": 1, "renewal_period": "month"}]}})
    assert unpriced.status_code == 400 and unpriced.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "ai_gateway.budgets[0].limit_usd needs a price for served entity" in unpriced.json()["message"]

    create_external_endpoint(stack, name, entity, ai_gateway={
        "budgets": [{"limit_usd": 1, "renewal_period": "month"}]})
    client = _client(stack, stack.admin_token)
    shown = stack.api("GET", f"/api/2.0/serving-endpoints/{name}").json()
    assert shown["config"]["served_entities"][0]["external_model"]["pricing"] == {
        "input_per_million_tokens_usd": 100_000.0, "output_per_million_tokens_usd": 200_000.0}
    assert shown["ai_gateway"]["budgets"] == [{"key": "endpoint", "renewal_period": "month", "limit_usd": 1.0}]
    # A stream is charged too, though the caller did not ask for its usage (the router asks the provider).
    streamed = list(client.chat.completions.create(model=name, messages=HI, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "echo: hi"
    client.chat.completions.create(model=name, messages=HI)
    [row] = wait_for(lambda: [b for b in _budgets(stack, name) if b["spent_usd"] == pytest.approx(1.0)],
                     timeout_s=10, what="two answers of 0.5 USD to be charged")
    assert (row["key"], row["limit_usd"], row["period"]) == ("endpoint", 1.0, time.strftime("%Y-%m", time.gmtime()))
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model=name, messages=HI)
    assert "1 USD per month for the endpoint (spent 1 USD in " in refused.value.body["message"]

    # Raising the limit keeps what was spent: the endpoint passes again, with 1 USD already counted.
    reply = stack.api("PUT", f"/api/2.0/serving-endpoints/{name}/ai-gateway",
                      json={"budgets": [{"limit_usd": 1.5, "renewal_period": "month"}]})
    assert reply.status_code == 200, reply.text
    wait_for(lambda: _raised(client, name), timeout_s=10, what="the raised budget to reach the router")
    [row] = wait_for(lambda: [b for b in _budgets(stack, name) if b["spent_usd"] == pytest.approx(1.5)],
                     timeout_s=10, what="the third answer to be charged")
    assert row["limit_usd"] == 1.5


def _raised(client: openai.OpenAI, name: str) -> bool:
    try:
        return _answers(client, name)
    except openai.RateLimitError:
        return False


# ---- the charge script on a real Redis ----

@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server.start()
    server.stop()


BOB = Principal("2", "bob@example.com", USER)
RULE = BudgetRule("user", limit=10)


async def test_charges_count_in_their_window_and_a_late_one_never_wipes_the_next(redis_url):
    import redis.asyncio as aioredis

    redis = aioredis.Redis.from_url(redis_url)
    meter, endpoint_id = SpendMeter(redis), uuid.uuid4().hex
    key = f"podium:budget:{{{endpoint_id}}}:tokens:day:user:bob@example.com"
    spend = Spend("user:bob@example.com", RULE)
    now_ms = int(time.time() * 1000)
    today, yesterday = window_of("day", now_ms), window_of("day", now_ms - 86_400_000)
    try:
        await meter.charge(endpoint_id, [SpendCharge(spend, yesterday)], 40, 0, None)
        assert await redis.exists(key) == 0            # yesterday's window has ended: its hash expires at once
        [charge] = await meter.admit("e", endpoint_id, [RULE], BOB)
        assert charge.window == today
        await meter.charge(endpoint_id, [charge], 4, 5, None)
        assert (await meter.admit("e", endpoint_id, [RULE], BOB))[0].window == today   # 9 < 10
        await meter.charge(endpoint_id, [SpendCharge(spend, yesterday)], 100, 0, None)   # a late charge: dropped
        assert float(await redis.hget(key, "s")) == 9.0
        assert 0 < await redis.pttl(key) <= today.end_ms - now_ms   # gone when the day ends
        await meter.charge(endpoint_id, [charge], 1, 0, None)
        with pytest.raises(RateLimited) as refused:
            await meter.admit("e", endpoint_id, [RULE], BOB)
        assert "10 tokens per day for user bob@example.com (spent 10 tokens in " in refused.value.message
        tomorrow = window_of("day", today.end_ms)
        await redis.hset(key, mapping={"w": str(tomorrow.start_ms - 86_400_000 * 2)})   # stored from an older day
        assert (await meter.admit("e", endpoint_id, [RULE], BOB))[0].window == today   # which counts nothing
        await meter.charge(endpoint_id, [charge], 2, 0, None)   # and is started afresh
        assert (await redis.hmget(key, "w", "s")) == [str(today.start_ms).encode(), b"2"]
    finally:
        await redis.aclose()


async def test_no_redis_means_budgeted_endpoints_are_unavailable_not_unlimited():
    with pytest.raises(Exception) as refused:
        await SpendMeter(None).admit("e", "x", [RULE], BOB)
    assert refused.value.code == "TEMPORARILY_UNAVAILABLE"
    assert await SpendMeter(None).admit("e", "x", [], BOB) == []
