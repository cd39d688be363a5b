"""Pure scaling decisions: how many replicas each deployment wants, and the actions that get there.

`decide_replicas` is the autoscaler: from a window of load samples (what the routers published to Redis),
the replicas that run now, the deployment's bounds and what it remembered from the last pass, it returns
the replica count to aim for and what to remember. No I/O and no clock: `now` is an argument, so a table
of rows is its specification (tests/unit/test_scaling_policy.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Start:
    key: str


@dataclass(frozen=True)
class Stop:
    key: str
    replica_id: str


@dataclass(frozen=True)
class LoadSample:
    """One deployment's load, summed over every router, as read at `at` (seconds, monotonic)."""

    at: float
    concurrency: float = 0.0   # requests inside the routers for it (being served or waiting), mean and peak
    queued: int = 0            # of those, waiting for a replica
    arrival_rate: float = 0.0  # requests per second since the previous sample

    @property
    def is_idle(self) -> bool:
        return self.concurrency <= 0 and self.queued <= 0 and self.arrival_rate <= 0


@dataclass(frozen=True)
class ReplicaCounts:
    ready: int = 0
    starting: int = 0

    @property
    def total(self) -> int:
        return self.ready + self.starting


@dataclass(frozen=True)
class ScaleSpec:
    min_replicas: int = 1            # the floor while the entity serves (at least 1)
    max_replicas: int = 1
    scale_to_zero_enabled: bool = False
    target_concurrency: float = 4.0  # concurrent requests one replica is sized for
    scale_to_zero_after_s: float = 1800.0
    scale_up_window_s: float = 0.0   # scale up to the lowest recommendation seen in this window
    scale_down_window_s: float = 60.0  # scale down to the highest recommendation seen in this window
    max_step: int = 4                # replicas added or removed per decision


@dataclass(frozen=True)
class ScaleMemory:
    observed_since: float | None = None  # first decision for this deployment (by this scaler process)
    idle_since: float | None = None      # since when nothing arrived, waited or ran (None: busy)
    desired: int | None = None           # the last decision, held while metrics are unavailable


def initial_memory(spec: ScaleSpec, replicas: ReplicaCounts, is_serving: bool, now: float) -> ScaleMemory:
    """What to start from for a deployment this scaler has not decided on before.

    A serving scale-to-zero deployment found with no replica was scaled to zero (by a previous scaler, or
    it lost its last replica meanwhile): it stays at zero until a request comes, instead of starting its
    floor as a new deployment does (whose first replica shows the model loads).
    """
    if spec.scale_to_zero_enabled and is_serving and replicas.total == 0:
        return ScaleMemory(observed_since=now, idle_since=now - spec.scale_to_zero_after_s, desired=0)
    return ScaleMemory()


def decide_replicas(window: Sequence[LoadSample] | None, replicas: ReplicaCounts, spec: ScaleSpec,
                    memory: ScaleMemory, now: float) -> tuple[int, ScaleMemory]:
    """Replicas one deployment should run, and what to remember until the next pass.

    `window` holds the samples of the last max(up, down) window, oldest first; None means the metrics
    could not be read (Redis is down): the last decision is held, so a metrics outage never scales an
    entity to zero. A replica still starting counts as busy: while one starts, nothing is removed and the
    idle clock does not run. Scaling down needs the whole down window observed, so a restarted scaler
    (which remembers nothing) keeps the replicas it adopted until it has seen the load for that long.
    """
    since = now if memory.observed_since is None else memory.observed_since
    current = replicas.total
    if window is None:
        held = memory.desired if memory.desired is not None else max(current, spec.min_replicas)
        held = min(held, spec.max_replicas)
        return held, replace(memory, observed_since=since, desired=held)

    latest = window[-1] if window else LoadSample(now)
    is_busy = replicas.starting > 0 or not latest.is_idle
    idle_since = None if is_busy else (now if memory.idle_since is None else memory.idle_since)
    is_idle_long = (spec.scale_to_zero_enabled and idle_since is not None
                    and now - idle_since >= spec.scale_to_zero_after_s)
    floor = 0 if is_idle_long else spec.min_replicas

    def recommend(sample: LoadSample) -> int:
        wanted = math.ceil(max(sample.concurrency, sample.queued) / spec.target_concurrency)
        return max(floor, min(spec.max_replicas, wanted))

    up_samples = [s for s in window if s.at >= now - spec.scale_up_window_s] or [latest]
    down_samples = [s for s in window if s.at >= now - spec.scale_down_window_s] or [latest]
    up_to = min(recommend(s) for s in up_samples)
    down_to = max(recommend(s) for s in down_samples)
    if replicas.starting > 0 or now - since < spec.scale_down_window_s:
        down_to = max(down_to, current)  # never remove a starting replica, nor before the window is seen
    if is_idle_long:
        down_to = 0  # idle for the whole scale-to-zero window: no load sample can argue against it

    if current < up_to:
        desired = min(up_to, current + max(spec.max_step, 1))
    elif current > down_to:
        desired = max(down_to, current - max(spec.max_step, 1))
    else:
        desired = current
    desired = max(floor, min(spec.max_replicas, desired))
    return desired, ScaleMemory(observed_since=since, idle_since=idle_since, desired=desired)


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
