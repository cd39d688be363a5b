"""The scaler's core: one reconcile pass compares what should run with what runs, and acts.

Level-triggered (style §6): the deployments are read from the control plane on every pass, the load from
Redis and the replicas from the runtime, so a missed event or a scaler restart is repaired by the next
pass. A pass runs every interval, and at once when a router signals a request waiting for a replica or
the runtime sees a replica become ready, fail or disappear.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.common.capacity import concurrency_per_replica, gpus_for_workload_type, replica_bounds
from services.common.deployments import Deployment, DeploymentStatus
from services.scaler.policy import (
    LoadSample, ReplicaCounts, ScaleMemory, ScaleSpec, Start, Stop, decide_replicas, initial_memory, plan,
)
from services.scaler.replica import EXITED, FAILED, LOST, READY, STARTING
from services.scaler.runtime import Runtime, WorkerSpec

if TYPE_CHECKING:
    from services.common.control_plane_client import ControlPlaneClient
    from services.scaler.metrics import LoadReader

log = logging.getLogger(__name__)


@dataclass
class StartFailures:
    count: int = 0
    reason: str = ""


@dataclass(frozen=True)
class ScalingSettings:
    """What every deployment shares; its own bounds come from its provisioned concurrency."""

    target_concurrency: float = 4.0
    scale_to_zero_after_s: float = 1800.0
    scale_up_window_s: float = 0.0
    scale_down_window_s: float = 60.0
    max_step: int = 4
    drain_s: float = 0.5   # between leaving the routing table and SIGTERM, so routers have the new table
    unbatched_concurrency: float = 1.0  # per CPU replica whose model does not batch (max and load only)


@dataclass(frozen=True)
class ReplicaCount:
    key: str
    endpoint_name: str
    served_entity_name: str
    desired: int
    ready: int


class Scaler:
    def __init__(self, control_plane: "ControlPlaneClient", runtime: Runtime, load: "LoadReader | None",
                 scaling: ScalingSettings, *, start_timeout_s: float, max_start_failures: int,
                 scaler_target: str = "", clock=time.monotonic):
        self._control_plane = control_plane
        self._scaler_target = scaler_target  # where this scaler serves its replicas' logs
        self._runtime = runtime
        self._load = load
        self._scaling = scaling
        self._start_timeout_s = start_timeout_s
        self._max_start_failures = max_start_failures
        self._clock = clock
        self.wake = asyncio.Event()
        self._failures: dict[str, StartFailures] = {}
        self._draining: set[str] = set()        # out of the next report; stopped once it was reported
        self._announced: dict[str, float] = {}  # draining replicas a report has removed, and when
        self._stopping: set[asyncio.Task] = set()
        self._windows: dict[str, deque[LoadSample]] = {}
        self._memory: dict[str, ScaleMemory] = {}
        self._is_batching: dict[str, bool] = {}  # per deployment, from its first ready replica that said
        runtime.on_change = self.wake.set
        self.replica_counts: list[ReplicaCount] = []   # as of the last pass (for the metrics scrape)

    async def reconcile_once(self) -> None:
        deployments = {d.key: d for d in await self._control_plane.list_deployments()}
        now = self._clock()
        self._reap(now)
        self._stop_announced(now)
        load = await self._load.read(now) if self._load is not None else None
        self._learn_batching()
        counts = self._counts()
        desired = {key: self._decide(d, load, counts.get(key, ReplicaCounts()), now)
                   for key, d in deployments.items() if not self._has_failed(key)}
        running: dict[str, list[str]] = {}
        for replica in self._runtime.replicas():
            if replica.status in (STARTING, READY) and replica.replica_id not in self._draining:
                running.setdefault(replica.key, []).append(replica.replica_id)
        for action in plan(desired, running):
            if isinstance(action, Start):
                await self._runtime.start(_worker_spec(deployments[action.key]))
            elif isinstance(action, Stop):
                self._draining.add(action.replica_id)
        for key in list(self._failures):
            if key not in deployments:
                del self._failures[key]  # a changed or deleted config starts with a clean slate
        for key in [k for k in self._memory if k not in deployments]:
            self._memory.pop(key, None)
            self._windows.pop(key, None)
        for key in [k for k in self._is_batching if k not in deployments]:
            del self._is_batching[key]
        statuses = self._statuses(deployments, desired)
        self.replica_counts = [ReplicaCount(s.key, deployments[s.key].endpoint_name, deployments[s.key].served_entity_name,
                                            s.desired_replicas, len(s.ready_addresses)) for s in statuses]
        await self._control_plane.report_deployments(statuses, self._scaler_target)
        for replica_id in self._draining:
            self._announced.setdefault(replica_id, now)

    def _decide(self, deployment: Deployment, load: dict[str, LoadSample] | None, replicas: ReplicaCounts,
                now: float) -> int:
        scaling = self._scaling
        # Only CPU replicas are sized by whether they batch: a GPU replica's model runs on its GPU, and more
        # replicas would mean more copies of the model on GPUs they share.
        is_batching = self._is_batching.get(deployment.key) \
            if gpus_for_workload_type(deployment.workload_type) == 0 else None
        per_replica = concurrency_per_replica(scaling.target_concurrency, scaling.unbatched_concurrency,
                                              is_batching)
        floor, ceiling = replica_bounds(deployment.min_concurrency, deployment.max_concurrency,
                                        scaling.target_concurrency, per_replica)
        spec = ScaleSpec(floor, ceiling, deployment.scale_to_zero_enabled, per_replica,
                         scaling.scale_to_zero_after_s, scaling.scale_up_window_s, scaling.scale_down_window_s,
                         scaling.max_step)
        window = self._windows.setdefault(deployment.key, deque())
        if load is not None:
            window.append(load.get(deployment.key) or LoadSample(now))
            horizon = now - max(scaling.scale_up_window_s, scaling.scale_down_window_s)
            while len(window) > 1 and window[0].at < horizon:
                window.popleft()
        memory = self._memory.get(deployment.key)
        is_first_sight = memory is None  # a new deployment, or this scaler just started
        if memory is None:
            memory = initial_memory(spec, replicas, deployment.is_serving, now)
        desired, self._memory[deployment.key] = decide_replicas(
            list(window) if load is not None else None, replicas, spec, memory, now)
        if is_first_sight and desired <= replicas.total:
            # Nothing starts now (scaled to zero, or adopted replicas): prepare the model ahead of the next
            # start. A replica starting now prepares it itself, into its own build log.
            self._runtime.warm(_worker_spec(deployment))
        if desired != memory.desired and memory.desired is not None:
            log.info("scaling %s/%s from %d to %d replicas (%d ready, %d starting)", deployment.endpoint_name,
                     deployment.served_entity_name, memory.desired, desired, replicas.ready, replicas.starting)
        return desired

    def _learn_batching(self) -> None:
        """Keeps, per deployment, whether its model batches, as its first ready replica that knows said (a
        deployment's key changes with its config, so max_batch_size cannot change under it)."""
        for replica in self._runtime.replicas():
            if replica.status == READY and replica.is_batching is not None \
                    and replica.key not in self._is_batching:
                self._is_batching[replica.key] = replica.is_batching
                log.info("%s %s: replicas sized for %s concurrent requests under load", replica.key,
                         "batches" if replica.is_batching else "does not batch",
                         self._scaling.target_concurrency if replica.is_batching else
                         min(self._scaling.target_concurrency, self._scaling.unbatched_concurrency))

    def _counts(self) -> dict[str, ReplicaCounts]:
        counts: dict[str, ReplicaCounts] = {}
        for replica in self._runtime.replicas():
            if replica.replica_id in self._draining or replica.status not in (READY, STARTING):
                continue
            seen = counts.get(replica.key, ReplicaCounts())
            counts[replica.key] = ReplicaCounts(seen.ready + (replica.status == READY),
                                                seen.starting + (replica.status == STARTING))
        return counts

    def _stop_announced(self, now: float) -> None:
        """Stops draining replicas that left the routing table at least drain_s ago (they finish in-flight)."""
        for replica_id, announced_at in list(self._announced.items()):
            if now - announced_at >= self._scaling.drain_s:
                del self._announced[replica_id]
                self._draining.discard(replica_id)
                self._stop_in_background(replica_id)

    def _stop_in_background(self, replica_id: str, grace_s: float | None = None) -> None:
        task = asyncio.create_task(self._runtime.stop(replica_id, grace_s))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def _reap(self, now: float) -> None:
        """Forgets replicas that exited or failed, counting start failures per deployment."""
        for replica in self._runtime.replicas():
            failures = self._failures.setdefault(replica.key, StartFailures())
            if replica.status == READY:
                failures.count = 0
            elif replica.status == FAILED:
                # The worker said why (e.g. the model is not in the registry): retrying will not help.
                failures.count, failures.reason = self._max_start_failures, replica.failure
                self._forget(replica.replica_id)
            elif replica.status == EXITED:
                if not replica.ever_ready:  # a crash while starting; a replica that served is just replaced
                    failures.count += 1
                    failures.reason = replica.failure
                if not replica.is_stopping:
                    log.warning("replica %s is gone (%s); replacing it", replica.replica_id, replica.failure)
                self._forget(replica.replica_id)
            elif replica.status == LOST and not replica.is_stopping:
                # Not answering: out of the routing table already (not READY); kill it and replace it.
                self._stop_in_background(replica.replica_id, grace_s=1.0)
            elif replica.status == STARTING and not replica.is_building \
                    and now - replica.started_at > self._start_timeout_s:
                failures.count += 1
                failures.reason = f"replica not ready after {self._start_timeout_s:.0f} s"
                self._draining.add(replica.replica_id)

    def _forget(self, replica_id: str) -> None:
        self._runtime.forget(replica_id)
        self._draining.discard(replica_id)
        self._announced.pop(replica_id, None)

    def _has_failed(self, key: str) -> bool:
        failures = self._failures.get(key)
        return failures is not None and failures.count >= self._max_start_failures

    def _statuses(self, deployments: dict[str, Deployment], desired: dict[str, int]) -> list[DeploymentStatus]:
        ready: dict[str, list[str]] = {}
        starting: dict[str, int] = {}
        for replica in self._runtime.replicas():
            if replica.replica_id in self._draining:
                continue
            if replica.status == READY:
                ready.setdefault(replica.key, []).append(replica.address)
            elif replica.status == STARTING:
                starting[replica.key] = starting.get(replica.key, 0) + 1
        return [
            DeploymentStatus(key, tuple(sorted(ready.get(key, []))), starting.get(key, 0),
                             self._failures[key].reason if self._has_failed(key) else "", desired.get(key, 0))
            for key in deployments
        ]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._stopping, return_exceptions=True)
        await self._runtime.close()


def _worker_spec(deployment: Deployment) -> WorkerSpec:
    return WorkerSpec(deployment.key, deployment.model_uri, dict(deployment.environment_vars),
                      gpus_for_workload_type(deployment.workload_type), deployment.workload_type,
                      deployment.max_batch_size, deployment.max_batch_wait_ms, deployment.max_concurrency)


async def reconcile_forever(scaler: Scaler, interval_s: float, stop: asyncio.Event, min_gap_s: float = 0.02) -> None:
    """A pass every interval, or as soon as something wakes the scaler (never two within min_gap_s)."""
    while not stop.is_set():
        scaler.wake.clear()
        try:
            await scaler.reconcile_once()
        except Exception as exc:  # the control plane may be restarting: keep replicas, try again
            log.warning("reconcile pass failed: %s", getattr(exc, "message", exc))
        await asyncio.sleep(min_gap_s)
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(scaler.wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=interval_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
