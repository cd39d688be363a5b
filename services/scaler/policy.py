"""Pure scaling decisions: how many replicas each deployment wants, and the actions that get there."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Start:
    key: str


@dataclass(frozen=True)
class Stop:
    key: str
    replica_id: str


def desired_replicas(min_replicas: int, max_replicas: int) -> int:
    """Replicas a deployment should run. Without load metrics yet: its minimum, never below one."""
    return max(1, min(min_replicas, max(max_replicas, 1)))


def plan(desired: Mapping[str, int], running: Mapping[str, Sequence[str]]) -> list[Start | Stop]:
    """Actions that bring `running` (replica ids per deployment) to `desired` (counts per deployment).

    Replicas of deployments that are no longer desired are all stopped; the newest replicas go first
    when a deployment shrinks (ids sort by start order), so the longest-warm ones keep serving.
    """
    actions: list[Start | Stop] = []
    for key in sorted(desired.keys() | running.keys()):
        have, want = sorted(running.get(key, ())), desired.get(key, 0)
        actions += [Start(key)] * max(0, want - len(have))
        actions += [Stop(key, replica_id) for replica_id in have[want:]]
    return actions


def pick_gpus(gpus: Sequence[str], load: Mapping[str, int], count: int) -> tuple[str, ...] | None:
    """The `count` GPUs with the fewest replicas on them (ties: the order of `gpus`); None when the machine
    has fewer than `count`. Replicas may share a GPU: an update's new replicas start while the old serve."""
    if count > len(gpus):
        return None
    ranked = sorted(range(len(gpus)), key=lambda i: (load.get(gpus[i], 0), i))
    return tuple(gpus[i] for i in sorted(ranked[:count]))
