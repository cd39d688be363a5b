"""What the local runtime knows of each replica, on disk, so that a restarted scaler adopts them.

One small JSON file per replica under <data_dir>/replicas: its deployment, pid and the pid's start time
(so a recycled pid is never mistaken for it), address and whether it was ready. The runtime writes it
when the replica starts and on each handshake step, and removes it when the replica is gone.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from services.common.processes import process_start_ticks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplicaRecord:
    replica_id: str
    key: str
    pid: int
    start_ticks: int
    address: str = ""
    is_ready: bool = False
    log_path: str = ""
    gpus: list[str] = field(default_factory=list)   # the GPUs it was given, so their load stays counted
    metrics_address: str = ""   # where its Prometheus /metrics answers (listed by the scaler's discovery)
    is_batching: bool | None = None   # whether its model batches, so a restarted scaler sizes by it (None: unknown)
    credential_id: str = ""   # its replica credential's id (never the credential), revoked when it is gone


class ReplicaRecords:
    def __init__(self, directory: Path):
        self._directory = directory

    def write(self, record: ReplicaRecord) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        path = self._directory / f"{record.replica_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record)))
        os.replace(tmp, path)  # never a half-written record

    def remove(self, replica_id: str) -> None:
        (self._directory / f"{replica_id}.json").unlink(missing_ok=True)

    def live(self) -> list[ReplicaRecord]:
        """Records whose process still runs; the others (and unreadable files) are deleted."""
        if not self._directory.exists():
            return []
        alive = []
        for path in sorted(self._directory.glob("*.json")):
            try:
                record = ReplicaRecord(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                log.warning("ignoring unreadable replica record %s", path)
                path.unlink(missing_ok=True)
                continue
            if process_start_ticks(record.pid) == record.start_ticks:
                alive.append(record)
            else:
                path.unlink(missing_ok=True)
        return alive
