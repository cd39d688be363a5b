"""Starting service processes and reading their readiness handshake (services/common/readiness.py)."""

from __future__ import annotations

import ctypes
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when its parent dies, so no service outlives `podium up`."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the parent's own shutdown still stops its children


class ServiceFailed(RuntimeError):
    pass


def start_service(module: str, env: dict[str, str], log_path: Path, ready_timeout_s: float = 120.0
                  ) -> tuple[subprocess.Popen, dict]:
    """Runs `python -m module`, stderr appended to log_path; returns once it announced `ready`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", module], env={**os.environ, **env}, stdout=subprocess.PIPE,
            stderr=log_file, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
    try:
        return process, wait_ready(process, ready_timeout_s, log_path)
    except BaseException:
        process.kill()
        process.wait()
        raise


def wait_ready(process: subprocess.Popen, timeout_s: float, log_path: Path | None = None) -> dict:
    """Reads handshake lines until `ready` (returned) or `failed`, exit or deadline (ServiceFailed)."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    buffered = b""
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServiceFailed(f"{process.args[-1]} was not ready after {timeout_s:g} s{_tail(log_path)}")
            if not selector.select(remaining):
                continue
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                process.wait()
                raise ServiceFailed(f"{process.args[-1]} exited with code {process.returncode}{_tail(log_path)}")
            buffered += chunk
            while b"\n" in buffered:
                line, buffered = buffered.split(b"\n", 1)
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "ready":
                    return event
                if event.get("event") == "failed":
                    raise ServiceFailed(f"{process.args[-1]} failed: {event.get('reason')}")
    finally:
        selector.close()


def stop_process(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(log_path: Path | None, lines: int = 15) -> str:
    if log_path is None or not log_path.exists():
        return ""
    text = log_path.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- " + str(log_path) + " ---\n" + "\n".join(text)
