"""How a local worker process comes to life: forked from the warm template, or started fresh.

Both give a `WorkerProcess`: its pid, the pipe its readiness handshake arrives on, a way to wait for its
exit and to signal it. Replicas are deliberately not tied to the scaler's life (no parent-death signal):
a restarted scaler adopts them (`adopt_process`), and each worker watches the stack's supervisor instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from services.common.processes import die_with_parent, model_code_environment, wait_pid_exit
from services.worker.settings import TemplateSettings

log = logging.getLogger(__name__)

TEMPLATE_COMMAND = (sys.executable, "-m", "services.worker.template")


class TemplateUnavailable(RuntimeError):
    """The template cannot fork replicas now: start a fresh process instead."""


class ModelUnavailable(RuntimeError):
    """The model cannot be prepared (e.g. the version is not in the registry): the replica failed."""


class WorkerProcess:
    """A worker process by pid, ours or adopted; signals go through a pidfd, so a reused pid is never hit."""

    def __init__(self, pid: int, stdout: asyncio.StreamReader | None = None,
                 child: asyncio.subprocess.Process | None = None):
        self.pid = pid
        self.stdout = stdout
        self._child = child
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self._pidfd = None

    async def wait(self) -> int | None:
        """Waits for the exit; the exit code when this process is our own child, else None."""
        if self._child is not None:
            return await self._child.wait()
        await wait_pid_exit(self.pid)
        return None

    def send_signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, OSError):
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, sig)
            else:
                os.kill(self.pid, sig)

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


WORKER_MODULE = "services.worker.sandbox"   # confines the replica, then runs services.worker


async def start_fresh(python: str, env: dict[str, str], log_path: Path) -> WorkerProcess:
    """`<python> -m services.worker.sandbox` (the platform's or a per-model environment's): pays every
    import itself, and loads the model from the local copy `fetch_model` made."""
    with open(log_path, "ab") as log_file:
        child = await asyncio.create_subprocess_exec(
            python, "-m", WORKER_MODULE, stdout=asyncio.subprocess.PIPE, stderr=log_file,
            stdin=asyncio.subprocess.DEVNULL, env={**model_code_environment(), **env})
    return WorkerProcess(child.pid, child.stdout, child)


async def fetch_model(model_uri: str, env: dict[str, str], cache_dir: Path, log_path: Path,
                      timeout_s: float) -> Path:
    """Downloads the model into the machine's cache with platform code in a process of its own (no served
    entity's variables, no model code), so the replica itself never opens the registry."""
    with open(log_path, "ab") as log_file:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.worker.fetch", str(cache_dir), stdout=asyncio.subprocess.PIPE,
            stderr=log_file, stdin=asyncio.subprocess.DEVNULL,
            env={**model_code_environment(), **env, "PODIUM_WORKER_MODEL_URI": model_uri})
    try:
        out, _ = await asyncio.wait_for(child.communicate(), timeout_s)
    except asyncio.TimeoutError:
        child.kill()
        await child.wait()
        raise ModelUnavailable(f"downloading {model_uri} took longer than {timeout_s:g} s") from None
    reply: dict = {}
    for line in out.decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            reply = json.loads(line)
    if "path" in reply:
        return Path(reply["path"])
    if "error" in reply:
        raise ModelUnavailable(reply["error"])
    raise RuntimeError(f"downloading {model_uri} failed (exit code {child.returncode}); see {log_path}")


async def _pipe_reader(read_fd: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0))
    return reader


class WarmTemplate:
    """The scaler's handle on services/worker/template.py: one per scaler, started at once so its imports
    are paid while nothing waits; restarted on the next spawn if it dies."""

    RETRY_AFTER_FAILURE_S = 30.0  # a template that cannot start is not retried on every spawn

    def __init__(self, env: dict[str, str], cache_dir: Path, log_path: Path, *, ready_timeout_s: float = 60.0,
                 request_timeout_s: float = 300.0):
        self._env = env
        self._cache_dir = cache_dir
        self._log_path = log_path
        self._ready_timeout_s = ready_timeout_s
        self._request_timeout_s = request_timeout_s
        self._failed_at: float | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._channel: socket.socket | None = None
        self._starting: asyncio.Lock = asyncio.Lock()
        self._talk = threading.Lock()  # one request/reply at a time on the socket

    async def start(self) -> None:
        async with self._starting:
            if self._process is not None and self._process.returncode is None:
                if self._channel is not None:
                    return
                self._process.kill()  # wedged or unreachable: replace it
                await self._process.wait()
            loop = asyncio.get_running_loop()
            if self._failed_at is not None and loop.time() - self._failed_at < self.RETRY_AFTER_FAILURE_S:
                raise TemplateUnavailable("the warm template failed to start recently")
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(self._log_path, "ab") as log_file:
                    process = await asyncio.create_subprocess_exec(
                        *TEMPLATE_COMMAND, stdout=asyncio.subprocess.PIPE, stderr=log_file,
                        stdin=asyncio.subprocess.DEVNULL, pass_fds=(theirs.fileno(),), preexec_fn=die_with_parent,
                        env={**model_code_environment(), **self._env,
                             **TemplateSettings.env_for(template_fd=theirs.fileno(),
                                                        template_cache_dir=self._cache_dir),
                             # no progress-bar thread in a process that forks, and no GPU in it: its
                             # replicas are CPU replicas, and a GPU replica starts fresh with its own
                             "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "CUDA_VISIBLE_DEVICES": ""})
            finally:
                theirs.close()
            try:
                await asyncio.wait_for(_await_ready(process), self._ready_timeout_s)
            except (asyncio.TimeoutError, TemplateUnavailable):
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                ours.close()
                self._failed_at = loop.time()
                raise TemplateUnavailable(f"the warm template did not start; see {self._log_path}") from None
            ours.settimeout(self._request_timeout_s)  # a wedged template must not hold every spawn forever
            self._process, self._channel, self._failed_at = process, ours, None
            log.info("warm template ready (pid %d)", process.pid)

    async def spawn(self, model_uri: str, env: dict[str, str], log_path: Path) -> WorkerProcess:
        """Forks a replica of `model_uri` (the first one of a model version also prepares it: seconds)."""
        await self.start()
        read_fd, write_fd = os.pipe()
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            reply = await asyncio.to_thread(self._request, {"op": "spawn", "model_uri": model_uri, "env": env},
                                            [write_fd, log_fd])
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
            os.close(log_fd)
        if "pid" not in reply:
            os.close(read_fd)
            raise ModelUnavailable(reply.get("error") or "the template could not start the replica")
        return WorkerProcess(int(reply["pid"]), await _pipe_reader(read_fd))

    async def prepare(self, model_uri: str, log_path: Path | None = None) -> Path:
        """Resolves, downloads and imports a model's flavor ahead of its first replica (seconds, the first
        time); the machine's copy of the model. What preparing prints goes to `log_path` (a replica's build
        log) when given."""
        await self.start()
        fds = [os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)] if log_path else []
        try:
            reply = await asyncio.to_thread(self._request, {"op": "prepare", "model_uri": model_uri}, fds)
        finally:
            for fd in fds:
                os.close(fd)
        if not reply.get("ok"):
            raise ModelUnavailable(reply.get("error") or "the template could not prepare the model")
        return Path(reply["path"])

    def _request(self, request: dict, fds: list[int]) -> dict:
        with self._talk:
            channel = self._channel
            if channel is None:
                raise TemplateUnavailable("the warm template is not running")
            try:
                if fds:
                    socket.send_fds(channel, [json.dumps(request).encode()], fds)
                else:
                    channel.send(json.dumps(request).encode())
                reply = channel.recv(1 << 16)
            except OSError as exc:
                self._channel = None
                raise TemplateUnavailable(f"the warm template is gone: {exc}") from None
            if not reply:
                self._channel = None
                raise TemplateUnavailable("the warm template is gone")
            return json.loads(reply)

    async def close(self) -> None:
        if self._channel is not None:
            self._channel.close()  # EOF: the template leaves its loop and exits
            self._channel = None
        if self._process is not None and self._process.returncode is None:
            try:
                await asyncio.wait_for(self._process.wait(), 5)
            except asyncio.TimeoutError:
                self._process.kill()
                await self._process.wait()


async def _await_ready(process: asyncio.subprocess.Process) -> None:
    assert process.stdout is not None
    async for line in process.stdout:
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if event.get("event") == "ready":
                return
            if event.get("event") == "failed":
                raise TemplateUnavailable(event.get("reason", "failed"))
    raise TemplateUnavailable("exited")
