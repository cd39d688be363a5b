"""How many replicas a served entity may run, from its Databricks sizing fields. Pure."""

from __future__ import annotations

import math

# Concurrent requests each workload size provisions, as documented for Databricks Model Serving.
WORKLOAD_CONCURRENCY = {"Small": (4, 4), "Medium": (8, 16), "Large": (16, 64)}
# Requests one replica serves at once before another replica is wanted.
CONCURRENCY_PER_REPLICA = 4


# GPUs one replica of a workload type gets (Databricks: GPU_SMALL 1xT4, GPU_MEDIUM 1xA10G, MULTIGPU_MEDIUM
# 4xA10G, ...); every other type is CPU only.
GPUS_PER_REPLICA = {"GPU_SMALL": 1, "GPU_MEDIUM": 1, "GPU_LARGE": 1, "GPU_XLARGE": 1, "MULTIGPU_MEDIUM": 4,
                    "GPU_XLARGE_8": 8}


def gpus_for_workload_type(workload_type: str) -> int:
    """GPUs each replica of this workload type needs; 0 for CPU types."""
    return GPUS_PER_REPLICA.get(workload_type, 0)


def replica_bounds(entity: dict, per_replica: int = CONCURRENCY_PER_REPLICA) -> tuple[int, int]:
    """(min, max) replicas for a served entity.

    Scale-to-zero is not applied here yet: every entity keeps at least one replica until the
    queue-depth autoscaler can bring one back on demand.
    """
    low, high = WORKLOAD_CONCURRENCY.get(entity.get("workload_size", "Small"), (4, 4))
    low = entity.get("min_provisioned_concurrency", low)
    high = entity.get("max_provisioned_concurrency", high)
    min_replicas = max(1, math.ceil(low / per_replica))
    return min_replicas, max(min_replicas, math.ceil(high / per_replica))
