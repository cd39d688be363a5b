"""Spend budgets and price tables in the control plane: validation, the write-time refusal of a budget that could
not be enforced (in usd over an unpriced served entity, or over a custom model), and what routers are told."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidParameter, PodiumError
from services.common.gateway_routes import BudgetRule, EntityPrice
from services.common.secret_box import Cipher
from services.control_plane import spec
from services.control_plane.core import EndpointService
from services.control_plane.spec_options import validate_ai_gateway
from services.control_plane.store import EndpointStore
from tests.support.identity import start_identity

CHAT = "llm/v1/chat"
PRICING = {"input_per_million_tokens_usd": 2.5, "output_per_million_tokens_usd": 10}


def _model(name: str = "gpt", **extra) -> dict:
    return {"name": name, "external_model": {"provider": "openai", "name": "gpt-4o", "task": CHAT,
                                             "openai_config": {"openai_api_key": "{{secrets/llm/openai}}"}, **extra}}


@pytest.mark.parametrize("budgets, want", [
    pytest.param([{"limit_tokens": 1000, "renewal_period": "day"}],
                 [{"key": "endpoint", "renewal_period": "day", "limit_tokens": 1000}], id="endpoint tokens per day"),
    pytest.param([{"key": "user", "principal": "a@x", "limit_usd": 2, "renewal_period": "month"}],
                 [{"key": "user", "renewal_period": "month", "limit_usd": 2.0, "principal": "a@x"}],
                 id="a named user's usd per month"),
    pytest.param([{"key": "user_group", "limit_tokens": 0, "renewal_period": "day"},
                  {"key": "user_group", "limit_usd": 1.5, "renewal_period": "day"}],
                 [{"key": "user_group", "renewal_period": "day", "limit_tokens": 0},
                  {"key": "user_group", "renewal_period": "day", "limit_usd": 1.5}], id="tokens and usd side by side"),
])
def test_budgets_are_normalized(budgets, want):
    assert validate_ai_gateway({"budgets": budgets})["budgets"] == want


@pytest.mark.parametrize("budgets, needle", [
    ([{"limit_tokens": 10}], "Missing required field: ai_gateway.budgets[0].renewal_period"),
    ([{"limit_tokens": 10, "renewal_period": "minute"}], "ai_gateway.budgets[0].renewal_period"),
    ([{"renewal_period": "day"}], "ai_gateway.budgets[0]: give limit_tokens or limit_usd"),
    ([{"limit_tokens": 1, "limit_usd": 1, "renewal_period": "day"}], "give limit_tokens or limit_usd (one of them)"),
    ([{"limit_tokens": -1, "renewal_period": "day"}], "ai_gateway.budgets[0].limit_tokens"),
    ([{"limit_usd": "5", "renewal_period": "day"}], "ai_gateway.budgets[0].limit_usd must be a non-negative number"),
    ([{"limit_usd": float("inf"), "renewal_period": "day"}], "ai_gateway.budgets[0].limit_usd"),
    ([{"limit_tokens": 1, "renewal_period": "day", "calls": 3}], "ai_gateway.budgets[0]"),
    ([{"limit_tokens": 1, "renewal_period": "day", "principal": "a"}], "not to endpoint"),
    ([{"key": "team", "limit_tokens": 1, "renewal_period": "day"}], "ai_gateway.budgets[0].key"),
    ([{"key": "user", "limit_tokens": 1, "renewal_period": "day"},
      {"key": "user", "limit_tokens": 2, "renewal_period": "day"}], "ai_gateway.budgets[1]: a second tokens budget"),
])
def test_bad_budgets_are_refused_naming_the_field(budgets, needle):
    with pytest.raises(InvalidParameter) as refused:
        validate_ai_gateway({"budgets": budgets}, "ai_gateway")
    assert needle in refused.value.message


@pytest.mark.parametrize("pricing, needle", [
    ({}, "pricing: give input_per_million_tokens_usd"),
    ({"input_per_million_tokens_usd": -1}, "pricing.input_per_million_tokens_usd must be a non-negative number"),
    ({"input_per_million_tokens_usd": 1, "per_call_usd": 1}, "pricing"),
])
def test_bad_prices_are_refused_naming_the_field(pricing, needle):
    with pytest.raises(InvalidParameter) as refused:
        spec.validate_config({"served_entities": [_model(pricing=pricing)]})
    assert needle in refused.value.message and "served_entities[0].external_model.pricing" in refused.value.message


def _create(budgets: list, *entities: dict) -> dict:
    config: dict = {"served_entities": list(entities)}
    if len(entities) > 1:
        config["traffic_config"] = {"routes": [{"served_entity_name": e["name"], "traffic_percentage": 100 * (not i)}
                                               for i, e in enumerate(entities)]}
    return {"name": "llm", "config": config, "ai_gateway": {"budgets": budgets}}


@pytest.mark.parametrize("body, needle", [
    pytest.param(_create([{"limit_usd": 5, "renewal_period": "day"}], _model()),
                 "ai_gateway.budgets[0].limit_usd needs a price for served entity 'gpt'", id="usd without a price"),
    pytest.param(_create([{"limit_usd": 5, "renewal_period": "day"}], _model(pricing=PRICING), _model("b")),
                 "needs a price for served entity 'b'", id="every served entity needs one"),
    pytest.param(_create([{"limit_tokens": 5, "renewal_period": "day"}], {"entity_name": "c.s.m",
                                                                           "entity_version": "1"}),
                 "is not an external model", id="custom models report no tokens"),
])
def test_a_budget_that_cannot_be_enforced_is_refused_at_create(body, needle):
    with pytest.raises(InvalidParameter) as refused:
        spec.validate_create(body)
    assert needle in refused.value.message


def test_a_priced_usd_budget_and_a_tokens_budget_are_accepted():
    created = spec.validate_create(_create([{"limit_usd": 5, "renewal_period": "day"},
                                            {"key": "user", "limit_tokens": 100, "renewal_period": "month"}],
                                           _model(pricing=PRICING)))
    assert created["config"]["served_entities"][0]["external_model"]["pricing"] == {
        "input_per_million_tokens_usd": 2.5, "output_per_million_tokens_usd": 10.0}


@pytest.fixture
async def service(tmp_path):
    identity = await start_identity(f"sqlite:///{tmp_path / 'podium.db'}")
    service = EndpointService(EndpointStore(identity.engine), identity.identity,
                              cipher=Cipher.from_key(bytes(range(32))))
    await service.start()
    service.alice = (await identity.user_token("alice"))[1]
    return service


async def test_routers_are_told_budgets_and_prices(service):
    await service.create(service.alice, _create([{"key": "user", "limit_usd": 0.5, "renewal_period": "month"}],
                                                _model(pricing=PRICING)))
    [routes] = service.routing_table()
    assert routes.gateway.budgets == (BudgetRule("user", "", "usd", 0.5, "month"),)
    assert routes.gateway.price_of("gpt") == EntityPrice("gpt", 2.5, 10.0)


async def test_tokens_budgets_carry_no_prices_and_no_budget_costs_nothing(service):
    await service.create(service.alice, _create([{"limit_tokens": 9, "renewal_period": "day"}],
                                                _model(pricing=PRICING)))
    await service.create(service.alice, {**_create([], _model()), "name": "plain"})
    tables = {r.name: r for r in service.routing_table()}
    assert tables["llm"].gateway.prices == () and tables["llm"].gateway.budgets[0].limit == 9
    assert tables["plain"].gateway.budgets == ()


async def test_later_writes_cannot_unprice_a_usd_budget(service):
    await service.create(service.alice, _create([{"limit_usd": 5, "renewal_period": "day"}], _model(pricing=PRICING)))
    with pytest.raises(PodiumError) as refused:   # a new config whose served entity has no price
        await service.update_config(service.alice, "llm", {"served_entities": [_model("cheap")]})
    assert refused.value.code == "INVALID_PARAMETER_VALUE" and "served entity 'cheap'" in refused.value.message
    await service.create(service.alice, {**_create([], _model()), "name": "other"})
    with pytest.raises(InvalidParameter) as refused:   # a usd budget put on an endpoint without prices
        await service.put_ai_gateway(service.alice, "other", {"budgets": [{"limit_usd": 1, "renewal_period": "day"}]})
    assert "ai_gateway.budgets[0].limit_usd needs a price" in refused.value.message
    assert "budgets" not in (await service.get(service.alice, "other")).get("ai_gateway", {})
    put = await service.put_ai_gateway(service.alice, "other",
                                       {"budgets": [{"limit_tokens": 1, "renewal_period": "day"}]})
    assert put["budgets"] == [{"key": "endpoint", "renewal_period": "day", "limit_tokens": 1}]
