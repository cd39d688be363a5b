"""One round of heartbeats over replicas that report no handshake (containers, pods, adopted processes):
each is health-checked once; a STARTING one that answers SERVING becomes READY, a READY one silent for
longer than the expiry becomes LOST (the scaler takes it out of the routing table and replaces it)."""

from __future__ import annotations

import asyncio
import time

from services.scaler.heartbeat import HealthChecker
from services.scaler.runtime import LOST, READY, STARTING, Replica


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
