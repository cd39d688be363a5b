"""A served entity's `shadow_percentage` and the routes of a config that has one: refusals name the field."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidParameter
from services.control_plane.spec import validate_config

LIVE = {"name": "live", "entity_name": "c.s.m", "entity_version": "1"}
ROUTES = {"routes": [{"served_entity_name": "live", "traffic_percentage": 100}]}


def _config(shadow: dict, traffic=ROUTES) -> dict:
    return {"served_entities": [LIVE, {"name": "next", "entity_name": "c.s.m", "entity_version": "2", **shadow}],
            "traffic_config": traffic}


def test_a_shadow_is_stored_and_may_be_routed_at_zero():
    config = validate_config(_config({"shadow_percentage": 25}))
    assert config["served_entities"][1]["shadow_percentage"] == 25
    assert "shadow_percentage" not in config["served_entities"][0]
    at_zero = {"routes": [*ROUTES["routes"], {"served_entity_name": "next", "traffic_percentage": 0}]}
    routes = validate_config(_config({"shadow_percentage": 25}, at_zero))["traffic_config"]["routes"]
    assert [(r["served_entity_name"], r["traffic_percentage"]) for r in routes] == [("live", 100), ("next", 0)]


@pytest.mark.parametrize("shadow, traffic, needle", [
    pytest.param({"shadow_percentage": 0}, ROUTES, "served_entities[1].shadow_percentage must be an integer",
                 id="zero"),
    pytest.param({"shadow_percentage": 101}, ROUTES, "from 1 to 100", id="over 100"),
    pytest.param({"shadow_percentage": 12.5}, ROUTES, "must be an integer", id="fraction"),
    pytest.param({"shadow_percentage": True}, ROUTES, "must be an integer", id="bool"),
    pytest.param({"shadow_percentage": 10}, {"routes": [{"served_entity_name": "live", "traffic_percentage": 90},
                                                        {"served_entity_name": "next", "traffic_percentage": 10}]},
                 "takes no traffic of its own", id="routed above zero"),
])
def test_refusals(shadow, traffic, needle):
    with pytest.raises(InvalidParameter) as refused:
        validate_config(_config(shadow, traffic), "config")
    assert needle in refused.value.message


def test_an_external_model_cannot_be_a_shadow():
    external = {"name": "ext", "shadow_percentage": 10, "external_model": {
        "name": "gpt", "provider": "openai", "task": "llm/v1/chat",
        "openai_config": {"openai_api_key": "{{secrets/s/k}}"}}}
    with pytest.raises(InvalidParameter) as refused:
        validate_config({"served_entities": [external]}, "config")
    assert "an external model cannot be a shadow" in refused.value.message
