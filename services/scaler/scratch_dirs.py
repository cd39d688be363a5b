"""Each local replica's own writable directory (its HOME and TMPDIR: services/worker/sandbox.py).

They live under one directory per stack, which other uids may walk but not list, so a restarted scaler can
clear what the replicas that are gone left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path


class ScratchDirs:
    def __init__(self, data_dir: Path):
        digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
        self._root = Path(tempfile.gettempdir()) / f"podium-scratch-{digest}"
        self._dirs: dict[str, Path] = {}

    def new(self, replica_id: str) -> Path:
        self._root.mkdir(exist_ok=True)
        os.chmod(self._root, 0o711)
        scratch = Path(tempfile.mkdtemp(prefix=f"{replica_id}-", dir=self._root))
        self._dirs[replica_id] = scratch
        return scratch

    def keep_live(self, live: set[str]) -> None:
        """Removes the directories of replicas that are gone, and knows those of `live` replicas (blocking)."""
        for scratch in self._root.glob("*") if self._root.is_dir() else ():
            replica_id = scratch.name.rsplit("-", 1)[0]
            if replica_id in live:
                self._dirs[replica_id] = scratch
            else:
                shutil.rmtree(scratch, ignore_errors=True)

    def remove(self, replica_id: str) -> None:
        """Blocking (it may hold a copy of the model): from the event loop, through a thread."""
        scratch = self._dirs.pop(replica_id, None)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._root.rmdir()   # empty once every replica is gone
