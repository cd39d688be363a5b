"""Canary rollouts through the control plane's core against a real database: the state machine's rollout
phases, the routing table's blend, the driver's judgements on fed outcome counters, the manual operations,
and a restart mid-rollout."""

from __future__ import annotations

import pytest

from services.common.deployments import DeploymentStatus
from services.common.errors import Conflict, InvalidParameter
from services.common.outcomes import BUCKETS, bucket_of
from services.control_plane.core import EndpointService
from services.control_plane.rollouts import RolloutService
from services.control_plane.state import (
    IN_PROGRESS, NOT_UPDATING, UPDATE_FAILED, deployment_key, has_active_rollout, routed_entities, with_rollout,
)
from services.control_plane.store import EndpointStore
from tests.support.identity import ADMIN_TOKEN, INTERNAL_TOKEN, start_identity

V1 = {"entity_name": "c.s.m", "entity_version": "1"}
V2 = {"entity_name": "c.s.m", "entity_version": "2"}
PLAN = {"steps": [10, 50, 100], "min_step_duration_s": 30, "min_step_requests": 20}


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class FedOutcomes:
    """What the routers published, as the test says: {router: {deployment key: [requests, errors, buckets]}}."""

    def __init__(self):
        self.counters: dict[str, dict[str, list[int]]] = {"r1": {}}

    def add(self, key: str, requests: int, errors: int = 0, latency_ms: float = 10.0) -> None:
        counts = self.counters["r1"].setdefault(key, [0] * (2 + BUCKETS))
        counts[0] += requests
        counts[1] += errors
        counts[2 + bucket_of(latency_ms)] += requests

    async def read(self):
        return {r: {k: list(v) for k, v in d.items()} for r, d in self.counters.items()}


async def _stack(database_url, clock, outcomes):
    identity = await start_identity(database_url)
    service = EndpointService(EndpointStore(identity.engine), identity.identity, clock=clock, report_expiry_s=1e9)
    await service.start()
    return service, RolloutService(service, outcomes, clock=clock)


async def _ready(service, *entities) -> None:
    keys = {d.served_entity_name: d.key for d in service.deployments(INTERNAL_TOKEN)}
    await service.report(INTERNAL_TOKEN, [DeploymentStatus(keys[name], (f"127.0.0.1:{9 + i}",))
                                          for i, name in enumerate(entities)])


async def _rolling(database_url, plan=PLAN):
    """An endpoint serving m-1, updated to m-2 with `plan`, whose m-2 replica is ready: step 1 runs."""
    clock, outcomes = Clock(), FedOutcomes()
    service, rollouts = await _stack(database_url, clock, outcomes)
    await service.create(ADMIN_TOKEN, {"name": "e", "config": {"served_entities": [V1]}})
    await _ready(service, "m-1")
    updated = await service.update_config(ADMIN_TOKEN, "e", {"served_entities": [V2], "rollout_plan": plan})
    assert updated["rollout"]["phase"] == "WAITING" and updated["rollout"]["candidate_traffic_percentage"] == 0
    assert _shares(service) == {"m-1": 100}   # nothing for the candidate until its replicas are ready
    await _ready(service, "m-1", "m-2")
    return service, rollouts, clock, outcomes


def _shares(service) -> dict[str, int]:
    [endpoint] = service.routing_table()
    return {r.served_entity_name: r.traffic_percentage for r in endpoint.routes}


def _keys(service) -> tuple[str, str]:
    endpoint = service._endpoints["e"]
    return (deployment_key(endpoint["id"], endpoint["pending_config"]["served_entities"][0]),
            deployment_key(endpoint["id"], endpoint["config"]["served_entities"][0]))


async def test_a_healthy_candidate_is_promoted_through_every_step(database_url):
    service, rollouts, clock, outcomes = await _rolling(database_url)
    candidate, incumbent = _keys(service)
    got = await service.get(ADMIN_TOKEN, "e")
    assert got["state"]["config_update"] == IN_PROGRESS and got["rollout"]["phase"] == "RUNNING"
    for step, share in enumerate((10, 50, 100), start=1):
        assert _shares(service) == {"m-1": 100 - share, "m-2": share}
        await rollouts.tick()   # the window's baseline
        outcomes.add(candidate, 25)
        outcomes.add(incumbent, 100)
        await rollouts.tick()
        view = (await rollouts.get(ADMIN_TOKEN, "e"))["rollout"]
        assert view["step"] == step and view["last_judgement"]["decision"] == "HOLD"   # duration not over
        assert view["last_judgement"]["candidate"]["requests"] == 25
        clock.now += 30
        await rollouts.tick()
    got = await service.get(ADMIN_TOKEN, "e")
    assert got["state"]["config_update"] == NOT_UPDATING and "pending_config" not in got
    assert got["config"]["config_version"] == 2 and got["rollout"]["phase"] == "PROMOTED"
    assert _shares(service) == {"m-2": 100}
    events = (await rollouts.get(ADMIN_TOKEN, "e"))["events"]
    assert [(e["phase"], e["step"]) for e in events] == [
        ("WAITING", 1), ("RUNNING", 1), ("RUNNING", 2), ("RUNNING", 3), ("PROMOTED", 3)]


async def test_a_candidate_failing_its_error_gate_is_rolled_back_at_once(database_url):
    service, rollouts, clock, outcomes = await _rolling(database_url)
    candidate, incumbent = _keys(service)
    await rollouts.tick()
    outcomes.add(candidate, 20, errors=4)   # 20 % errors, before the step's duration is over
    outcomes.add(incumbent, 180)
    await rollouts.tick()
    got = await service.get(ADMIN_TOKEN, "e")
    assert got["state"]["config_update"] == UPDATE_FAILED and got["config"]["config_version"] == 1
    assert got["rollout"]["phase"] == "ROLLED_BACK" and "error rate 20.0%" in got["rollout"]["reason"]
    assert got["pending_config"]["served_entities"][0]["state"]["deployment"] == "DEPLOYMENT_ABORTED"
    assert _shares(service) == {"m-1": 100}
    assert [d.served_entity_name for d in service.deployments(INTERNAL_TOKEN)] == ["m-1"]  # the candidate retires


async def test_a_restart_mid_rollout_resumes_at_the_same_step_and_window(database_url):
    service, rollouts, clock, outcomes = await _rolling(database_url)
    candidate, incumbent = _keys(service)
    await rollouts.tick()
    outcomes.add(candidate, 25)
    outcomes.add(incumbent, 100)
    clock.now += 30
    await rollouts.tick()
    assert _shares(service) == {"m-1": 50, "m-2": 50}
    await rollouts.tick()   # step 2's baseline is stored
    outcomes.add(candidate, 25)
    restarted, again = await _stack(database_url, clock, outcomes)
    await _ready(restarted, "m-1", "m-2")
    assert _shares(restarted) == {"m-1": 50, "m-2": 50}
    clock.now += 30
    await again.tick()   # the stored baseline: the 25 requests before the restart count
    assert _shares(restarted) == {"m-1": 0, "m-2": 100}


async def test_manual_pause_resume_promote_and_abort(database_url):
    service, rollouts, clock, outcomes = await _rolling(database_url)
    candidate, _ = _keys(service)
    paused = await rollouts.pause(ADMIN_TOKEN, "e")
    assert paused["rollout"]["phase"] == "PAUSED" and paused["rollout"]["reason"] == "paused by admin"
    with pytest.raises(Conflict):
        await rollouts.pause(ADMIN_TOKEN, "e")
    await rollouts.tick()
    outcomes.add(candidate, 50)
    clock.now += 60
    await rollouts.tick()   # paused: never judged
    assert _shares(service) == {"m-1": 90, "m-2": 10}
    resumed = await rollouts.resume(ADMIN_TOKEN, "e")
    assert resumed["rollout"]["phase"] == "RUNNING" and resumed["rollout"]["step"] == 1
    promoted = await rollouts.promote(ADMIN_TOKEN, "e")
    assert promoted["rollout"]["phase"] == "PROMOTED"
    assert (await service.get(ADMIN_TOKEN, "e"))["config"]["config_version"] == 2
    with pytest.raises(Conflict):
        await rollouts.abort(ADMIN_TOKEN, "e")

    await service.update_config(ADMIN_TOKEN, "e", {"served_entities": [V1], "rollout_plan": PLAN})
    aborted = await rollouts.abort(ADMIN_TOKEN, "e")   # still WAITING for its replicas
    assert aborted["rollout"]["phase"] == "ABORTED" and aborted["rollout"]["reason"] == "aborted by admin"
    got = await service.get(ADMIN_TOKEN, "e")
    assert got["state"]["config_update"] == UPDATE_FAILED and got["config"]["config_version"] == 2


async def test_an_update_without_a_plan_or_without_a_candidate_is_a_plain_update(database_url):
    clock = Clock()
    service, _ = await _stack(database_url, clock, FedOutcomes())
    with pytest.raises(InvalidParameter):
        await service.create(ADMIN_TOKEN, {"name": "bad", "config": {"served_entities": [V1],
                                                                      "rollout_plan": {"steps": [50, 10]}}})
    created = await service.create(ADMIN_TOKEN, {"name": "e", "config": {"served_entities": [V1],
                                                                          "rollout_plan": PLAN}})
    assert "rollout" not in created and created["pending_config"]["rollout_plan"]["steps"][0]["traffic_percentage"] == 10
    await _ready(service, "m-1")
    # Only the routes (here: the served entity's name) change, which runs nothing new: nothing to judge.
    renamed = await service.update_config(ADMIN_TOKEN, "e", {"served_entities": [{**V1, "name": "other"}],
                                                             "rollout_plan": PLAN})
    assert "rollout" not in renamed


def test_blend_follows_the_current_step_and_ignores_finished_rollouts():
    entity_1 = {"name": "a", "entity_name": "c.s.m", "entity_version": "1"}
    entity_2 = {"name": "b", "entity_name": "c.s.m", "entity_version": "2"}

    def config(entity, version, plan=None):
        out = {"served_entities": [entity], "config_version": version,
               "traffic_config": {"routes": [{"served_entity_name": entity["name"], "traffic_percentage": 100}]}}
        return {**out, "rollout_plan": plan} if plan else out

    from services.control_plane.rollout_policy import validate_rollout_plan
    plan = validate_rollout_plan({"steps": [5, 25]}, "p")
    endpoint = {"id": "e1", "name": "e", "config": config(entity_1, 1), "pending_config": config(entity_2, 2, plan),
                "state": {"ready": "READY", "config_update": IN_PROGRESS}}
    rolling = with_rollout(endpoint, 5)
    assert has_active_rollout(rolling)
    assert [(e["name"], p) for e, p, _ in routed_entities(rolling)] == [("a", 100)]     # WAITING
    running = {**rolling, "rollout": {**rolling["rollout"], "phase": "RUNNING", "step": 1}}
    assert [(e["name"], p) for e, p, _ in routed_entities(running)] == [("a", 75), ("b", 25)]
    finished = {**running, "rollout": {**running["rollout"], "phase": "ROLLED_BACK"}}
    assert [(e["name"], p) for e, p, _ in routed_entities(finished)] == [("a", 100)]


async def test_adding_a_shadow_entity_with_a_plan_is_a_plain_update(database_url):
    service, _ = await _stack(database_url, Clock(), FedOutcomes())
    await service.create(ADMIN_TOKEN, {"name": "e", "config": {"served_entities": [V1]}})
    await _ready(service, "m-1")
    updated = await service.update_config(ADMIN_TOKEN, "e", {
        "served_entities": [V1, {**V2, "shadow_percentage": 20}], "rollout_plan": PLAN,
        "traffic_config": {"routes": [{"served_entity_name": "m-1", "traffic_percentage": 100}]}})
    assert "rollout" not in updated   # the shadow answers no caller: nothing to judge
    await _ready(service, "m-1", "m-2")
    [endpoint] = service.routing_table()
    assert [(r.served_entity_name, r.traffic_percentage, r.shadow_percentage) for r in endpoint.routes] == [
        ("m-1", 100, 0), ("m-2", 0, 20)]
    with pytest.raises(InvalidParameter):   # a shadow takes no traffic of its own
        await service.update_config(ADMIN_TOKEN, "e", {
            "served_entities": [V1, {**V2, "shadow_percentage": 20}],
            "traffic_config": {"routes": [{"served_entity_name": "m-1", "traffic_percentage": 50},
                                          {"served_entity_name": "m-2", "traffic_percentage": 50}]}})
