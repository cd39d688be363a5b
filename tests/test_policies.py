"""Pure policies, as tables: traffic split, replica choice, scaler plan and replica bounds."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import pytest

from services.common.capacity import replica_bounds
from services.router.policy.replica_choice import pick_replica
from services.router.policy.traffic import pick_served_entity
from services.scaler.policy import Start, Stop, desired_replicas, plan


@dataclass(frozen=True)
class R:
    served_entity_name: str
    traffic_percentage: int


ROUTES = (R("a", 70), R("b", 30))


@pytest.mark.parametrize("routes, draw, want", [
    pytest.param(ROUTES, 0.0, "a", id="first edge"),
    pytest.param(ROUTES, 0.6999, "a", id="just below the split"),
    pytest.param(ROUTES, 0.70, "b", id="on the split"),
    pytest.param(ROUTES, 0.99999999, "b", id="top edge"),
    pytest.param((R("a", 0), R("b", 100)), 0.0, "b", id="zero percent never wins"),
    pytest.param((R("a", 100), R("b", 0)), 0.999999, "a", id="last route with traffic takes the top"),
    pytest.param((R("a", 0),), 0.5, None, id="nothing takes traffic"),
    pytest.param((), 0.5, None, id="no routes"),
])
def test_pick_served_entity(routes, draw, want):
    picked = pick_served_entity(routes, draw)
    assert (picked.served_entity_name if picked else None) == want


def test_pick_served_entity_shares_over_10000_seeded_draws():
    rng = random.Random(7)
    counts = Counter(pick_served_entity(ROUTES, rng.random()).served_entity_name for _ in range(10_000))
    assert abs(counts["a"] / 10_000 - 0.70) < 0.02
    assert abs(counts["b"] / 10_000 - 0.30) < 0.02


def _draws(*values):
    it = iter(values)
    return lambda a, b: next(it)


@pytest.mark.parametrize("addresses, in_flight, draws, want", [
    pytest.param([], {}, (), None, id="no replica"),
    pytest.param(["x"], {"x": 9}, (), "x", id="one replica"),
    pytest.param(["x", "y"], {"x": 3, "y": 1}, (0, 0), "y", id="fewer in flight wins"),
    pytest.param(["x", "y"], {"x": 1, "y": 3}, (0, 0), "x", id="first drawn wins on fewer"),
    pytest.param(["x", "y"], {"x": 2, "y": 2}, (1, 0), "y", id="tie: the first drawn"),
    pytest.param(["x", "y", "z"], {"x": 5, "y": 0, "z": 5}, (2, 0), "z", id="second draw skips the first"),
])
def test_pick_replica(addresses, in_flight, draws, want):
    assert pick_replica(addresses, in_flight, _draws(*draws)) == want


@pytest.mark.parametrize("desired, running, want", [
    pytest.param({"a": 1}, {}, [Start("a")], id="start the first"),
    pytest.param({"a": 2}, {"a": ["a-1"]}, [Start("a")], id="top up"),
    pytest.param({"a": 1}, {"a": ["a-1", "a-2"]}, [Stop("a", "a-2")], id="shrink: newest goes"),
    pytest.param({}, {"a": ["a-1"]}, [Stop("a", "a-1")], id="deleted endpoint: all go"),
    pytest.param({"a": 1, "b": 1}, {"a": ["a-1"]}, [Start("b")], id="only what differs"),
])
def test_plan(desired, running, want):
    assert plan(desired, running) == want


@pytest.mark.parametrize("entity, want", [
    pytest.param({"workload_size": "Small"}, (1, 1), id="small"),
    pytest.param({"workload_size": "Medium"}, (2, 4), id="medium"),
    pytest.param({"workload_size": "Large"}, (4, 16), id="large"),
    pytest.param({"workload_size": "Small", "scale_to_zero_enabled": True}, (1, 1), id="keeps one until autoscaling"),
    pytest.param({"min_provisioned_concurrency": 8, "max_provisioned_concurrency": 12}, (2, 3), id="explicit"),
])
def test_replica_bounds(entity, want):
    assert replica_bounds(entity) == want


def test_desired_replicas_is_at_least_one():
    assert desired_replicas(0, 0) == 1
    assert desired_replicas(2, 4) == 2
