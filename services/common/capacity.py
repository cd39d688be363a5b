"""How much a served entity may run, from its Databricks sizing fields. Pure."""

from __future__ import annotations

import math

# Concurrent requests each workload size provisions, as documented for Databricks Model Serving
# (with scale_to_zero_enabled the lower bound becomes 0 once the entity has been idle long enough).
WORKLOAD_CONCURRENCY = {"Small": (4, 4), "Medium": (8, 16), "Large": (16, 64)}


# GPUs one replica of a workload type gets (Databricks: GPU_SMALL 1xT4, GPU_MEDIUM 1xA10G, MULTIGPU_MEDIUM
# 4xA10G, ...); every other type is CPU only.
GPUS_PER_REPLICA = {"GPU_SMALL": 1, "GPU_MEDIUM": 1, "GPU_LARGE": 1, "GPU_XLARGE": 1, "MULTIGPU_MEDIUM": 4,
                    "GPU_XLARGE_8": 8}


def gpus_for_workload_type(workload_type: str) -> int:
    """GPUs each replica of this workload type needs; 0 for CPU types."""
    return GPUS_PER_REPLICA.get(workload_type, 0)


def concurrency_bounds(entity: dict) -> tuple[int, int]:
    """(min, max) concurrent requests: explicit min/max_provisioned_concurrency, else the workload size's."""
    low, high = WORKLOAD_CONCURRENCY.get(entity.get("workload_size") or "Small", (4, 4))
    low = entity.get("min_provisioned_concurrency", low)
    high = entity.get("max_provisioned_concurrency", high)
    return low, max(low, high)


def concurrency_per_replica(target: float, unbatched: float, is_batching: bool | None) -> float:
    """Concurrent requests one replica is sized for under load: `target` where its model batches (or that is
    not known yet), at most `unbatched` where it does not.

    A replica whose model batches (services/worker/row_exact.py) merges concurrent requests into one model
    call, so one process keeps up with many clients. One that does not runs one call at a time, about one
    core under Python's lock: its entity's concurrent requests are served by more replicas (processes).
    """
    return min(target, unbatched) if is_batching is False else target


def replica_bounds(min_concurrency: int, max_concurrency: int, per_replica: float,
                   peak_per_replica: float | None = None) -> tuple[int, int]:
    """(floor, max) replicas for a concurrency range, each replica taking `per_replica` requests at once;
    `peak_per_replica`, where given, sizes the max alone (a replica that does not batch: see
    concurrency_per_replica), so the floor an entity idles on stays the same.

    The floor is what an entity runs while it serves traffic, never below one; only scale-to-zero after
    an idle window goes below it (services/scaler/policy.py decides that).
    """
    floor = max(1, math.ceil(min_concurrency / per_replica))
    peak = per_replica if peak_per_replica is None else peak_per_replica
    return floor, max(floor, math.ceil(max_concurrency / peak))
