"""What a deployment's replicas printed, read back from their log files for `logs` and `build-logs`.

The runtime sends each worker's stderr to <logs_dir>/<deployment key>/<replica id>.log (replica ids sort in
start order) and, when the worker announces `ready`, writes the file's size then to <replica id>.ready.
Bytes before that mark are the build log (environment, model download and load), bytes after it the
server log. Files outlive their replica, so a replica that failed to start still has its build log.
With per-model environments the environment's own build output (pip's) is <deployment key>/build.log,
written by services/scaler/environments.py; the build log starts with it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from services.common.errors import InvalidParameter
from services.common.principals import require_service_credential
from services.scaler.environments import BUILD_LOG as ENVIRONMENT_LOG

LOG_SUFFIX, READY_SUFFIX = ".log", ".ready"
DEFAULT_MAX_BYTES = 512 * 1024
_KEY = re.compile(r"^[0-9a-f]{1,64}$")


def mark_ready(log_path: Path) -> None:
    """Records where the build log ends: called when the replica announces `ready`."""
    offset = log_path.stat().st_size if log_path.exists() else 0
    log_path.with_suffix(READY_SUFFIX).write_text(str(offset))


def read_replica_logs(key_dir: Path, running: Iterable[str], *, build: bool, max_bytes: int) -> str:
    """The build log (the environment's build output if any, then what the newest replica printed until
    ready), or the server logs of the running replicas (else of the newest).

    `running` holds replica ids the runtime still manages. Each part keeps its newest `max_bytes`,
    starting at a line boundary; several replicas' server logs come one after the other under a header.
    """
    on_disk = sorted(p.stem for p in key_dir.glob(f"*{LOG_SUFFIX}") if p.name != ENVIRONMENT_LOG) \
        if key_dir.is_dir() else []
    if build:
        environment = key_dir / ENVIRONMENT_LOG
        parts = [_tail(environment, 0, environment.stat().st_size, max_bytes // 2 if on_disk else max_bytes)] \
            if environment.exists() else []
        if on_disk:
            parts.append(_part(key_dir / f"{on_disk[-1]}{LOG_SUFFIX}", build=True, max_bytes=max_bytes - len(
                "".join(parts).encode())))
        return "".join(parts)
    if not on_disk:
        return ""
    chosen = [r for r in on_disk if r in set(running)] or on_disk[-1:]
    parts = [_part(key_dir / f"{r}{LOG_SUFFIX}", build=False, max_bytes=max_bytes // len(chosen)) for r in chosen]
    if len(chosen) == 1:
        return parts[0]
    return "".join(f"--- replica {r} ---\n{p}" for r, p in zip(chosen, parts))


def _part(log_path: Path, *, build: bool, max_bytes: int) -> str:
    ready_path = log_path.with_suffix(READY_SUFFIX)
    size = log_path.stat().st_size
    ready_at = int(ready_path.read_text() or 0) if ready_path.exists() else None
    # No ready mark: the replica is still starting, or never got there; all it printed is build output.
    start, end = (0, size if ready_at is None else ready_at) if build else (size if ready_at is None else ready_at, size)
    return _tail(log_path, start, end, max_bytes)


def _tail(log_path: Path, start: int, end: int, max_bytes: int) -> str:
    """Bytes [start, end) of the file, or its last max_bytes from a line start."""
    first = max(start, end - max_bytes)
    with open(log_path, "rb") as f:
        f.seek(first)
        data = f.read(end - first)
    if first > start and b"\n" in data:  # cut mid-line: drop the partial first line
        data = data.split(b"\n", 1)[1]
    return data.decode(errors="replace")


class ReplicaLogs:
    """Serves a deployment's logs from this machine's log files (blocking reads run in a thread), to
    Podium's control plane only: logs may show what models were sent."""

    def __init__(self, logs_dir: Path, running_replicas: Callable[[str], list[str]],
                 default_max_bytes: int = DEFAULT_MAX_BYTES, *, internal_token: str = ""):
        self._internal_token = internal_token
        self._logs_dir = logs_dir
        self._running_replicas = running_replicas
        self._default_max_bytes = default_max_bytes

    async def read(self, token: str, deployment_key: str, *, build: bool, max_bytes: int = 0) -> str:
        require_service_credential(token, self._internal_token)
        if not _KEY.fullmatch(deployment_key):  # it names a directory: never let it climb out of logs_dir
            raise InvalidParameter(f"Invalid deployment key '{deployment_key}'")
        limit = max_bytes if max_bytes > 0 else self._default_max_bytes
        return await asyncio.to_thread(read_replica_logs, self._logs_dir / deployment_key,
                                       self._running_replicas(deployment_key), build=build, max_bytes=limit)
