"""Replica backends. `LocalProcessRuntime` runs each replica as a worker process on this machine.

The scaler's core only uses the `Runtime` interface (start, stop, replicas), which a container or
Kubernetes backend implements the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from services.common.processes import die_with_parent
from services.scaler.environments import BUILD_LOG, EnvironmentBuildFailed, VirtualenvManager
from services.scaler.policy import pick_gpus
from services.scaler.replica_logs import mark_ready

log = logging.getLogger(__name__)

STARTING, READY, FAILED, EXITED = "STARTING", "READY", "FAILED", "EXITED"


@dataclass
class Replica:
    replica_id: str
    key: str
    status: str = STARTING
    address: str = ""
    failure: str = ""
    ever_ready: bool = False
    is_building: bool = False     # its environment is being built: the start deadline has not begun
    started_at: float = field(default_factory=time.monotonic)
    log_path: Path | None = None
    gpus: tuple[str, ...] = ()    # the GPU ids its CUDA_VISIBLE_DEVICES names


@dataclass(frozen=True)
class WorkerSpec:
    key: str
    model_uri: str
    environment_vars: dict[str, str]
    gpu_count: int = 0            # from the workload type; 0 = CPU only
    workload_type: str = "CPU"


class Runtime(Protocol):
    async def start(self, spec: WorkerSpec) -> Replica: ...
    async def stop(self, replica_id: str) -> None: ...
    def replicas(self) -> list[Replica]: ...
    def forget(self, replica_id: str) -> None: ...
    async def close(self) -> None: ...


class LocalProcessRuntime:
    """Worker replicas as child processes; their stderr goes to <data_dir>/logs/<key>/<replica>.log."""

    def __init__(self, logs_dir: Path, host: str, base_env: dict[str, str], stop_grace_s: float = 15.0,
                 environments: VirtualenvManager | None = None, gpus: tuple[str, ...] = ()):
        self._logs_dir = logs_dir
        self._host = host
        self._base_env = base_env
        self._stop_grace_s = stop_grace_s
        self._environments = environments   # None: workers run in the platform's own environment
        self._gpus = gpus
        self._replicas: dict[str, Replica] = {}
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._watchers: dict[str, asyncio.Task] = {}
        self._ids = itertools.count(1)

    async def start(self, spec: WorkerSpec) -> Replica:
        replica_id = f"{spec.key}-{int(time.time() * 1000):013d}-{next(self._ids):04d}"
        log_path = self._logs_dir / spec.key / f"{replica_id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        replica = Replica(replica_id, spec.key, log_path=log_path)
        self._replicas[replica_id] = replica
        self._watchers[replica_id] = asyncio.create_task(self._run(replica, spec))
        return replica

    async def _run(self, replica: Replica, spec: WorkerSpec) -> None:
        """Builds (or reuses) the model's environment if asked to, starts the worker, follows it."""
        placement = self._place(replica, spec)
        if placement is None:
            return
        python = sys.executable
        if self._environments is not None:
            replica.is_building = True
            try:
                python = await self._environments.python_for(spec.model_uri, self._logs_dir / spec.key / BUILD_LOG)
            except EnvironmentBuildFailed as exc:
                replica.status, replica.failure = FAILED, str(exc)
                return
            finally:
                replica.is_building = False
            replica.started_at = time.monotonic()   # the start deadline counts from the worker's own start
        env = {**os.environ, **self._base_env, **spec.environment_vars,
               "PODIUM_WORKER_MODEL_URI": spec.model_uri, "PODIUM_WORKER_HOST": self._host,
               "PODIUM_WORKER_PORT": "0", **placement}
        assert replica.log_path is not None
        with open(replica.log_path, "ab") as log_file:
            process = await asyncio.create_subprocess_exec(
                python, "-m", "services.worker", stdout=asyncio.subprocess.PIPE, stderr=log_file,
                stdin=asyncio.subprocess.DEVNULL, env=env, preexec_fn=die_with_parent)
        self._processes[replica.replica_id] = process
        log.info("started replica %s of %s (pid %d)", replica.replica_id, spec.model_uri, process.pid)
        await self._watch(replica, process)

    def _place(self, replica: Replica, spec: WorkerSpec) -> dict[str, str] | None:
        """The device environment of a replica: its GPUs, or none visible at all for a CPU workload (so no
        framework picks a GPU by itself). None, and the replica FAILED, when the machine lacks the GPUs."""
        if spec.gpu_count == 0:
            return {"CUDA_VISIBLE_DEVICES": "", "PODIUM_WORKER_DEVICE": "cpu"}
        load: dict[str, int] = {}
        for other in self._replicas.values():
            for gpu in other.gpus:
                load[gpu] = load.get(gpu, 0) + 1
        gpus = pick_gpus(self._gpus, load, spec.gpu_count)
        if gpus is None:
            replica.status = FAILED
            replica.failure = (f"no GPU available: workload_type {spec.workload_type} needs {spec.gpu_count} "
                               f"GPU{'s' if spec.gpu_count > 1 else ''} per replica and this machine offers "
                               f"{len(self._gpus) or 'none'} (PODIUM_GPUS; nvidia-smi found "
                               f"{len(self._gpus) if self._gpus else 'no GPU'})")
            return None
        replica.gpus = gpus
        return {"CUDA_VISIBLE_DEVICES": ",".join(gpus), "PODIUM_WORKER_DEVICE": "cuda"}

    async def _watch(self, replica: Replica, process: asyncio.subprocess.Process) -> None:
        """Follows the worker's handshake lines, then waits for it to exit."""
        assert process.stdout is not None
        async for line in process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "listening":
                replica.address = event.get("address", "")
            elif event.get("event") == "ready":
                replica.address = event.get("address", replica.address)
                replica.status = READY
                replica.ever_ready = True
                if replica.log_path is not None:
                    mark_ready(replica.log_path)  # where its build log ends (services/scaler/replica_logs.py)
                log.info("replica %s is ready at %s", replica.replica_id, replica.address)
            elif event.get("event") == "failed":
                replica.status = FAILED
                replica.failure = event.get("reason", "worker failed to start")
        code = await process.wait()
        if replica.status != FAILED:
            replica.status = EXITED
            replica.failure = replica.failure or f"worker exited with code {code}"
        log.info("replica %s exited with code %s", replica.replica_id, code)

    async def stop(self, replica_id: str) -> None:
        process = self._processes.get(replica_id)
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)  # the worker drains in-flight requests, then exits
            try:
                await asyncio.wait_for(process.wait(), self._stop_grace_s)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        self.forget(replica_id)

    def forget(self, replica_id: str) -> None:
        self._replicas.pop(replica_id, None)
        self._processes.pop(replica_id, None)
        watcher = self._watchers.pop(replica_id, None)
        if watcher is not None and not watcher.done():
            watcher.cancel()

    def replicas(self) -> list[Replica]:
        return list(self._replicas.values())

    def pid(self, replica_id: str) -> int | None:
        process = self._processes.get(replica_id)
        return process.pid if process else None

    async def close(self) -> None:
        await asyncio.gather(*(self.stop(r) for r in list(self._replicas)), return_exceptions=True)
        for watcher in self._watchers.values():
            watcher.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._watchers.values(), return_exceptions=True)
