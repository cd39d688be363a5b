"""Pure policies, as tables: traffic split, replica choice, scaler plan and replica bounds."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import pytest

from services.common.capacity import concurrency_bounds, concurrency_per_replica, replica_bounds
from services.router.policy.replica_choice import pick_replica
from services.router.policy.traffic import pick_served_entity
from services.scaler.policy import Start, Stop, plan


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


@pytest.mark.parametrize("entity, concurrency, replicas", [
    pytest.param({"workload_size": "Small"}, (4, 4), (1, 1), id="small: up to 4"),
    pytest.param({"workload_size": "Medium"}, (8, 16), (2, 4), id="medium: 8-16, so at least two replicas"),
    pytest.param({"workload_size": "Large"}, (16, 64), (4, 16), id="large: 16-64"),
    pytest.param({}, (4, 4), (1, 1), id="no size: small"),
    pytest.param({"workload_size": "Small", "scale_to_zero_enabled": True}, (4, 4), (1, 1),
                 id="scale to zero keeps the serving floor (the policy decides zero)"),
    pytest.param({"min_provisioned_concurrency": 8, "max_provisioned_concurrency": 12}, (8, 12), (2, 3),
                 id="explicit"),
    pytest.param({"min_provisioned_concurrency": 0, "max_provisioned_concurrency": 2}, (0, 2), (1, 1),
                 id="explicit zero still serves with one"),
    pytest.param({"workload_size": "Small", "min_provisioned_concurrency": 12}, (12, 12), (3, 3),
                 id="min above the size's max lifts the max"),
])
def test_concurrency_and_replica_bounds(entity, concurrency, replicas):
    assert concurrency_bounds(entity) == concurrency
    assert replica_bounds(*concurrency, per_replica=4) == replicas


def test_replica_bounds_follow_the_target_per_replica():
    assert replica_bounds(8, 16, per_replica=2) == (4, 8)
    assert replica_bounds(8, 16, per_replica=16) == (1, 1)


@pytest.mark.parametrize("is_batching, target, unbatched, want", [
    pytest.param(True, 4.0, 1.0, 4.0, id="batching: the target"),
    pytest.param(None, 4.0, 1.0, 4.0, id="not known yet: the target, as if it batched"),
    pytest.param(False, 4.0, 1.0, 1.0, id="not batching: one request per replica"),
    pytest.param(False, 4.0, 2.0, 2.0, id="not batching, two per replica set"),
    pytest.param(False, 0.5, 1.0, 0.5, id="never more than the target"),
])
def test_concurrency_per_replica(is_batching, target, unbatched, want):
    assert concurrency_per_replica(target, unbatched, is_batching) == want


@pytest.mark.parametrize("concurrency, peak_per_replica, replicas", [
    pytest.param((4, 4), 1.0, (1, 4), id="small, not batching: idles on one, up to four"),
    pytest.param((8, 16), 1.0, (2, 16), id="medium, not batching: at least two, up to sixteen"),
    pytest.param((16, 64), 1.0, (4, 64), id="large, not batching"),
    pytest.param((0, 2), 1.0, (1, 2), id="explicit zero still serves with one"),
    pytest.param((4, 4), 4.0, (1, 1), id="the target itself: as before"),
    pytest.param((4, 4), None, (1, 1), id="no peak: as before"),
])
def test_replica_bounds_size_the_max_alone_by_the_peak_per_replica(concurrency, peak_per_replica, replicas):
    assert replica_bounds(*concurrency, per_replica=4, peak_per_replica=peak_per_replica) == replicas
