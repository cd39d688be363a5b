"""Fallback order and which failures fall back (services/router/policy/fallback.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from services.router.policy.fallback import fallback_routes, is_fallback_status


@dataclass(frozen=True)
class Route:
    served_entity_name: str


ROUTES = [Route("a"), Route("b"), Route("c")]


@pytest.mark.parametrize("first, order, want", [
    pytest.param("a", ("a", "b", "c"), ["a", "b", "c"], id="first listed: the rest in order"),
    pytest.param("b", ("a", "b", "c"), ["b", "c", "a"], id="round-robin from the one picked"),
    pytest.param("c", ("a", "c"), ["c", "a"], id="only the entities in the order"),
    pytest.param("a", (), ["a"], id="fallback off"),
    pytest.param("b", ("a", "c"), ["b"], id="picked entity outside the order"),
    pytest.param("a", ("a", "gone", "c"), ["a", "c"], id="a name no longer routed is skipped"),
])
def test_fallback_routes(first, order, want):
    picked = next(r for r in ROUTES if r.served_entity_name == first)
    assert [r.served_entity_name for r in fallback_routes(ROUTES, picked, order)] == want


@pytest.mark.parametrize("status, falls_back", [
    (429, True), (500, True), (502, True), (503, True), (504, True),
    (400, False), (403, False), (404, False), (499, False), (200, False),
])
def test_is_fallback_status(status, falls_back):
    assert is_fallback_status(status) is falls_back
