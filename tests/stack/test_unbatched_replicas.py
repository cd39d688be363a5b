"""Replicas and batching share the cores, end to end through `podium up`: under the same concurrent load a
Small endpoint whose model does not batch (a custom pyfunc) grows past its one replica, up to four, while a
Small scikit-learn endpoint (its replica merges the requests into one model call) stays at one; the
unbatched one goes back to one replica after the scale-down window."""

from __future__ import annotations

import json

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.readiness import BATCHING_HEALTH_SERVICE
from tests.support.load import SteadyLoad
from tests.support.models import register_sklearn_classifier
from tests.support.slow_model import register_slow_model
from tests.support.stack import start_stack, wait_for, worker_pids

pytestmark = pytest.mark.stack

FAST = {   # the default 4 requests per replica; seconds-scale windows
    "PODIUM_SCALER_INTERVAL_S": "0.25",
    "PODIUM_SCALE_DOWN_WINDOW_S": "3",
    "PODIUM_HEARTBEAT_INTERVAL_S": "0.25",
    "PODIUM_METRICS_INTERVAL_S": "0.2",
    "PODIUM_METRICS_TTL_S": "2",
    "PODIUM_QUEUE_TIMEOUT_S": "60",
    "PODIUM_WORKER_STOP_GRACE_S": "5",
}
SMALL = {"workload_size": "Small", "scale_to_zero_enabled": False}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = start_stack(tmp_path_factory.mktemp("unbatched"), FAST)
    yield running
    running.stop()


def _state(stack, name: str) -> dict:
    return stack.api("GET", f"/api/2.0/serving-endpoints/{name}").json()["config"]["served_entities"][0]["state"]


def _records(stack, pids: list[int]) -> list[dict]:
    """The scaler's replica records (what a restarted scaler adopts) of these worker processes."""
    records = [json.loads(p.read_text()) for p in (stack.data_dir / "replicas").glob("*.json")]
    return [r for r in records if r["pid"] in pids]


def _batching_health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=BATCHING_HEALTH_SERVICE), timeout=5)
    return reply.status


def _load(stack, name: str, model) -> SteadyLoad:
    return SteadyLoad([stack.url], f"/serving-endpoints/{name}/invocations", stack.admin_token,
                      {"dataframe_records": model.frame.to_dict(orient="records")}, clients=16, timeout_s=30)


def test_an_unbatched_small_endpoint_grows_under_load_a_batching_one_stays_at_one(stack):
    custom = register_slow_model(stack.info, "main.default.unbatched", delay_s=0.05)
    sklearn = register_sklearn_classifier(stack.info, "main.default.batched", seed=3)
    custom_uri, sklearn_uri = f"models:/{custom.name}/{custom.version}", f"models:/{sklearn.name}/{sklearn.version}"
    for name, model in (("unbatched", custom), ("batched", sklearn)):
        stack.serve(name, [{"entity_name": model.name, "entity_version": model.version, **SMALL}])
    assert (_state(stack, "unbatched")["desired_replicas"], _state(stack, "batched")["desired_replicas"]) == (1, 1)

    # Each replica said whether its model batches: on its ready line (kept in its record) and in gRPC health.
    [custom_record] = _records(stack, worker_pids(stack.data_dir, custom_uri))
    [sklearn_record] = _records(stack, worker_pids(stack.data_dir, sklearn_uri))
    assert (custom_record["is_batching"], sklearn_record["is_batching"]) == (False, True)
    assert _batching_health(custom_record["address"]) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert _batching_health(sklearn_record["address"]) == health_pb2.HealthCheckResponse.SERVING

    # The same 16 clients on each, at the same time, so every scaler pass sees both loads.
    batched_desired: set[int] = set()

    def grown() -> bool:
        batched_desired.add(_state(stack, "batched")["desired_replicas"])
        return _state(stack, "unbatched")["ready_replicas"] >= 2

    with _load(stack, "unbatched", custom) as unbatched_load, _load(stack, "batched", sklearn) as batched_load:
        unbatched_load.wait_for_answers(50, timeout_s=30)
        batched_load.wait_for_answers(50, timeout_s=30)
        wait_for(grown, timeout_s=30, interval_s=0.1, what="a second ready replica of the unbatched endpoint")
        served = batched_load.ok()
        # Requests go on through the grown endpoint; the batching one has been under load as long.
        unbatched_load.wait_for_answers(50, timeout_s=30)
        wait_for(lambda: batched_load.ok() >= served + 100, timeout_s=30, what="more batched answers")
        grown_to = _state(stack, "unbatched")["desired_replicas"]
        batched_desired.add(_state(stack, "batched")["desired_replicas"])
        assert len(worker_pids(stack.data_dir, sklearn_uri)) == 1
    assert unbatched_load.failed() == 0 and batched_load.failed() == 0, (unbatched_load.summary(),
                                                                         batched_load.summary())
    assert 2 <= grown_to <= 4, grown_to     # a Small entity: 4 concurrent requests at 1 per replica
    assert batched_desired == {1}, batched_desired

    # Idle again: back to the one replica a Small entity idles on, after the 3 s down window.
    wait_for(lambda: len(worker_pids(stack.data_dir, custom_uri)) == 1, timeout_s=30, what="back to one replica")
    assert _state(stack, "unbatched")["desired_replicas"] == 1
