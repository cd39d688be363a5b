"""Autoscaling end to end through `podium up`, with seconds-scale windows set by settings: a load step
scales up without a failed request, idle time scales to zero processes and the next request still
succeeds, a killed or frozen replica is replaced and routed around, a scaler restart adopts the running
replicas, and a Redis outage holds replica counts while queries are served."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import grpc
import pytest
import requests

from podium_api.v1 import control_plane_pb2, control_plane_pb2_grpc
from tests.support.cli import podium
from tests.support.models import register_sklearn_classifier
from tests.support.slow_model import register_slow_model
from tests.support.stack import redis_pids, service_pids, start_stack, wait_for, worker_pids

pytestmark = pytest.mark.stack

FAST = {
    "PODIUM_SCALER_INTERVAL_S": "0.25",
    "PODIUM_SCALE_TO_ZERO_AFTER_S": "3",
    "PODIUM_SCALE_DOWN_WINDOW_S": "3",
    "PODIUM_TARGET_CONCURRENCY_PER_REPLICA": "2",
    "PODIUM_HEARTBEAT_INTERVAL_S": "0.25",
    "PODIUM_HEARTBEAT_EXPIRY_S": "1.5",
    "PODIUM_METRICS_INTERVAL_S": "0.2",
    "PODIUM_METRICS_TTL_S": "2",
    "PODIUM_QUEUE_TIMEOUT_S": "60",
    "PODIUM_WORKER_STOP_GRACE_S": "5",
}


@pytest.fixture(scope="module")
def fast_stack(tmp_path_factory):
    running = start_stack(tmp_path_factory.mktemp("autoscale"), FAST)
    yield running
    running.stop()


def _create(stack, name: str, model, **entity) -> dict:
    body = {"name": name, "config": {"served_entities": [
        {"entity_name": model.name, "entity_version": model.version, **entity}]}}
    reply = stack.api("POST", "/api/2.0/serving-endpoints", json=body)
    assert reply.status_code == 200, reply.text
    endpoint = stack.wait_endpoint(name)
    assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}, endpoint
    return endpoint


def _entity_state(stack, name: str) -> dict:
    endpoint = stack.api("GET", f"/api/2.0/serving-endpoints/{name}").json()
    return endpoint["config"]["served_entities"][0]["state"]


def state_name(endpoint: dict) -> str:
    return endpoint["config"]["served_entities"][0]["name"]


def _uri(model) -> str:
    return f"models:/{model.name}/{model.version}"


def _query(stack, name: str, model, timeout_s: float = 90.0) -> requests.Response:
    return requests.post(f"{stack.url}/serving-endpoints/{name}/invocations", timeout=timeout_s,
                         headers={"Authorization": f"Bearer {stack.admin_token}"},
                         json={"dataframe_records": model.frame.to_dict(orient="records")})


class RouteWatch:
    """Follows the control plane's routing-table stream (what every router follows) for one endpoint."""

    def __init__(self, stack, endpoint: str):
        self._channel = grpc.insecure_channel(stack.info["control_plane_target"])
        self._call = control_plane_pb2_grpc.ControlPlaneStub(self._channel).WatchRoutingTable(
            control_plane_pb2.WatchRoutingTableRequest(),   # an internal call: Podium's service credential
            metadata=(("authorization", f"Bearer {stack.router_credentials()['PODIUM_INTERNAL_TOKEN']}"),))
        self._endpoint = endpoint
        self.tables: list[tuple[float, set[str]]] = []  # (when received, replica addresses)
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def _follow(self):
        try:
            for table in self._call:
                for endpoint in table.endpoints:
                    if endpoint.name == self._endpoint:
                        addresses = {a for route in endpoint.routes for a in route.replica_addresses}
                        self.tables.append((time.monotonic(), addresses))
        except grpc.RpcError:
            pass  # cancelled at the end of the test

    def first_time_without(self, address: str, after: float) -> float | None:
        return next((at for at, addresses in list(self.tables) if at >= after and address not in addresses), None)

    def __enter__(self):
        self._thread.start()
        wait_for(lambda: self.tables, what="the first routing table")
        return self

    def __exit__(self, *exc):
        self._call.cancel()
        self._thread.join(10)
        self._channel.close()


def _replica_address(data_dir, pid: int) -> str:
    """The address of the replica with this pid, from the scaler's replica records."""
    import json

    for record in (data_dir / "replicas").glob("*.json"):
        content = json.loads(record.read_text())
        if content["pid"] == pid:
            return content["address"]
    raise AssertionError(f"no replica record for pid {pid}")


class Load:
    """`clients` threads sending requests back to back until stopped; keeps every status seen."""

    def __init__(self, stack, name: str, model, clients: int, timeout_s: float = 90.0):
        self.statuses: Counter = Counter()
        self.slowest_s = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(stack, name, model, timeout_s), daemon=True)
                         for _ in range(clients)]

    def _run(self, stack, name, model, timeout_s):
        with requests.Session() as session:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    status = session.post(f"{stack.url}/serving-endpoints/{name}/invocations", timeout=timeout_s,
                                          headers={"Authorization": f"Bearer {stack.admin_token}"},
                                          json={"dataframe_records": model.frame.to_dict(orient="records")}).status_code
                except requests.RequestException as exc:
                    status = type(exc).__name__
                with self._lock:
                    self.statuses[status] += 1
                    self.slowest_s = max(self.slowest_s, time.monotonic() - started)

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(120)


@pytest.fixture(scope="module")
def slow_model(fast_stack):
    return register_slow_model(fast_stack.info, "main.default.slow", delay_s=0.2)


@pytest.fixture(scope="module")
def iris(fast_stack):
    return register_sklearn_classifier(fast_stack.info, "main.default.iris_stz", seed=1)


@pytest.fixture(scope="module")
def sturdy(fast_stack):
    """Two replicas always (4 concurrent at 2 per replica), no scale to zero."""
    model = register_sklearn_classifier(fast_stack.info, "main.default.sturdy", seed=2)
    _create(fast_stack, "sturdy", model, min_provisioned_concurrency=4, max_provisioned_concurrency=4)
    wait_for(lambda: len(worker_pids(fast_stack.data_dir, _uri(model))) == 2 and
             _entity_state(fast_stack, "sturdy")["ready_replicas"] == 2, what="two ready replicas")
    return model


def test_load_step_scales_up_and_back_down_without_a_failed_request(fast_stack, slow_model):
    # 1 to 6 replicas (2 to 6 concurrent requests; the floor at 2 per replica, the max at 1 per replica, as
    # its model does not batch); each request takes 0.2 s.
    _create(fast_stack, "elastic", slow_model, min_provisioned_concurrency=2, max_provisioned_concurrency=6)
    state = _entity_state(fast_stack, "elastic")
    assert (state["desired_replicas"], state["ready_replicas"]) == (1, 1), state
    with Load(fast_stack, "elastic", slow_model, clients=6) as load:
        state = wait_for(lambda: (s := _entity_state(fast_stack, "elastic"))["ready_replicas"] >= 2 and s,
                         timeout_s=30, what="a second ready replica under load")
        assert state["desired_replicas"] >= 2
        served = load.statuses[200]
        wait_for(lambda: load.statuses[200] >= served + 30, timeout_s=30, interval_s=0.05,
                 what="requests served with the new replicas in the routing table")
    assert set(load.statuses) == {200}, load.statuses
    assert len(worker_pids(fast_stack.data_dir, _uri(slow_model))) >= 2

    # Idle again: back to one replica after the down window; a light load meanwhile never fails.
    with Load(fast_stack, "elastic", slow_model, clients=1) as light:
        wait_for(lambda: len(worker_pids(fast_stack.data_dir, _uri(slow_model))) == 1, timeout_s=30,
                 what="scale down to one replica")
    assert set(light.statuses) == {200} and light.statuses[200] > 5, light.statuses
    assert _entity_state(fast_stack, "elastic")["desired_replicas"] == 1


def test_idle_scale_to_zero_entity_goes_to_zero_processes_and_the_next_request_succeeds(fast_stack, iris, tmp_path):
    # One replica while it serves (0 to 2 concurrent requests at 2 per replica), zero when idle.
    _create(fast_stack, "sleepy", iris, min_provisioned_concurrency=0, max_provisioned_concurrency=2,
            scale_to_zero_enabled=True)
    assert len(worker_pids(fast_stack.data_dir, _uri(iris))) == 1
    wait_for(lambda: not worker_pids(fast_stack.data_dir, _uri(iris)), timeout_s=30, what="zero worker processes")
    endpoint = fast_stack.api("GET", "/api/2.0/serving-endpoints/sleepy").json()
    assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}  # as Databricks shows it
    state = endpoint["config"]["served_entities"][0]["state"]
    assert (state["desired_replicas"], state["ready_replicas"], state["deployment"]) == (0, 0, "DEPLOYMENT_READY")
    assert "scaled to zero" in state["deployment_state_message"]
    shown = podium("endpoints", "get", "sleepy", home=tmp_path, data_dir=fast_stack.data_dir)
    assert shown.returncode == 0, shown.stderr
    [row] = [line.split() for line in shown.stdout.splitlines() if line.strip().startswith(state_name(endpoint))]
    assert row[5:7] == ["0/0", "DEPLOYMENT_READY"], row  # REPLICAS ready/desired, then DEPLOYMENT

    started = time.monotonic()
    reply = _query(fast_stack, "sleepy", iris)
    cold_start_s = time.monotonic() - started
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"] == iris.model.predict(iris.frame).tolist()
    print(f"cold start from zero replicas: {cold_start_s:.2f} s")
    assert len(worker_pids(fast_stack.data_dir, _uri(iris))) == 1
    # Concurrent first requests after another idle period: all answered by the one cold start.
    wait_for(lambda: not worker_pids(fast_stack.data_dir, _uri(iris)), timeout_s=30, what="zero again")
    with Load(fast_stack, "sleepy", iris, clients=4) as burst:
        wait_for(lambda: burst.statuses[200] >= 8, timeout_s=60, what="the burst to be served")
    assert set(burst.statuses) == {200}, burst.statuses


def test_killed_replica_is_replaced_and_a_frozen_one_routed_around(fast_stack, sturdy):
    uri = _uri(sturdy)
    first, second = worker_pids(fast_stack.data_dir, uri)
    with Load(fast_stack, "sturdy", sturdy, clients=2) as load:
        os.kill(first, signal.SIGKILL)
        replaced = wait_for(lambda: len(p := worker_pids(fast_stack.data_dir, uri)) == 2 and first not in p and p,
                            what="a replacement for the killed replica")
        wait_for(lambda: _entity_state(fast_stack, "sturdy")["ready_replicas"] == 2, what="two ready again")
    assert set(load.statuses) == {200}, load.statuses

    assert second in replaced
    frozen = second
    frozen_address = _replica_address(fast_stack.data_dir, frozen)
    with RouteWatch(fast_stack, "sturdy") as routes:
        frozen_at = time.monotonic()
        os.kill(frozen, signal.SIGSTOP)  # alive, but answers nothing: only heartbeats can tell
        try:
            # The routing table every router follows drops it within the heartbeat expiry (1.5 s) plus a
            # heartbeat round (0.25 s interval, 0.75 s timeout) and the push.
            removed_at = wait_for(lambda: routes.first_time_without(frozen_address, after=frozen_at), timeout_s=10,
                                  interval_s=0.02, what="the frozen replica to leave the routing table")
            print(f"frozen replica out of the routing table after {removed_at - frozen_at:.2f} s")
            assert removed_at - frozen_at < 1.5 + 2.0, removed_at - frozen_at
            # From then on requests go to live replicas only: none waits on the frozen one.
            for _ in range(20):
                started = time.monotonic()
                assert _query(fast_stack, "sturdy", sturdy, timeout_s=10).status_code == 200
                assert time.monotonic() - started < 2.0
            wait_for(lambda: frozen not in worker_pids(fast_stack.data_dir, uri) and
                     len(worker_pids(fast_stack.data_dir, uri)) == 2, what="the frozen replica killed and replaced")
        finally:
            if frozen in worker_pids(fast_stack.data_dir, uri):
                os.kill(frozen, signal.SIGCONT)


def test_scaler_restart_adopts_running_replicas(fast_stack, sturdy, iris):
    uri = _uri(sturdy)
    # An entity with environment_vars runs as a fresh `python -m services.worker.sandbox`, not a template fork.
    plain = register_sklearn_classifier(fast_stack.info, "main.default.plain", seed=4)
    _create(fast_stack, "plain", plain, min_provisioned_concurrency=0, max_provisioned_concurrency=2,
            environment_vars={"PODIUM_TEST_MARK": "1"})
    assert _query(fast_stack, "plain", plain).json()["predictions"] == plain.model.predict(plain.frame).tolist()
    [plain_pid] = worker_pids(fast_stack.data_dir, _uri(plain))
    assert b"services.worker.sandbox" in open(f"/proc/{plain_pid}/cmdline", "rb").read().split(b"\0")
    wait_for(lambda: len(worker_pids(fast_stack.data_dir, uri)) == 2 and
             _entity_state(fast_stack, "sturdy")["ready_replicas"] == 2, what="two ready replicas")
    wait_for(lambda: not worker_pids(fast_stack.data_dir, _uri(iris)), timeout_s=30, what="sleepy at zero")
    before = worker_pids(fast_stack.data_dir, uri)
    [scaler] = service_pids(fast_stack.data_dir, "services.scaler")
    with Load(fast_stack, "sturdy", sturdy, clients=2) as load:
        os.kill(scaler, signal.SIGKILL)
        wait_for(lambda: [p for p in service_pids(fast_stack.data_dir, "services.scaler") if p != scaler],
                 what="podium up to restart the scaler")
        # The claim is about a span: a wrong decision of the new scaler (stop or replace a replica) would show
        # only after the heartbeat expiry or the down window, so the load runs past both.
        time.sleep(3.0)
    assert set(load.statuses) == {200}, load.statuses
    assert worker_pids(fast_stack.data_dir, uri) == before  # the same processes: nothing started or stopped
    assert worker_pids(fast_stack.data_dir, _uri(plain)) == [plain_pid]
    assert _query(fast_stack, "plain", plain).status_code == 200
    assert _entity_state(fast_stack, "sturdy")["ready_replicas"] == 2
    assert not worker_pids(fast_stack.data_dir, _uri(iris))  # what was at zero stays at zero
    assert _query(fast_stack, "sleepy", iris).status_code == 200  # and still starts on demand


def test_redis_outage_holds_replicas_and_queries_are_served(fast_stack, iris, sturdy):
    assert _query(fast_stack, "sleepy", iris).status_code == 200  # one replica now
    [redis_pid] = redis_pids(fast_stack.data_dir)
    # Frozen, not killed: `podium up` would restart a dead Redis at once; a frozen one is an outage.
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        # The claim is about a span: held past the scale-to-zero and down windows (3 s each), without metrics.
        time.sleep(3 + 3 + 1.5)
        assert len(worker_pids(fast_stack.data_dir, _uri(iris))) == 1, "held, not scaled to zero, without metrics"
        assert _query(fast_stack, "sturdy", sturdy, timeout_s=10).status_code == 200
        assert _query(fast_stack, "sleepy", iris, timeout_s=10).status_code == 200
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    wait_for(lambda: not worker_pids(fast_stack.data_dir, _uri(iris)), timeout_s=30,
             what="scale to zero once metrics are back")
    assert _entity_state(fast_stack, "sleepy")["desired_replicas"] == 0
