"""Heartbeats, every runtime's: each round health-checks every live replica once; a STARTING one that answers
SERVING becomes READY (containers, pods and adopted processes report no handshake), a READY one silent for
longer than the expiry becomes LOST (the scaler takes it out of the routing table and replaces it)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from services.common.readiness import BATCHING_HEALTH_SERVICE
from services.scaler.heartbeat import HealthChecker
from services.scaler.replica import LOST, READY, STARTING, Replica

log = logging.getLogger(__name__)


async def check_round(health: HealthChecker, targets: list[Replica], expiry_s: float) -> tuple[list[Replica], list[Replica]]:
    """Updates the replicas in place; returns those that became READY and those that became LOST. One that
    became READY is also asked whether its model batches (BATCHING_HEALTH_SERVICE), unless it said so."""
    timeout_s = max(0.2, min(expiry_s / 2, 1.0))
    answers = await asyncio.gather(*(health.check(r.address, timeout_s) for r in targets))
    now = time.monotonic()
    ready, lost = [], []
    for replica, answer in zip(targets, answers):
        if replica.status not in (STARTING, READY):
            continue  # it exited while we asked
        if answer is not None:
            replica.last_seen = now
        if answer and replica.status == STARTING:
            replica.status, replica.ever_ready = READY, True
            ready.append(replica)
        elif replica.status == READY and now - replica.last_seen > expiry_s:
            replica.status = LOST
            replica.failure = f"no answer to health checks for {now - replica.last_seen:.1f} s"
            lost.append(replica)
    unknown = [r for r in ready if r.is_batching is None]  # no ready line said whether its model batches
    answers = await asyncio.gather(*(health.check(r.address, timeout_s, BATCHING_HEALTH_SERVICE) for r in unknown))
    for replica, answer in zip(unknown, answers):
        replica.is_batching = answer  # None (an older worker, or no answer): sized as if it batched
    return ready, lost


async def heartbeat_forever(health: HealthChecker, replicas: Callable[[], list[Replica]], *, interval_s: float,
                            expiry_s: float, on_change: Callable[[], None],
                            observe: Callable[[], Awaitable[None]] | None = None, what: str = "",
                            on_ready: Callable[[Replica], None] | None = None) -> None:
    """A runtime's heartbeat loop: each interval, `observe` what the platform says of its replicas (exits, new
    pods: `what` names them in the log) where it can, then one check_round over the live ones. `on_ready`
    takes each replica that became READY (by default its address is logged)."""
    while True:
        await asyncio.sleep(interval_s)
        if observe is not None:
            try:
                await observe()
            except Exception as exc:  # noqa: BLE001 - the API may be away for a while: health checks go on
                log.warning("cannot list %s: %s", what, exc)
        targets = [r for r in replicas() if r.address and r.status in (STARTING, READY) and not r.is_stopping]
        ready, lost = await check_round(health, targets, expiry_s)
        for replica in ready:
            (on_ready or _log_ready)(replica)
        for replica in lost:
            log.warning("replica %s is lost: %s", replica.replica_id, replica.failure)
        if ready or lost:
            on_change()


def _log_ready(replica: Replica) -> None:
    log.info("replica %s is ready at %s", replica.replica_id, replica.address)
