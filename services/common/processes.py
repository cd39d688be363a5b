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
_PR_SET_NAME = 15


def _load_libc():
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None   # not Linux


# Loaded here, in the parent: a child of a threaded parent (`podium up` supervises each service from its own
# thread) then runs no dynamic loading between fork and exec, only the one prctl call.
_LIBC = _load_libc()

# Credentials and keys passed to services through their environment (never argv). A process is given
# only those it needs (podium/launcher.py); worker processes, which run model code, get none of them.
SENSITIVE_ENV = frozenset({
    "PODIUM_INTERNAL_TOKEN", "PODIUM_WORKER_TOKEN", "PODIUM_BOOTSTRAP_ADMIN_TOKEN", "PODIUM_MASTER_KEY",
})


def model_code_environment() -> dict[str, str]:
    """This process's environment as a worker (which runs model code) may inherit it: no credential, no
    key, and not the service certificate Podium's own services talk to each other with."""
    return {k: v for k, v in os.environ.items() if k not in SENSITIVE_ENV and not k.startswith("PODIUM_TLS_")}


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the thread that started it ends (in `podium up`, a service's
    supervising thread, which lives as long as `podium up`), so no service outlives `podium up`."""
    if _LIBC is not None:   # not Linux: the parent's own shutdown still stops its children
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def set_process_name(name: bytes) -> None:
    """Sets /proc/<pid>/comm (what ps and top show; at most 15 bytes), e.g. for a forked replica."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_NAME, ctypes.c_char_p(name[:15]), 0, 0, 0)


class ServiceFailed(RuntimeError):
    pass


def start_service(module: str, env: dict[str, str], log_path: Path, ready_timeout_s: float = 120.0,
                  is_threaded_parent: bool = False) -> tuple[subprocess.Popen, dict]:
    """Runs `python -m module`, stderr appended to log_path; returns once it announced `ready`.

    The child inherits this environment minus every credential (SENSITIVE_ENV), plus `env`: a service
    gets exactly the credentials its `env` names.
    """
    process = spawn_service([sys.executable, "-m", module], env, log_path, is_threaded_parent=is_threaded_parent)
    return process, wait_service_ready(process, ready_timeout_s, log_path)


def spawn_service(argv: list[str], env: dict[str, str], log_path: Path, *, is_threaded_parent: bool = False,
                  stdin=subprocess.DEVNULL) -> subprocess.Popen:
    """Starts a service process (see start_service) without waiting for its handshake."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    inherited = {k: v for k, v in os.environ.items() if k not in SENSITIVE_ENV}
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            argv, env={**inherited, **env}, stdout=subprocess.PIPE, stderr=log_file, stdin=stdin,
            # A parent running gRPC threads must not run Python between fork and exec (it crashes the
            # child): such a child watches its parent's pid itself instead.
            preexec_fn=None if is_threaded_parent else die_with_parent)


def wait_service_ready(process: subprocess.Popen, timeout_s: float, log_path: Path) -> dict:
    """wait_ready, and the process killed if it never became ready."""
    try:
        return wait_ready(process, timeout_s, log_path)
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


def process_start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot), to tell a pid from a later reuse of it; None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may itself hold spaces or parentheses.
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19])


async def wait_for_stop(parent_pid: int = 0) -> None:
    """Returns on SIGTERM or SIGINT, or once process `parent_pid` (0: none) has exited: when a service's
    __main__ is to shut down."""
    import asyncio

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    waits = [asyncio.ensure_future(stop.wait())] + ([asyncio.ensure_future(wait_pid_exit(parent_pid))]
                                                     if parent_pid else [])
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()


async def wait_pid_exit(pid: int, poll_s: float = 0.2) -> None:
    """Returns when process `pid` (not necessarily our child) has exited: a pidfd where Linux has one."""
    import asyncio

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfd: poll
        while _is_alive(pid):
            await asyncio.sleep(poll_s)
        return
    loop = asyncio.get_running_loop()
    exited = loop.create_future()
    loop.add_reader(fd, lambda: exited.done() or exited.set_result(None))
    try:
        await exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
