"""A replica as every runtime keeps it (services/scaler/runtime.py, docker_runtime.py, kubernetes_runtime.py):
its id, its status and what the scaler learned of it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

STARTING, READY, FAILED, EXITED, LOST = "STARTING", "READY", "FAILED", "EXITED", "LOST"


def new_replica_id(key: str, sequence: int) -> str:
    """Unique across scaler restarts (the start time in ms), sortable by start, naming its deployment."""
    return f"{key}-{int(time.time() * 1000):013d}-{sequence:04d}"


@dataclass
class Replica:
    replica_id: str
    key: str
    status: str = STARTING
    address: str = ""
    failure: str = ""
    ever_ready: bool = False
    is_building: bool = False     # its environment is being built: the start deadline has not begun
    started_at: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)  # last handshake or answered heartbeat
    log_path: Path | None = None
    pid: int | None = None
    is_stopping: bool = False
    gpus: tuple[str, ...] = ()    # the GPU ids its CUDA_VISIBLE_DEVICES names
    metrics_address: str = ""     # its Prometheus /metrics (host:port), from its handshake
    is_batching: bool | None = None  # its model merges concurrent requests (ready line or health); None: unknown
