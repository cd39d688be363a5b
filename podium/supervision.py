"""When `podium up` restarts a service that exited: at once, unless it keeps dying right after it starts.

A process that had served for `healthy_after_s` since it announced ready is restarted at once, and its
crash-loop count is forgotten: an occasional death (a kill, an out-of-memory) never slows recovery, however
often it has happened before. A process that exits sooner (or never became ready) is in a crash loop: its
n-th such exit in a row waits `crash_loop_delays_s[n - 1]` (the last entry repeating), so the first one is
still immediate and a service that cannot start costs at most one attempt per 10 s.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    healthy_after_s: float = 10.0
    crash_loop_delays_s: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0)


@dataclass(frozen=True)
class RestartMemory:
    quick_exits: int = 0        # exits in a row that came less than healthy_after_s after ready (or before it)


def decide_restart(ready_at: float | None, exited_at: float, memory: RestartMemory,
                   policy: RestartPolicy = RestartPolicy()) -> tuple[float, RestartMemory]:
    """Seconds to wait before restarting a process that exited at `exited_at` (ready since `ready_at`;
    None: it never announced ready), and what to remember until its next exit."""
    if ready_at is not None and exited_at - ready_at >= policy.healthy_after_s:
        return 0.0, RestartMemory()
    quick_exits = memory.quick_exits + 1
    delays = policy.crash_loop_delays_s
    return delays[min(quick_exits, len(delays)) - 1], RestartMemory(quick_exits)
