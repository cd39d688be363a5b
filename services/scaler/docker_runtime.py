"""Worker replicas as Docker containers, through the Docker Engine API (`docker` package, extra [docker]).

Each replica is one container of the platform's image on the stack's network, labelled with its stack,
deployment key and replica id (services/scaler/replica_specs.py); the labels are all a restarted scaler
needs to adopt it. Readiness and liveness come from the same gRPC health checks as local replicas; the
container's state (polled every heartbeat) says when it exited, and its last log lines say why.

docker-py is blocking: every engine call runs in a thread, under the client's own timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Callable

from services.common.tls import TlsFiles
from services.scaler.replica_specs import (
    LABEL_MANAGED, ContainerOptions, container_spec, metrics_address, replica_address, replica_from_labels,
    worker_environment,
)
from services.scaler.replica import EXITED, FAILED, LOST, READY, STARTING, Replica, new_replica_id
from services.scaler.replica_grants import ENGINE_REFUSES_SECRETS, has_secret_reference
from services.scaler.replica_table import ReplicaTable
from services.scaler.runtime import WorkerSpec

log = logging.getLogger(__name__)

GONE = ("exited", "dead", "removing")


class DockerRuntime:
    def __init__(self, options: ContainerOptions, base_env: dict[str, str], *, docker_host: str = "",
                 heartbeat_interval_s: float = 1.0, heartbeat_expiry_s: float = 3.0, stop_grace_s: float = 15.0,
                 tls: TlsFiles | None = None, api_timeout_s: float = 30.0):
        import docker  # the optional extra: only a scaler configured for Docker needs it

        self._docker = docker.DockerClient(base_url=docker_host, timeout=int(api_timeout_s)) if docker_host \
            else docker.from_env(timeout=int(api_timeout_s))
        self._options = options
        self._base_env = base_env
        self._stop_grace_s = stop_grace_s
        self.on_change: Callable[[], None] = lambda: None
        self._table = ReplicaTable(tls, interval_s=heartbeat_interval_s, expiry_s=heartbeat_expiry_s,
                                   on_change=lambda: self.on_change(), observe=self._observe_exits,
                                   what="worker containers")
        self._containers: dict[str, str] = {}   # replica id -> container id
        self._tasks: set[asyncio.Task] = set()
        self._ids = itertools.count(1)

    # ---- the Runtime interface ----

    async def adopt(self) -> list[Replica]:
        """Takes over this stack's running worker containers; removes the ones that already exited."""
        containers = await asyncio.to_thread(self._list)
        adopted = []
        for container in containers:
            found = replica_from_labels(container.labels, self._options)
            if found is None:
                continue
            if container.status in GONE:
                await asyncio.to_thread(_remove, container)
                continue
            replica = Replica(found.replica_id, found.key, status=STARTING, address=found.address,
                              metrics_address=metrics_address(found.address))
            self._table.add(replica)
            self._containers[replica.replica_id] = container.id
            adopted.append(replica)
            log.info("adopted replica %s (container %s)", replica.replica_id, container.short_id)
        return adopted

    def warm(self, spec: WorkerSpec) -> None:
        """Nothing to prepare: the image holds every import, and each container fetches its model."""

    async def start(self, spec: WorkerSpec) -> Replica:
        replica_id = new_replica_id(spec.key, next(self._ids))
        address = replica_address(replica_id, self._options)
        replica = self._table.add(Replica(replica_id, spec.key, address=address,
                                          metrics_address=metrics_address(address)))
        self._spawn(self._run(replica, spec))
        return replica

    async def stop(self, replica_id: str, grace_s: float | None = None) -> None:
        """`docker stop`: SIGTERM (the worker drains), SIGKILL after the grace; then the container goes."""
        if self._table.mark_stopping(replica_id) is None:
            return
        container_id = self._containers.get(replica_id)
        if container_id is not None:
            grace = self._stop_grace_s if grace_s is None else grace_s
            await asyncio.to_thread(self._stop_container, container_id, grace)
        self.forget(replica_id)

    def forget(self, replica_id: str) -> None:
        self._table.forget(replica_id)
        container_id = self._containers.pop(replica_id, None)
        if container_id is not None:
            self._spawn(asyncio.to_thread(self._remove_by_id, container_id))

    def replicas(self) -> list[Replica]:
        return self._table.all()

    async def close(self) -> None:
        """Stops the replicas (a scaler that is shut down takes its workers along, as `podium up` does)."""
        await asyncio.gather(*(self.stop(r.replica_id) for r in self._table.all()), return_exceptions=True)
        await self._table.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)   # container removals
        await asyncio.to_thread(self._docker.close)

    # ---- engine calls (in threads) ----

    def _list(self) -> list:
        return self._docker.containers.list(all=True, filters={"label": f"{LABEL_MANAGED}={self._options.stack}"})

    def _create(self, replica: Replica, spec: WorkerSpec) -> str:
        environment = worker_environment({**self._base_env, **spec.worker_settings()}, spec.environment_vars,
                                         spec.model_uri, self._options.port, spec.gpu_count,
                                         spec.memory_limit_bytes())
        kwargs = container_spec(replica.replica_id, spec.key, spec.model_uri, environment, spec.gpu_count,
                                self._options, spec.memory_limit_bytes())
        aliases = kwargs.pop("aliases")
        kwargs["networking_config"] = {
            self._options.network: self._docker.api.create_endpoint_config(aliases=aliases)}
        if "device_requests" in kwargs:
            from docker.types import DeviceRequest
            kwargs["device_requests"] = [DeviceRequest(driver=r["Driver"], count=r["Count"],
                                                       capabilities=r["Capabilities"])
                                         for r in kwargs["device_requests"]]
        return self._docker.containers.run(**kwargs).id

    def _stop_container(self, container_id: str, grace_s: float) -> None:
        import docker.errors
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            self._docker.containers.get(container_id).stop(timeout=max(1, int(round(grace_s))))

    def _remove_by_id(self, container_id: str) -> None:
        import docker.errors
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            _remove(self._docker.containers.get(container_id))

    def _exit_reason(self, container_id: str) -> tuple[str, bool]:
        """Why a container ended, and whether the worker itself said it cannot start (FAILED, not retried)."""
        import docker.errors
        try:
            container = self._docker.containers.get(container_id)
            code = container.attrs.get("State", {}).get("ExitCode")
            tail = container.logs(stdout=True, stderr=False, tail=20).decode(errors="replace").splitlines()
        except docker.errors.DockerException as exc:
            return f"container gone: {exc}", False
        for line in reversed(tail):
            with contextlib.suppress(ValueError, AttributeError):
                event = json.loads(line)
                if event.get("event") == "failed":
                    return event.get("reason", "worker failed to start"), True
        return f"worker container exited with code {code}", False

    # ---- one replica's life ----

    async def _run(self, replica: Replica, spec: WorkerSpec) -> None:
        if has_secret_reference(spec.environment_vars):
            replica.status, replica.failure = FAILED, ENGINE_REFUSES_SECRETS
            self.on_change()
            return
        try:
            container_id = await asyncio.to_thread(self._create, replica, spec)
        except Exception as exc:  # noqa: BLE001 - the engine's reason, counted as a start failure
            log.error("cannot start a container for %s: %s", replica.replica_id, exc)
            replica.status, replica.failure = EXITED, f"could not start a worker container: {exc}"
            self.on_change()
            return
        self._containers[replica.replica_id] = container_id
        log.info("started replica %s of %s (container %s)", replica.replica_id, spec.model_uri, container_id[:12])
        if replica.is_stopping or replica.replica_id not in self._table:   # stopped or forgotten meanwhile
            await asyncio.to_thread(self._stop_container, container_id, 1.0)
            await asyncio.to_thread(self._remove_by_id, container_id)

    async def _observe_exits(self) -> None:
        """Marks replicas whose container exited (or vanished) EXITED or FAILED."""
        states = {c.id: c.status for c in await asyncio.to_thread(self._list)}
        for replica_id, container_id in list(self._containers.items()):
            replica = self._table.get(replica_id)
            if replica is None or replica.status not in (STARTING, READY, LOST):
                continue
            state = states.get(container_id)
            if state is not None and state not in GONE:
                continue
            reason, is_failed = await asyncio.to_thread(self._exit_reason, container_id)
            replica.status, replica.failure = (FAILED if is_failed else EXITED), reason
            log.info("replica %s exited (%s)", replica_id, reason)
            self.on_change()

    def _spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _remove(container) -> None:
    container.remove(force=True)
