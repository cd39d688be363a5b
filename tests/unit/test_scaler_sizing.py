"""The scaler sizes a deployment by whether its model batches, as its first ready replica said: a Small CPU
entity whose model does not batch grows to four replicas under load, one that batches, or that no replica has
said, stays at one. A replica that became ready by health checks (a container, a pod, an adopted process) is
asked over gRPC health instead of its ready line."""

from __future__ import annotations

import pytest

from services.common.deployments import Deployment
from services.common.readiness import BATCHING_HEALTH_SERVICE
from services.scaler.core import Scaler, ScalingSettings
from services.scaler.health_rounds import check_round
from services.scaler.policy import LoadSample
from services.scaler.replica import READY, STARTING, Replica


class FakeControlPlane:
    def __init__(self, deployment: Deployment):
        self.deployment = deployment
        self.reports: list = []

    async def list_deployments(self):
        return [self.deployment]

    async def report_deployments(self, statuses, scaler_target):
        self.reports.append({s.key: s for s in statuses})


class FakeRuntime:
    """Replicas as the test sets them; start() adds a STARTING one."""

    def __init__(self):
        self.on_change = lambda: None
        self.by_id: dict[str, Replica] = {}

    def warm(self, spec):
        pass

    async def start(self, spec):
        replica = Replica(f"{spec.key}-{len(self.by_id) + 1:04d}", spec.key)
        self.by_id[replica.replica_id] = replica
        return replica

    async def stop(self, replica_id, grace_s=None):
        self.forget(replica_id)

    def replicas(self):
        return list(self.by_id.values())

    def forget(self, replica_id):
        self.by_id.pop(replica_id, None)

    async def close(self):
        pass


class FakeLoad:
    def __init__(self):
        self.concurrency = 0.0

    async def read(self, now):
        return {"small": LoadSample(now, self.concurrency)}


async def _desired_under_load(is_batching: bool | None, workload_type: str = "CPU") -> tuple[int, int]:
    """(replicas idle, replicas wanted with 16 requests in flight) for a Small entity whose first replica said
    `is_batching` when it became ready."""
    deployment = Deployment("small", "e", "e-1", "models:/m/1", 4, 4, workload_type=workload_type)
    control_plane, runtime, load = FakeControlPlane(deployment), FakeRuntime(), FakeLoad()
    scaler = Scaler(control_plane, runtime, load, ScalingSettings(), start_timeout_s=60, max_start_failures=3)
    await scaler.reconcile_once()
    [first] = runtime.replicas()
    first.status, first.ever_ready, first.is_batching = READY, True, is_batching
    await scaler.reconcile_once()
    idle = control_plane.reports[-1]["small"].desired_replicas
    load.concurrency = 16
    await scaler.reconcile_once()
    return idle, control_plane.reports[-1]["small"].desired_replicas


@pytest.mark.parametrize("is_batching, workload_type, want", [
    pytest.param(False, "CPU", (1, 4), id="not batching: idles on one, four under load"),
    pytest.param(True, "CPU", (1, 1), id="batching: one"),
    pytest.param(None, "CPU", (1, 1), id="not known (an older worker): one, as before"),
    pytest.param(False, "GPU_SMALL", (1, 1), id="GPU workloads keep their sizing"),
])
async def test_a_small_entity_is_sized_by_whether_its_model_batches(is_batching, workload_type, want):
    assert await _desired_under_load(is_batching, workload_type) == want


async def test_the_first_ready_replica_that_said_decides_and_is_remembered():
    deployment = Deployment("small", "e", "e-1", "models:/m/1", 4, 4)
    control_plane, runtime, load = FakeControlPlane(deployment), FakeRuntime(), FakeLoad()
    scaler = Scaler(control_plane, runtime, load, ScalingSettings(), start_timeout_s=60, max_start_failures=3)
    await scaler.reconcile_once()
    [first] = runtime.replicas()
    first.status = READY   # said nothing (is_batching None): today's sizing until one says
    load.concurrency = 16
    await scaler.reconcile_once()
    assert control_plane.reports[-1]["small"].desired_replicas == 1
    first.is_batching = False
    await scaler.reconcile_once()
    assert control_plane.reports[-1]["small"].desired_replicas == 4
    runtime.forget(first.replica_id)   # the replica that said is gone: the deployment's fact stays
    await scaler.reconcile_once()
    assert control_plane.reports[-1]["small"].desired_replicas == 4


class FakeHealth:
    def __init__(self, answers: dict[tuple[str, str], bool | None]):
        self.answers = answers
        self.asked: list[tuple[str, str]] = []

    async def check(self, address, timeout_s, service=""):
        self.asked.append((address, service))
        return self.answers.get((address, service))


async def test_a_replica_ready_by_health_checks_is_asked_whether_it_batches():
    unbatched = Replica("r1", "k", status=STARTING, address="a:1")
    batched = Replica("r2", "k", status=STARTING, address="b:1")
    older = Replica("r3", "k", status=STARTING, address="c:1")        # no batching health service
    said = Replica("r4", "k", status=STARTING, address="d:1", is_batching=True)  # its ready line said
    loading = Replica("r5", "k", status=STARTING, address="e:1")
    health = FakeHealth({("a:1", ""): True, ("a:1", BATCHING_HEALTH_SERVICE): False,
                         ("b:1", ""): True, ("b:1", BATCHING_HEALTH_SERVICE): True,
                         ("c:1", ""): True, ("d:1", ""): True, ("e:1", ""): False})
    ready, lost = await check_round(health, [unbatched, batched, older, said, loading], expiry_s=3.0)
    assert ready == [unbatched, batched, older, said] and lost == []
    assert [r.is_batching for r in (unbatched, batched, older, said, loading)] == [False, True, None, True, None]
    assert ("d:1", BATCHING_HEALTH_SERVICE) not in health.asked   # what a replica said is not asked again
    assert ("e:1", BATCHING_HEALTH_SERVICE) not in health.asked   # nor a replica still loading
