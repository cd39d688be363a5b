"""The scaler's core: one reconcile pass compares what should run with what runs, and acts.

Level-triggered (style §6): the desired state is read from the control plane on every pass and the
actual state from the runtime, so a missed event or a scaler restart is repaired by the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from typing import TYPE_CHECKING

from services.common.capacity import gpus_for_workload_type
from services.common.deployments import Deployment, DeploymentStatus
from services.scaler.policy import Start, Stop, desired_replicas, plan
from services.scaler.runtime import EXITED, FAILED, READY, STARTING, Runtime, WorkerSpec

if TYPE_CHECKING:
    from services.common.control_plane_client import ControlPlaneClient

log = logging.getLogger(__name__)


@dataclass
class StartFailures:
    count: int = 0
    reason: str = ""


class Scaler:
    def __init__(self, control_plane: "ControlPlaneClient", runtime: Runtime, *,
                 start_timeout_s: float, max_start_failures: int, scaler_target: str = ""):
        self._control_plane = control_plane
        self._scaler_target = scaler_target  # where this scaler serves its replicas' logs
        self._runtime = runtime
        self._start_timeout_s = start_timeout_s
        self._max_start_failures = max_start_failures
        self._failures: dict[str, StartFailures] = {}
        self._draining: set[str] = set()
        self._stopping: set[asyncio.Task] = set()

    async def reconcile_once(self) -> None:
        deployments = {d.key: d for d in await self._control_plane.list_deployments()}
        self._reap()
        # Replicas marked for removal in the previous pass have since been reported gone to the
        # routers, so no new request reaches them: now stop them (they drain in-flight work).
        for replica_id in list(self._draining):
            self._draining.discard(replica_id)
            task = asyncio.create_task(self._runtime.stop(replica_id))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)
        desired = {key: desired_replicas(d.min_replicas, d.max_replicas)
                   for key, d in deployments.items() if not self._has_failed(key)}
        running: dict[str, list[str]] = {}
        for replica in self._runtime.replicas():
            if replica.replica_id not in self._draining:
                running.setdefault(replica.key, []).append(replica.replica_id)
        for action in plan(desired, running):
            if isinstance(action, Start):
                d = deployments[action.key]
                await self._runtime.start(WorkerSpec(d.key, d.model_uri, dict(d.environment_vars),
                                                     gpus_for_workload_type(d.workload_type), d.workload_type))
            elif isinstance(action, Stop):
                self._draining.add(action.replica_id)
        for key in list(self._failures):
            if key not in deployments:
                del self._failures[key]  # a changed or deleted config starts with a clean slate
        await self._control_plane.report_deployments(self._statuses(deployments), self._scaler_target)

    def _reap(self) -> None:
        """Forgets replicas that exited or failed, counting start failures per deployment."""
        now = time.monotonic()
        for replica in self._runtime.replicas():
            failures = self._failures.setdefault(replica.key, StartFailures())
            if replica.status == READY:
                failures.count = 0
            elif replica.status == FAILED:
                # The worker said why (e.g. the model is not in the registry): retrying will not help.
                failures.count, failures.reason = self._max_start_failures, replica.failure
                self._runtime.forget(replica.replica_id)
            elif replica.status == EXITED:
                if not replica.ever_ready:  # a crash while starting; a replica that served is just replaced
                    failures.count += 1
                    failures.reason = replica.failure
                log.warning("replica %s is gone (%s); replacing it", replica.replica_id, replica.failure)
                self._runtime.forget(replica.replica_id)
            elif replica.status == STARTING and not replica.is_building \
                    and now - replica.started_at > self._start_timeout_s:
                failures.count += 1
                failures.reason = f"replica not ready after {self._start_timeout_s:.0f} s"
                self._draining.add(replica.replica_id)

    def _has_failed(self, key: str) -> bool:
        failures = self._failures.get(key)
        return failures is not None and failures.count >= self._max_start_failures

    def _statuses(self, deployments: dict[str, Deployment]) -> list[DeploymentStatus]:
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
                             self._failures[key].reason if self._has_failed(key) else "")
            for key in deployments
        ]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._stopping, return_exceptions=True)
        await self._runtime.close()


async def reconcile_forever(scaler: Scaler, interval_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await scaler.reconcile_once()
        except Exception as exc:  # the control plane may be restarting: keep replicas, try again
            log.warning("reconcile pass failed: %s", getattr(exc, "message", exc))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
