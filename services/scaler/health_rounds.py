"""One round of heartbeats over replicas that report no handshake (containers, pods, adopted processes):
each is health-checked once; a STARTING one that answers SERVING becomes READY, a READY one silent for
longer than the expiry becomes LOST (the scaler takes it out of the routing table and replaces it)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from services.scaler.heartbeat import HealthChecker
from services.scaler.runtime import LOST, READY, STARTING, Replica

log = logging.getLogger(__name__)


async def check_round(health: HealthChecker, targets: list[Replica], expiry_s: float) -> tuple[list[Replica], list[Replica]]:
    """Updates the replicas in place; returns those that became READY and those that became LOST."""
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
    return ready, lost


async def heartbeat_forever(health: HealthChecker, replicas: Callable[[], list[Replica]],
                            observe: Callable[[], Awaitable[None]], *, interval_s: float, expiry_s: float,
                            on_change: Callable[[], None], what: str) -> None:
    """A remote runtime's heartbeat loop: each interval, `observe` what the platform says of its replicas
    (exits, new pods: `what` names them in the log), then one check_round over the live ones."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await observe()
        except Exception as exc:  # noqa: BLE001 - the API may be away for a while: health checks go on
            log.warning("cannot list %s: %s", what, exc)
        targets = [r for r in replicas() if r.address and r.status in (STARTING, READY) and not r.is_stopping]
        ready, lost = await check_round(health, targets, expiry_s)
        for replica in ready:
            log.info("replica %s is ready at %s", replica.replica_id, replica.address)
        for replica in lost:
            log.warning("replica %s is lost: %s", replica.replica_id, replica.failure)
        if ready or lost:
            on_change()
