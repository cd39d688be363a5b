"""The replicas one runtime keeps, and the heartbeat that watches them: what the process, container and pod
backends (services/scaler/runtime.py, docker_runtime.py, kubernetes_runtime.py) share. How a replica starts,
stops and ends stays with each backend; the table only holds the replicas and health-checks them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable

from services.common.tls import TlsFiles
from services.scaler.health_rounds import heartbeat_forever
from services.scaler.heartbeat import HealthChecker
from services.scaler.replica import Replica


class ReplicaTable:
    """Replicas by id. The heartbeat runs from the first replica added (or `watch`) until `close`."""

    def __init__(self, tls: TlsFiles | None, *, interval_s: float, expiry_s: float, on_change: Callable[[], None],
                 observe: Callable[[], Awaitable[None]] | None = None, what: str = "",
                 on_ready: Callable[[Replica], None] | None = None):
        self._health = HealthChecker(tls)   # with TLS it presents the scaler's certificate
        self._replicas: dict[str, Replica] = {}
        self._heartbeat: asyncio.Task | None = None
        # `observe` is the backend's own look at its platform (exited containers, new pods), once a round.
        self._heartbeat_forever = functools.partial(heartbeat_forever, self._health, self.all, interval_s=interval_s,
                                                    expiry_s=expiry_s, on_change=on_change, observe=observe,
                                                    what=what, on_ready=on_ready)

    def add(self, replica: Replica) -> Replica:
        self._replicas[replica.replica_id] = replica
        self.watch()
        return replica

    def get(self, replica_id: str) -> Replica | None:
        return self._replicas.get(replica_id)

    def __contains__(self, replica_id: str) -> bool:
        return replica_id in self._replicas

    def all(self) -> list[Replica]:
        return list(self._replicas.values())

    def mark_stopping(self, replica_id: str) -> Replica | None:
        """The replica, marked stopping so heartbeats leave it alone; None when it is not (or no longer) here."""
        replica = self._replicas.get(replica_id)
        if replica is not None:
            replica.is_stopping = True
        return replica

    def forget(self, replica_id: str) -> Replica | None:
        """Drops the replica and its health channel; returns it, None when it was not here."""
        replica = self._replicas.pop(replica_id, None)
        if replica is not None and replica.address:
            self._health.forget(replica.address)
        return replica

    def watch(self) -> None:
        """Starts the heartbeat unless it runs (a backend that observes its platform starts it with no replica)."""
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._heartbeat_forever())

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await self._health.close()
