"""The autoscaler's policy as a table: (load window, replicas, spec, memory, now) → (replicas, memory)."""

from __future__ import annotations

import pytest

from services.common.capacity import concurrency_per_replica, replica_bounds
from services.scaler.policy import (
    LoadSample, ReplicaCounts, ScaleMemory, ScaleSpec, decide_replicas, initial_memory,
)

SMALL_STZ = ScaleSpec(min_replicas=1, max_replicas=1, scale_to_zero_enabled=True, scale_to_zero_after_s=30,
                      scale_down_window_s=10)
ELASTIC = ScaleSpec(min_replicas=1, max_replicas=8, target_concurrency=4, scale_down_window_s=10, max_step=2)
MEDIUM = ScaleSpec(min_replicas=2, max_replicas=4, scale_to_zero_enabled=True, scale_to_zero_after_s=30)
SMOOTH_UP = ScaleSpec(min_replicas=1, max_replicas=8, scale_up_window_s=5, scale_down_window_s=10, max_step=8)
# A Small entity whose model does not batch: its floor from 4 per replica, its max and load at 1 per replica.
SMALL_UNBATCHED = ScaleSpec(min_replicas=1, max_replicas=4, target_concurrency=1, scale_down_window_s=10)
SMALL_UNBATCHED_STZ = ScaleSpec(min_replicas=1, max_replicas=4, scale_to_zero_enabled=True, target_concurrency=1,
                                scale_to_zero_after_s=30, scale_down_window_s=10)
SEEN = ScaleMemory(observed_since=0.0)  # observed long enough for any down window in these rows


def S(at, concurrency=0.0, queued=0, rate=0.0):  # noqa: N802 - a table cell
    return LoadSample(at, concurrency, queued, rate)


@pytest.mark.parametrize("window, ready, starting, spec, memory, now, want, want_idle_since", [
    # --- scale up: at once (no up window), by at most max_step, to at most max ---
    pytest.param([S(100, 9)], 1, 0, ELASTIC, SEEN, 100, 3, None, id="load 9 at 4 per replica: up to 3"),
    pytest.param([S(100, 40)], 1, 0, ELASTIC, SEEN, 100, 3, None, id="bounded step: +2 per decision"),
    pytest.param([S(100, 40)], 7, 0, ELASTIC, SEEN, 100, 8, None, id="capped at max_replicas"),
    pytest.param([S(100, 9)], 1, 2, ELASTIC, SEEN, 100, 3, None, id="starting replicas count: no double start"),
    pytest.param([S(98, 1), S(100, 20)], 1, 0, SMOOTH_UP, SEEN, 100, 1, None,
                 id="up window: the lowest recommendation in it wins (a blip does not scale)"),
    pytest.param([S(94, 1), S(100, 20)], 1, 0, SMOOTH_UP, SEEN, 100, 5, None,
                 id="up window: older samples fall out"),
    # --- scale down: only after the down window, to its highest recommendation ---
    pytest.param([S(95, 12), S(100, 0)], 3, 0, ELASTIC, SEEN, 100, 3, 100,
                 id="down window still holds a busy sample"),
    pytest.param([S(85, 12), S(92, 4), S(100, 0)], 3, 0, ELASTIC, SEEN, 100, 1, 100,
                 id="down to the highest recommendation of the window"),
    pytest.param([S(85, 12), S(92, 4), S(100, 0)], 6, 0, ELASTIC, SEEN, 100, 4, 100, id="bounded step down"),
    pytest.param([S(100, 0)], 3, 1, ELASTIC, SEEN, 100, 4, None,
                 id="a starting replica is busy: nothing removed, idle clock stopped"),
    pytest.param([S(100, 0)], 3, 0, ELASTIC, ScaleMemory(observed_since=95), 100, 3, 100,
                 id="restart: no scale down before the down window has been observed"),
    pytest.param([S(100, 0)], 0, 0, ELASTIC, SEEN, 100, 1, 100, id="without scale to zero the floor is kept"),
    # --- a Small entity whose model does not batch: one replica idle, up to four under load ---
    pytest.param([S(100, 0)], 1, 0, SMALL_UNBATCHED, SEEN, 100, 1, 100, id="unbatched small idles on one"),
    pytest.param([S(100, 1)], 1, 0, SMALL_UNBATCHED, SEEN, 100, 1, None, id="unbatched small, one client: one"),
    pytest.param([S(100, 3)], 1, 0, SMALL_UNBATCHED, SEEN, 100, 3, None, id="unbatched small, 3 in flight: 3"),
    pytest.param([S(100, 16)], 1, 0, SMALL_UNBATCHED, SEEN, 100, 4, None,
                 id="unbatched small, 16 in flight: its max of 4"),
    pytest.param([S(95, 16), S(100, 0)], 4, 0, SMALL_UNBATCHED, SEEN, 100, 4, 100,
                 id="unbatched small: the down window still holds the load"),
    pytest.param([S(85, 16), S(100, 0)], 4, 0, SMALL_UNBATCHED, SEEN, 100, 1, 100,
                 id="unbatched small: back to one after the down window"),
    pytest.param([S(110, 0)], 1, 0, SMALL_UNBATCHED_STZ, ScaleMemory(0.0, idle_since=80.0), 110, 0, 80,
                 id="unbatched small: scale to zero unchanged"),
    pytest.param([S(200, 1, queued=1)], 0, 0, SMALL_UNBATCHED_STZ, ScaleMemory(0.0, idle_since=80.0, desired=0),
                 200, 1, None, id="unbatched small from zero: one, as before"),
    # --- scale to zero and back ---
    pytest.param([S(100, 0)], 1, 0, SMALL_STZ, ScaleMemory(0.0, idle_since=80.0), 100, 1, 80,
                 id="idle, but not for the whole window"),
    pytest.param([S(110, 0)], 1, 0, SMALL_STZ, ScaleMemory(0.0, idle_since=80.0), 110, 0, 80,
                 id="idle for the window: zero"),
    pytest.param([S(110, 0, rate=0.1)], 1, 0, SMALL_STZ, ScaleMemory(0.0, idle_since=80.0), 110, 1, None,
                 id="an arrival resets the idle clock"),
    pytest.param([S(110, 0)], 1, 0, ScaleSpec(scale_to_zero_after_s=1), ScaleMemory(0.0, idle_since=0.0), 110, 1, 0,
                 id="scale to zero disabled: never zero"),
    pytest.param([S(200, 1, queued=1)], 0, 0, SMALL_STZ, ScaleMemory(0.0, idle_since=80.0, desired=0), 200, 1, None,
                 id="a queued request at zero: up at once"),
    pytest.param([S(200, 1, queued=1)], 0, 0, MEDIUM, ScaleMemory(0.0, idle_since=80.0, desired=0), 200, 2, None,
                 id="medium from zero: at least two"),
    pytest.param([S(200, 1, queued=1)], 0, 1, SMALL_STZ, ScaleMemory(0.0, desired=1), 200, 1, None,
                 id="from zero with one starting: wait for it"),
    pytest.param([S(100, 0)], 0, 0, SMALL_STZ, ScaleMemory(), 100, 1, 100,
                 id="a new scale-to-zero deployment starts its floor"),
    # --- Redis down: hold ---
    pytest.param(None, 2, 0, ELASTIC, ScaleMemory(0.0, desired=3), 100, 3, None, id="no metrics: hold the last decision"),
    pytest.param(None, 1, 0, SMALL_STZ, ScaleMemory(0.0, idle_since=0.0, desired=1), 5000, 1, 0,
                 id="no metrics: never to zero"),
    pytest.param(None, 2, 0, ELASTIC, ScaleMemory(), 100, 2, None, id="no metrics, no memory: keep what runs"),
    pytest.param(None, 0, 0, MEDIUM, ScaleMemory(), 100, 2, None, id="no metrics, new deployment: its floor"),
])
def test_decide_replicas(window, ready, starting, spec, memory, now, want, want_idle_since):
    replicas, remembered = decide_replicas(window, ReplicaCounts(ready, starting), spec, memory, now)
    assert replicas == want
    assert remembered.idle_since == want_idle_since
    assert remembered.desired == want
    assert remembered.observed_since == (memory.observed_since if memory.observed_since is not None else now)


def test_medium_under_sixteen_clients_runs_at_least_two_and_at_most_four():
    for clients in range(1, 17):
        replicas, _ = decide_replicas([S(100, clients)], ReplicaCounts(2, 0), MEDIUM, SEEN, 100)
        assert 2 <= replicas <= 4, clients
    assert decide_replicas([S(100, 16)], ReplicaCounts(2, 0), MEDIUM, SEEN, 100)[0] == 4


def test_a_steady_load_does_not_flap():
    spec, memory, replicas = ELASTIC, SEEN, 3
    window = []
    for tick in range(100, 160):
        window = [*window, S(tick, 9 + (tick % 3) - 1)][-15:]  # 8..10 concurrent: 2 or 3 replicas recommended
        replicas, memory = decide_replicas(window, ReplicaCounts(replicas, 0), spec, memory, tick)
        assert replicas == 3, tick


@pytest.mark.parametrize("spec, ready, is_serving, want_desired", [
    pytest.param(SMALL_STZ, 0, True, 0, id="serving, scale to zero, none running: it was at zero, stays there"),
    pytest.param(SMALL_STZ, 0, False, None, id="a new deployment starts its floor"),
    pytest.param(SMALL_STZ, 1, True, None, id="replicas running: adopted as they are"),
    pytest.param(ELASTIC, 0, True, None, id="no scale to zero: its floor"),
])
def test_initial_memory(spec, ready, is_serving, want_desired):
    memory = initial_memory(spec, ReplicaCounts(ready, 0), is_serving, 100.0)
    assert memory.desired == want_desired
    replicas, _ = decide_replicas([S(100)], ReplicaCounts(ready, 0), spec, memory, 100.0)
    assert replicas == (0 if want_desired == 0 else max(ready, spec.min_replicas))
    # ... and the first request still brings it up at once.
    replicas, _ = decide_replicas([S(101, 1, queued=1)], ReplicaCounts(ready, 0), spec, memory, 101.0)
    assert replicas >= 1


@pytest.mark.parametrize("is_batching, want_loaded", [
    pytest.param(None, 1, id="not known: one replica, as before"),
    pytest.param(True, 1, id="batching: one replica merges the requests"),
    pytest.param(False, 4, id="not batching: up to four replicas (4 concurrent at 1 each)"),
])
def test_small_under_sixteen_clients_by_whether_its_model_batches(is_batching, want_loaded):
    # The spec as the scaler's core builds it (services/scaler/core.py) at the default 4 per replica.
    per_replica = concurrency_per_replica(4.0, 1.0, is_batching)
    floor, ceiling = replica_bounds(4, 4, 4.0, per_replica)
    spec = ScaleSpec(floor, ceiling, target_concurrency=per_replica, scale_down_window_s=10)
    assert decide_replicas([S(100)], ReplicaCounts(1, 0), spec, SEEN, 100)[0] == 1
    replicas, memory = decide_replicas([S(100, 16)], ReplicaCounts(1, 0), spec, SEEN, 100)
    assert replicas == want_loaded
    # Idle again: held through the down window, then back to the one replica it idles on.
    window = [S(100, 16), S(105)]
    assert decide_replicas(window, ReplicaCounts(replicas, 0), spec, memory, 105)[0] == want_loaded
    assert decide_replicas([*window, S(115)], ReplicaCounts(replicas, 0), spec, memory, 115)[0] == 1
