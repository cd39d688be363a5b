"""Replica backends. `LocalProcessRuntime` runs each replica as a worker process on this machine.

The scaler's core only uses the `Runtime` interface (adopt, start, stop, replicas, forget, close, and an
`on_change` callback), which a container or Kubernetes backend implements the same way: `adopt` lists the
replicas already running (containers by label, pods by selector), and readiness comes from the backend.

Locally, a replica announces itself READY on its handshake pipe; afterwards the runtime sends it a gRPC
health check every heartbeat interval, and a replica that has not answered for the heartbeat expiry is
LOST: the scaler takes it out of the routing table and replaces it. Replicas outlive a crashed scaler
(their records are on disk), so a restarted scaler adopts them instead of starting new ones.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from services.common.model_environment import allowed_environment_vars
from services.common.processes import process_start_ticks
from services.common.tls import TlsFiles
from services.scaler.environments import BUILD_LOG, EnvironmentBuildFailed, VirtualenvManager
from services.scaler.launchers import (
    ModelUnavailable, TemplateUnavailable, WarmTemplate, WorkerProcess, fetch_model, start_fresh,
)
from services.scaler.policy import pick_gpus
from services.scaler.replica import EXITED, FAILED, READY, STARTING, Replica, new_replica_id
from services.scaler.replica_grants import GrantRefused, ReplicaGrants, with_credential
from services.scaler.replica_logs import mark_ready
from services.scaler.replica_records import ReplicaRecord, ReplicaRecords
from services.scaler.replica_table import ReplicaTable
from services.scaler.scratch_dirs import ScratchDirs

log = logging.getLogger(__name__)

MEMORY_PER_CONCURRENCY_BYTES = 2 << 30   # Small (4 concurrent requests): 8 GiB, Medium 32 GiB, Large 128 GiB
MIN_MEMORY_LIMIT_BYTES = 4 << 30

@dataclass(frozen=True)
class WorkerSpec:
    key: str
    model_uri: str
    environment_vars: dict[str, str]
    gpu_count: int = 0            # from the workload type; 0 = CPU only
    workload_type: str = "CPU"
    max_batch_size: int = 0       # > 1: batching in the worker; 1: none; 0: the worker's default for the model
    max_batch_wait_ms: float = 0.0
    max_concurrency: int = 0      # the workload size's concurrency: sizes the replica's memory limit

    def memory_limit_bytes(self) -> int:
        """RLIMIT_DATA of a CPU replica from its workload size (services/worker/sandbox.py); 0 = none. GPU
        frameworks map large private regions they never touch, so GPU replicas get none."""
        if self.gpu_count:
            return 0
        return max(MIN_MEMORY_LIMIT_BYTES, self.max_concurrency * MEMORY_PER_CONCURRENCY_BYTES)

    def worker_settings(self) -> dict[str, str]:
        """The served entity's worker settings as PODIUM_WORKER_* variables (services/worker/settings.py)."""
        if self.max_batch_size == 0 and self.max_batch_wait_ms == 0:
            return {}
        return {"PODIUM_WORKER_MAX_BATCH_SIZE": str(self.max_batch_size),
                "PODIUM_WORKER_MAX_BATCH_WAIT_MS": repr(float(self.max_batch_wait_ms))}


class Runtime(Protocol):
    on_change: Callable[[], None]   # called when a replica becomes ready, fails, exits or is lost

    async def adopt(self) -> list[Replica]: ...
    def warm(self, spec: WorkerSpec) -> None: ...   # best effort, in the background: make starts fast
    async def start(self, spec: WorkerSpec) -> Replica: ...
    async def stop(self, replica_id: str, grace_s: float | None = None) -> None: ...
    def replicas(self) -> list[Replica]: ...
    def forget(self, replica_id: str) -> None: ...
    async def close(self) -> None: ...


class LocalProcessRuntime:
    """Worker replicas as local processes; their stderr goes to <logs_dir>/<key>/<replica>.log."""

    def __init__(self, logs_dir: Path, host: str, base_env: dict[str, str], *, records: ReplicaRecords,
                 template: WarmTemplate | None = None, environments: VirtualenvManager | None = None,
                 gpus: tuple[str, ...] = (), heartbeat_interval_s: float = 1.0, heartbeat_expiry_s: float = 3.0,
                 stop_grace_s: float = 15.0, tls: TlsFiles | None = None, model_cache_dir: Path | None = None,
                 fetch_timeout_s: float = 300.0, grants: ReplicaGrants | None = None):
        self._logs_dir = logs_dir
        # Where replicas' models are downloaded before they start (the template's cache, when it runs).
        self._model_cache_dir = model_cache_dir or logs_dir.parent / "cache" / "models"
        self._fetch_timeout_s = fetch_timeout_s
        self._scratch = ScratchDirs(logs_dir.parent)
        if os.geteuid() == 0 and logs_dir.parent.is_dir():
            # Replicas of a root platform run as uids of their own (services/worker/sandbox.py): only the
            # platform walks the data directory; a replica reads its model through links in its scratch.
            os.chmod(logs_dir.parent, 0o700)
        self._host = host
        self._base_env = base_env
        self._records = records
        self._template = template
        self._environments = environments   # None: workers run in the platform's own environment
        self._gpus = gpus
        self._stop_grace_s = stop_grace_s
        self.on_change: Callable[[], None] = lambda: None
        # An adopted replica that finished loading becomes READY on a heartbeat (the others say so on their
        # handshake); `on_ready` leaves its record and build-log mark as the handshake would.
        self._table = ReplicaTable(tls, interval_s=heartbeat_interval_s, expiry_s=heartbeat_expiry_s,
                                   on_change=lambda: self.on_change(), on_ready=self._record_ready)
        self._processes: dict[str, WorkerProcess] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._grants = grants   # resolves secret references, issues credentials; None: variables as written
        self._warming: set[asyncio.Task] = set()
        self._ids = itertools.count(1)

    # ---- the Runtime interface ----

    async def adopt(self) -> list[Replica]:
        """Takes over the replicas a previous scaler left running (their records on disk)."""
        adopted = []
        records = await asyncio.to_thread(self._records.live)
        await asyncio.to_thread(self._scratch.keep_live, {r.replica_id for r in records})
        for record in records:
            replica = Replica(record.replica_id, record.key, status=READY if record.is_ready else STARTING,
                              address=record.address, ever_ready=record.is_ready, pid=record.pid,
                              log_path=Path(record.log_path) if record.log_path else None, gpus=tuple(record.gpus),
                              metrics_address=record.metrics_address, is_batching=record.is_batching)
            process = WorkerProcess(record.pid)
            if record.credential_id and self._grants is not None:
                self._grants.adopt(replica.replica_id, record.credential_id)
            self._table.add(replica)
            self._processes[replica.replica_id] = process
            self._tasks[replica.replica_id] = asyncio.create_task(self._follow(replica, process))
            adopted.append(replica)
            log.info("adopted replica %s (pid %d, %s)", replica.replica_id, record.pid, replica.status)
        return adopted

    def warm(self, spec: WorkerSpec) -> None:
        """Has the template prepare the model now, so even the first replica (say, from zero after a scaler
        restart) is a fast fork. Failures only get logged: the replica's start reports them properly."""
        if not self._may_fork(spec):
            return
        task = asyncio.create_task(self._warm(spec.model_uri))
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)

    async def _warm(self, model_uri: str) -> None:
        try:
            await self._template.prepare(model_uri)
        except (ModelUnavailable, TemplateUnavailable) as exc:
            log.info("could not prepare %s ahead of time: %s", model_uri, exc)

    async def start(self, spec: WorkerSpec) -> Replica:
        """Registers a STARTING replica and launches it in the background (the pass does not wait)."""
        replica_id = new_replica_id(spec.key, next(self._ids))
        log_path = self._logs_dir / spec.key / f"{replica_id}.log"
        if not log_path.parent.exists():
            log_path.parent.mkdir(parents=True, exist_ok=True)
            # Which model these logs (and the processes writing them) belong to, for people and tools.
            (log_path.parent / "model_uri").write_text(spec.model_uri + "\n")
        replica = self._table.add(Replica(replica_id, spec.key, log_path=log_path))
        self._tasks[replica_id] = asyncio.create_task(self._run(replica, spec))
        return replica

    async def stop(self, replica_id: str, grace_s: float | None = None) -> None:
        """SIGTERM (the worker leaves health, finishes in-flight requests, exits), SIGKILL after the grace."""
        if self._table.mark_stopping(replica_id) is None:
            return
        process = self._processes.get(replica_id)
        if process is not None:
            process.send_signal(signal.SIGTERM)
        task = self._tasks.get(replica_id)
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), self._stop_grace_s if grace_s is None else grace_s)
            except asyncio.TimeoutError:
                process = self._processes.get(replica_id)
                if process is not None:
                    log.warning("replica %s did not stop in time; killing it", replica_id)
                    process.send_signal(signal.SIGKILL)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), 5)
        self.forget(replica_id)

    def forget(self, replica_id: str) -> None:
        self._table.forget(replica_id)
        self._scratch.remove(replica_id)
        process = self._processes.pop(replica_id, None)
        if process is not None:
            process.close()
        if self._grants is not None:
            self._grants.release(replica_id)
        task = self._tasks.pop(replica_id, None)
        if task is not None and not task.done():
            task.cancel()
        self._records.remove(replica_id)

    def replicas(self) -> list[Replica]:
        return self._table.all()

    async def close(self) -> None:
        for task in self._warming:
            task.cancel()
        await asyncio.gather(*(self.stop(r.replica_id) for r in self._table.all()), *self._warming,
                             return_exceptions=True)
        if self._grants is not None:
            await self._grants.close()
        await self._table.close()
        if self._template is not None:
            await self._template.close()
        self._scratch.close()

    # ---- one replica's life ----

    async def _run(self, replica: Replica, spec: WorkerSpec) -> None:
        """Places the replica, builds (or reuses) the model's environment if asked to, starts the worker,
        follows it."""
        placement = self._place(replica, spec)
        if placement is None:
            self.on_change()
            return
        python = sys.executable
        if self._environments is not None:
            replica.is_building = True
            try:
                python = await self._environments.python_for(spec.model_uri, self._logs_dir / spec.key / BUILD_LOG)
            except EnvironmentBuildFailed as exc:
                replica.status, replica.failure = FAILED, str(exc)
                self.on_change()
                return
            finally:
                replica.is_building = False
            replica.started_at = time.monotonic()   # the start deadline counts from the worker's own start
        scratch = self._scratch.new(replica.replica_id)
        env = {**self._base_env, **spec.worker_settings(),
               "PODIUM_WORKER_MODEL_URI": spec.model_uri, "PODIUM_WORKER_HOST": self._host, "PODIUM_WORKER_PORT": "0",
               "PODIUM_WORKER_SCRATCH_DIR": str(scratch),
               "PODIUM_WORKER_MEMORY_LIMIT_BYTES": str(spec.memory_limit_bytes()), **placement}
        launching = asyncio.ensure_future(self._launch(replica, spec, python, env))
        try:
            process = await asyncio.shield(launching)
        except asyncio.CancelledError:
            launching.add_done_callback(_stop_if_started)  # forgotten while launching: no orphan replica
            raise
        except ModelUnavailable as exc:  # the registry's reason: retrying will not help
            replica.status, replica.failure = FAILED, str(exc)
            self.on_change()
            return
        except GrantRefused as exc:
            replica.status, replica.failure = FAILED if exc.is_final else EXITED, str(exc)
            self.on_change()
            return
        except Exception as exc:  # noqa: BLE001 - counted as a start failure by the scaler
            log.exception("cannot start replica %s", replica.replica_id)
            replica.status, replica.failure = EXITED, f"could not start a worker: {exc}"
            self.on_change()
            return
        self._processes[replica.replica_id] = process
        replica.pid = process.pid
        self._write_record(replica)
        log.info("started replica %s of %s (pid %d)", replica.replica_id, spec.model_uri, process.pid)
        if replica.is_stopping:  # stopped while it was being launched
            process.send_signal(signal.SIGTERM)
        await self._follow(replica, process)

    async def _launch(self, replica: Replica, spec: WorkerSpec, python: str, env: dict[str, str]) -> WorkerProcess:
        log_path, environment_vars = replica.log_path, spec.environment_vars
        if self._grants is not None:   # secret references resolved into this replica's environment only
            environment_vars = await self._grants.environment_vars(spec.key, spec.environment_vars)
        # Podium's variables win over the served entity's, and names that change how an interpreter starts
        # never reach it (refused at create; a spec stored before that is filtered here).
        env = {**allowed_environment_vars(environment_vars), **env}
        if self._may_fork(spec):
            try:   # a credential issued here stays in `env` for a fresh start if the fork fails
                if self._grants is not None:
                    env = await self._credential(replica, spec, env, await self._template.prepare(spec.model_uri, log_path))
                return await self._template.spawn(spec.model_uri, env, log_path)
            except TemplateUnavailable as exc:
                log.warning("warm template unavailable (%s); starting a fresh worker", exc)
        model_path = await self._fetch(spec, env, log_path)
        env = await self._credential(replica, spec, env, model_path)
        return await start_fresh(python, {**env, "PODIUM_WORKER_MODEL_PATH": str(model_path)}, log_path)

    async def _credential(self, replica: Replica, spec: WorkerSpec, env: dict[str, str],
                          model_path: Path | None) -> dict[str, str]:
        """`env` with DATABRICKS_HOST and a client credential (DATABRICKS_CLIENT_ID / _SECRET) when the model
        declared serving endpoints it calls (its access tokens may query those and nothing else); Podium's own
        variables still win, and a credential the served entity configures itself replaces it."""
        if self._grants is None:
            return env
        granted = await self._grants.credential(replica.replica_id, spec.key, model_path)
        if replica.is_stopping or replica.replica_id not in {r.replica_id for r in self._table.all()}:
            self._grants.release(replica.replica_id)   # forgotten while it was being issued
        return with_credential(granted, env)

    async def _fetch(self, spec: WorkerSpec, env: dict[str, str], log_path: Path) -> Path:
        """The machine's copy of the model: the template's when it runs, else a download of its own."""
        if self._template is not None:
            try:
                return await self._template.prepare(spec.model_uri)
            except TemplateUnavailable:
                pass
        return await fetch_model(spec.model_uri, {k: v for k, v in env.items() if k in self._base_env},
                                 self._model_cache_dir, log_path, self._fetch_timeout_s)

    def _may_fork(self, spec: WorkerSpec) -> bool:
        """Whether a replica forks from the warm template: only CPU replicas in the platform's environment
        without environment_vars. Libraries read those variables (and CUDA its devices) when the
        interpreter starts, and a per-model environment is another interpreter: those start fresh."""
        return self._template is not None and self._environments is None and not spec.environment_vars \
            and spec.gpu_count == 0

    def _place(self, replica: Replica, spec: WorkerSpec) -> dict[str, str] | None:
        """The device environment of a replica: its GPUs, or none visible at all for a CPU workload (so no
        framework picks a GPU by itself). None, and the replica FAILED, when the machine lacks the GPUs."""
        if spec.gpu_count == 0:
            return {"CUDA_VISIBLE_DEVICES": "", "PODIUM_WORKER_DEVICE": "cpu"}
        load: dict[str, int] = {}
        for other in self._table.all():
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

    async def _follow(self, replica: Replica, process: WorkerProcess) -> None:
        """Follows the worker's handshake lines (none for an adopted one), then waits for it to exit."""
        if process.stdout is not None:
            async for line in process.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "listening":
                    replica.address = event.get("address", "")
                    replica.metrics_address = event.get("metrics_address", "")
                    self._write_record(replica)
                elif event.get("event") == "ready":
                    replica.address = event.get("address", replica.address)
                    replica.metrics_address = event.get("metrics_address", replica.metrics_address)
                    replica.is_batching = event.get("is_batching", replica.is_batching)
                    self._mark_ready(replica)
                elif event.get("event") == "failed":
                    replica.status = FAILED
                    replica.failure = event.get("reason", "worker failed to start")
                    self.on_change()
        code = await process.wait()
        if replica.status != FAILED:
            replica.status = EXITED
            replica.failure = replica.failure or (f"worker exited with code {code}" if code is not None
                                                  else "worker exited")
        self._records.remove(replica.replica_id)
        if self._grants is not None:
            self._grants.release(replica.replica_id)
        await asyncio.to_thread(self._scratch.remove, replica.replica_id)
        log.info("replica %s exited (%s)", replica.replica_id, code)
        self.on_change()

    def _mark_ready(self, replica: Replica) -> None:
        replica.status, replica.ever_ready, replica.last_seen = READY, True, time.monotonic()
        self._record_ready(replica)
        self.on_change()

    def _record_ready(self, replica: Replica) -> None:
        """What a replica that became READY leaves: the end of its build log, its record, a log line."""
        if replica.log_path is not None:
            mark_ready(replica.log_path)  # where its build log ends (services/scaler/replica_logs.py)
        self._write_record(replica)
        log.info("replica %s is ready at %s", replica.replica_id, replica.address)

    def _write_record(self, replica: Replica) -> None:
        ticks = process_start_ticks(replica.pid) if replica.pid else None
        if ticks is None or replica.status in (EXITED, FAILED):
            return
        self._records.write(ReplicaRecord(replica.replica_id, replica.key, replica.pid, ticks, replica.address,
                                          replica.status == READY, str(replica.log_path or ""), list(replica.gpus),
                                          replica.metrics_address, replica.is_batching,
                                          self._grants.credential_id(replica.replica_id) if self._grants else ""))


def _stop_if_started(launching: asyncio.Future) -> None:
    if not launching.cancelled() and launching.exception() is None:
        process = launching.result()
        process.send_signal(signal.SIGTERM)
        process.close()
