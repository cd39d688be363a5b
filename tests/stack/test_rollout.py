"""Canary rollouts end to end under steady load (docs/progressive-delivery.md), on a stack of their own with
short intervals: a candidate answering 500 on 20 % of its requests is rolled back during its first step,
the only failures callers see being the candidate's own (within the step's 5 % share); a healthy candidate
is promoted through every step with not one failed query; a control plane killed mid-rollout comes back
at the step it was in and finishes it, and a scaler killed mid-step changes nothing; moving the `@champion`
alias an endpoint follows starts a rollout."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import requests

from tests.support.flaky_model import register_flaky_model
from tests.support.stack import FAULTS, service_pids, start_stack, wait_for, worker_pids

pytestmark = pytest.mark.stack

MODEL = "main.default.flaky"
# A healthy candidate's first answers come from a fresh replica on a shared machine: its p99 over a few
# requests is its slowest one, so the healthy cases allow a wider latency slack than the default 50 ms.
LENIENT = {"p99_latency_slack_ms": 500}


@pytest.fixture(scope="module")
def rollout_stack(tmp_path_factory):
    running = start_stack(tmp_path_factory.mktemp("rollouts"), {**FAULTS, "PODIUM_ROLLOUT_INTERVAL_S": "0.2",
                                                                          "PODIUM_ALIAS_INTERVAL_S": "0.5"})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def versions(rollout_stack):
    """Version 1 and 3 healthy, version 2 failing 20 % of its requests."""
    return {label: register_flaky_model(rollout_stack.info, MODEL, rate, label)
            for label, rate in (("v1", 0.0), ("v2", 0.2), ("v3", 0.0))}


class Load:
    """Four clients querying `name` back to back; each answer kept as (monotonic time, status, served entity,
    body of a failure)."""

    def __init__(self, stack, name: str, clients: int = 4):
        self.answers: list[tuple[float, int | str, str, str]] = []
        self._url = f"{stack.url}/serving-endpoints/{name}/invocations"
        self._headers = {"Authorization": f"Bearer {stack.admin_token}"}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with requests.Session() as session:   # plain requests: no client-side retry may hide a failure
            while not self._stop.is_set():
                try:
                    reply = session.post(self._url, json={"dataframe_split": {"columns": ["x"], "data": [[1.0]]}},
                                         headers=self._headers, timeout=30)
                    answer = (reply.status_code, reply.headers.get("served-model-name", ""),
                              reply.text[:300] if reply.status_code != 200 else "")
                except requests.RequestException as exc:
                    answer = (type(exc).__name__, "", str(exc)[:300])
                self.answers.append((time.monotonic(), *answer))

    def failures(self, since: float = 0.0) -> list[tuple]:
        return [a for a in self.answers if a[1] != 200 and a[0] >= since]

    def wait_for_answers(self, count: int, timeout_s: float = 60.0) -> None:
        target = len(self.answers) + count
        wait_for(lambda: len(self.answers) >= target, timeout_s=timeout_s, interval_s=0.05,
                 what=f"{count} more answers")

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


def _entity(model) -> dict:
    return {"entity_name": model.name, "entity_version": model.version, "max_batch_size": 1}


def _rollout(stack, name: str) -> dict:
    reply = stack.api("GET", f"/api/2.0/serving-endpoints/{name}/rollout")
    assert reply.status_code == 200, reply.text
    return reply.json()


def _wait_phase(stack, name: str, phases: tuple[str, ...], timeout_s: float = 180.0, step: int | None = None) -> dict:
    def reached():
        rollout = _rollout(stack, name)["rollout"]
        return rollout if rollout and rollout["phase"] in phases and step in (None, rollout["step"]) else None
    return wait_for(reached, timeout_s=timeout_s, interval_s=0.1, what=f"rollout of {name} to reach {phases}")


def _update(stack, name: str, model, plan: dict) -> None:
    reply = stack.api("PUT", f"/api/2.0/serving-endpoints/{name}/config",
                      json={"served_entities": [_entity(model)], "rollout_plan": plan})
    assert reply.status_code == 200, reply.text
    assert reply.json()["rollout"]["phase"] == "WAITING"


def test_a_candidate_failing_20_percent_is_rolled_back_at_its_first_gate(rollout_stack, versions):
    stack, name = rollout_stack, "canary-bad"
    stack.serve(name, [_entity(versions["v1"])])
    plan = {"steps": [{"traffic_percentage": 5, "min_duration_s": 120, "min_requests": 40}, 50, 100],
            "min_step_duration_s": 5, "min_step_requests": 20}
    with Load(stack, name) as load:
        load.wait_for_answers(50)
        _update(stack, name, versions["v2"], plan)
        running = _wait_phase(stack, name, ("RUNNING",), timeout_s=120)
        started = time.monotonic()
        rolled_back = _wait_phase(stack, name, ("ROLLED_BACK",), timeout_s=120)
        judged = time.monotonic()
        wait_for(lambda: not worker_pids(stack.data_dir, f"models:/{MODEL}/{versions['v2'].version}"), timeout_s=60,
                 what="the candidate's replica to stop")
        after = time.monotonic()
        load.wait_for_answers(100)
    assert running["step"] == 1 and running["candidate_traffic_percentage"] == 5
    assert rolled_back["step"] == 1 and "error rate" in rolled_back["reason"], rolled_back
    judgement = rolled_back["last_judgement"]
    assert judgement["decision"] == "ROLLBACK" and judgement["candidate"]["requests"] >= 40
    endpoint = stack.api("GET", f"/api/2.0/serving-endpoints/{name}").json()
    assert endpoint["state"]["config_update"] == "UPDATE_FAILED" and endpoint["config"]["config_version"] == 1
    [aborted] = endpoint["pending_config"]["served_entities"]   # the reason is shown where Databricks shows it
    assert aborted["state"]["deployment"] == "DEPLOYMENT_ABORTED"
    assert "error rate" in aborted["state"]["deployment_state_message"]
    assert endpoint["rollout"]["phase"] == "ROLLED_BACK"

    failures = load.failures()
    during = [a for a in load.answers if started <= a[0] <= judged]
    candidate_answers = [a for a in during if a[2] == f"flaky-{versions['v2'].version}"]
    print(f"rollback: {len(failures)} failed of {len(during)} queries during the canary step "
          f"({len(candidate_answers)} answered 200 by the candidate), {len(load.answers)} in all")
    # Every failure is the candidate's own 500, none the rollout's nor the incumbent's ...
    assert all(a[1] == 500 and "injected failure of v2" in a[3] for a in failures), failures[:5]
    # ... within the canary share: at most 5 % of the queries while it ran ...
    assert len(failures) <= 0.05 * len(during) + 2, (len(failures), len(during))
    # ... and none once the candidate's replica is gone: the incumbent serves alone.
    assert not load.failures(since=after)
    assert {a[2] for a in load.answers if a[0] > after} == {f"flaky-{versions['v1'].version}"}
    stack.api("DELETE", f"/api/2.0/serving-endpoints/{name}")


def test_a_healthy_candidate_is_promoted_through_every_step(rollout_stack, versions):
    stack, name = rollout_stack, "canary-good"
    stack.serve(name, [_entity(versions["v1"])])
    plan = {"steps": [10, 50, 100], "min_step_duration_s": 2, "min_step_requests": 15, "gates": LENIENT}
    with Load(stack, name) as load:
        load.wait_for_answers(50)
        _update(stack, name, versions["v3"], plan)
        _wait_phase(stack, name, ("PROMOTED", "ROLLED_BACK"), timeout_s=180)
        load.wait_for_answers(50)
    rollout = _rollout(stack, name)
    assert rollout["rollout"]["phase"] == "PROMOTED", rollout
    assert [(e["phase"], e["step"]) for e in rollout["events"]] == [
        ("WAITING", 1), ("RUNNING", 1), ("RUNNING", 2), ("RUNNING", 3), ("PROMOTED", 3)]
    assert not load.failures(), load.failures()[:5]
    endpoint = stack.api("GET", f"/api/2.0/serving-endpoints/{name}").json()
    assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    assert [e["entity_version"] for e in endpoint["config"]["served_entities"]] == [versions["v3"].version]
    served = [a[2] for a in load.answers]
    assert f"flaky-{versions['v3'].version}" in served and served[-1] == f"flaky-{versions['v3'].version}"
    stack.api("DELETE", f"/api/2.0/serving-endpoints/{name}")


def test_a_control_plane_restart_mid_rollout_resumes_it_where_it_was(rollout_stack, versions):
    stack, name = rollout_stack, "canary-restart"
    stack.serve(name, [_entity(versions["v1"])])
    plan = {"steps": [{"traffic_percentage": 10, "min_duration_s": 2, "min_requests": 15},
                      {"traffic_percentage": 50, "min_duration_s": 20, "min_requests": 15}, 100],
            "min_step_duration_s": 2, "min_step_requests": 15, "gates": LENIENT}
    with Load(stack, name) as load:
        load.wait_for_answers(50)
        _update(stack, name, versions["v3"], plan)
        before = _wait_phase(stack, name, ("RUNNING",), step=2, timeout_s=180)
        [control_plane] = service_pids(stack.data_dir, "services.control_plane")
        os.kill(control_plane, signal.SIGKILL)
        wait_for(lambda: [p for p in service_pids(stack.data_dir, "services.control_plane") if p != control_plane],
                 what="podium up to restart the control plane")
        wait_for(lambda: stack.api("GET", f"/api/2.0/serving-endpoints/{name}").status_code == 200,
                 what="the control plane to answer again")
        after = _rollout(stack, name)["rollout"]
        assert (after["phase"], after["step"], after["step_started_timestamp"]) == \
            ("RUNNING", 2, before["step_started_timestamp"])   # the same step and window, not step 1 again
        _wait_phase(stack, name, ("PROMOTED", "ROLLED_BACK"), timeout_s=180)
        load.wait_for_answers(30)
    rollout = _rollout(stack, name)
    assert rollout["rollout"]["phase"] == "PROMOTED", rollout
    assert [(e["phase"], e["step"]) for e in rollout["events"]] == [
        ("WAITING", 1), ("RUNNING", 1), ("RUNNING", 2), ("RUNNING", 3), ("PROMOTED", 3)]
    assert not load.failures(), load.failures()[:5]
    stack.api("DELETE", f"/api/2.0/serving-endpoints/{name}")


def test_a_scaler_restart_mid_rollout_leaves_it_where_it_was(rollout_stack, versions):
    """The rollout is the control plane's: a scaler killed mid-step comes back, adopts the replicas, and the
    rollout carries on from its step."""
    stack, name = rollout_stack, "canary-scaler"
    stack.serve(name, [_entity(versions["v1"])])
    plan = {"steps": [{"traffic_percentage": 10, "min_duration_s": 15, "min_requests": 15}, 100],
            "min_step_duration_s": 2, "min_step_requests": 15, "gates": LENIENT}
    with Load(stack, name) as load:
        load.wait_for_answers(50)
        _update(stack, name, versions["v3"], plan)
        before = _wait_phase(stack, name, ("RUNNING",), step=1, timeout_s=180)
        [scaler] = service_pids(stack.data_dir, "services.scaler")
        os.kill(scaler, signal.SIGKILL)
        wait_for(lambda: [p for p in service_pids(stack.data_dir, "services.scaler") if p != scaler],
                 what="podium up to restart the scaler")
        after = _rollout(stack, name)["rollout"]
        assert (after["phase"], after["step_started_timestamp"]) == ("RUNNING", before["step_started_timestamp"])
        _wait_phase(stack, name, ("PROMOTED", "ROLLED_BACK"), timeout_s=180)
        load.wait_for_answers(30)
    rollout = _rollout(stack, name)
    assert rollout["rollout"]["phase"] == "PROMOTED", rollout
    assert [(e["phase"], e["step"]) for e in rollout["events"]] == [
        ("WAITING", 1), ("RUNNING", 1), ("RUNNING", 2), ("PROMOTED", 2)]
    assert not load.failures(), load.failures()[:5]
    stack.api("DELETE", f"/api/2.0/serving-endpoints/{name}")


def test_manual_operations_answer_on_the_wire(rollout_stack, versions):
    stack, name = rollout_stack, "canary-manual"
    stack.serve(name, [_entity(versions["v1"])])
    reply = stack.api("POST", f"/api/2.0/serving-endpoints/{name}/rollout/pause")
    assert reply.status_code == 409 and reply.json()["error_code"] == "RESOURCE_CONFLICT"
    reply = stack.api("PUT", f"/api/2.0/serving-endpoints/{name}/config",
                      json={"served_entities": [_entity(versions["v3"])], "rollout_plan": {"steps": [50, 10]}})
    assert reply.status_code == 400 and reply.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "config.rollout_plan.steps" in reply.json()["message"]
    _update(stack, name, versions["v3"], {"steps": [10, 100], "min_step_duration_s": 600})
    _wait_phase(stack, name, ("RUNNING",), timeout_s=120)
    paused = stack.api("POST", f"/api/2.0/serving-endpoints/{name}/rollout/pause")
    assert paused.status_code == 200 and paused.json()["rollout"]["phase"] == "PAUSED"
    promoted = stack.api("POST", f"/api/2.0/serving-endpoints/{name}/rollout/promote")
    assert promoted.status_code == 200 and promoted.json()["rollout"]["phase"] == "PROMOTED"
    endpoint = stack.wait_endpoint(name)
    assert endpoint["state"]["config_update"] == "NOT_UPDATING"
    assert endpoint["config"]["served_entities"][0]["entity_version"] == versions["v3"].version
    stack.api("DELETE", f"/api/2.0/serving-endpoints/{name}")


def test_moving_the_champion_alias_starts_a_rollout_to_the_new_version(rollout_stack, versions):
    from mlflow import MlflowClient

    stack, name = rollout_stack, "canary-alias"
    client = MlflowClient(tracking_uri=stack.info["tracking_uri"], registry_uri=stack.info["registry_uri"])
    client.set_registered_model_alias(MODEL, "champion", versions["v1"].version)
    plan = {"steps": [10, 100], "min_step_duration_s": 2, "min_step_requests": 15, "gates": LENIENT}
    created = stack.api("POST", "/api/2.0/serving-endpoints", json={"name": name, "config": {
        "served_entities": [{"entity_name": MODEL, "entity_version": "@champion", "name": "champion"}],
        "rollout_plan": plan}})
    assert created.status_code == 200, created.text
    [entity] = created.json()["pending_config"]["served_entities"]
    assert (entity["entity_version"], entity["resolved_version"]) == ("champion", versions["v1"].version)
    assert stack.wait_endpoint(name)["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    with Load(stack, name) as load:
        load.wait_for_answers(50)
        client.set_registered_model_alias(MODEL, "champion", versions["v3"].version)   # one registry call
        running = _wait_phase(stack, name, ("RUNNING",), timeout_s=120)
        _wait_phase(stack, name, ("PROMOTED", "ROLLED_BACK"), timeout_s=180)
        load.wait_for_answers(30)
    assert running["config_version"] == 2
    endpoint = stack.api("GET", f"/api/2.0/serving-endpoints/{name}").json()
    assert endpoint["rollout"]["phase"] == "PROMOTED", endpoint["rollout"]
    [served] = endpoint["config"]["served_entities"]
    assert (served["entity_version"], served["resolved_version"]) == ("champion", versions["v3"].version)
    assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    assert worker_pids(stack.data_dir, f"models:/{MODEL}/{versions['v3'].version}")
    assert not load.failures(), load.failures()[:5]
    stack.api("DELETE", f"/api/2.0/serving-endpoints/{name}")
