"""The warm template: a process that has paid a worker's start-up costs once and forks replicas from it.

A fresh worker spends seconds importing MLflow and the model's flavor (scikit-learn, ...) and resolving and
downloading its artifacts, before a 20 ms load. The template imports MLflow once, and for each model
version resolves it, downloads it into the machine's cache (services/worker/model_cache.py) and imports
its flavor's installed modules (`import_flavor`), without loading it: loading runs model code, which runs
only in a sandboxed replica. A replica is then a fork: it confines itself (services/worker/sandbox.py),
loads the model from the local copy and serves, in a fraction of a second.

Protocol, over the AF_UNIX SOCK_SEQPACKET socket the scaler passes as fd template_fd: the scaler
sends `{"op": "spawn", "model_uri", "env"}` with two descriptors attached (the replica's stdout, where it
writes its readiness handshake, and its log file) and gets `{"pid"}` back, or `{"error"}` when the model
cannot be prepared (the registry's reason, e.g. the version does not exist); `{"op": "prepare",
"model_uri"}` (with the log file attached, or none) only prepares (`{"ok": true}`), so a later spawn is fast. The template makes no gRPC object and
no event loop, so forking is safe; a child never touches the registry connection it inherits, and leaves
with os._exit so it never closes what the template still uses.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import sys
import time
import traceback
from pathlib import Path

from services.common.gc_tuning import freeze_before_fork
from services.common.logging import JsonFormatter, configure_logging
from services.common.processes import set_process_name
from services.common.readiness import announce_failed, announce_ready
from services.worker.settings import TemplateSettings, WorkerSettings

log = logging.getLogger("services.worker.template")

MAX_MESSAGE_BYTES = 1 << 20


def _preload() -> None:
    """What every replica imports anyway: paid here once."""
    import grpc  # noqa: F401
    import mlflow.pyfunc  # noqa: F401
    from grpc_health.v1 import health  # noqa: F401
    from mlflow.pyfunc import scoring_server  # noqa: F401

    import services.worker.__main__  # noqa: F401


class Template:
    def __init__(self, cache_dir: Path, registry_uri: str, tracking_uri: str):
        self._cache_dir = cache_dir
        self._registry_uri = registry_uri
        self._tracking_uri = tracking_uri
        self._warm: set[Path] = set()

    def prepare(self, model_uri: str) -> Path:
        """The model's local copy, downloaded and loaded once here so its flavor is imported (blocking)."""
        import mlflow

        from services.worker.model_cache import cached_model_path

        if self._tracking_uri:
            mlflow.set_tracking_uri(self._tracking_uri)
        if self._registry_uri:
            mlflow.set_registry_uri(self._registry_uri)
        path = cached_model_path(self._cache_dir, model_uri, self._registry_uri)
        if path not in self._warm:
            started = time.monotonic()
            imported = import_flavor(path)
            self._warm.add(path)
            log.info("imported %s for %s in %.1f s, once for every replica", ", ".join(imported) or "nothing",
                     model_uri, time.monotonic() - started)
        return path

    def serve(self, channel: socket.socket) -> None:
        while True:
            try:
                message, fds, _flags, _addr = socket.recv_fds(channel, MAX_MESSAGE_BYTES, 2)
            except InterruptedError:
                continue
            if not message:
                return  # the scaler is gone
            try:
                request = json.loads(message)
                reply = self._prepare_only(request, fds) if request.get("op") == "prepare" else \
                    self._spawn(channel, request, fds)
            except Exception as exc:  # one bad request never takes the template down
                log.exception("spawn failed")
                reply = {"error": f"template failed: {exc}"}
            finally:
                for fd in fds:
                    os.close(fd)
            channel.send(json.dumps(reply).encode())

    def _prepare_only(self, request: dict, fds: list[int]) -> dict:
        with _logging_to(fds[0]) if fds else contextlib.nullcontext():   # the replica's build log, when sent
            try:
                path = self.prepare(request["model_uri"])
            except Exception as exc:
                return {"error": getattr(exc, "message", None) or str(exc) or type(exc).__name__}
        return {"ok": True, "path": str(path)}

    def _spawn(self, channel: socket.socket, request: dict, fds: list[int]) -> dict:
        if len(fds) != 2:
            return {"error": "spawn needs the replica's stdout and log descriptors"}
        with _logging_to(fds[1]):  # what preparing printed is the replica's build log too
            try:
                path = self.prepare(request["model_uri"])
            except Exception as exc:  # the registry's own reason, as a fresh worker would report it
                reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
                log.error("cannot load %s: %s", request["model_uri"], reason)
                return {"error": reason}
        sys.stdout.flush()
        sys.stderr.flush()
        freeze_before_fork()
        pid = os.fork()
        if pid == 0:
            _run_child(channel, fds, {**request.get("env", {}), **WorkerSettings.env_for(worker_model_path=path)})
        return {"pid": pid}


# A flavor's library, imported ahead of a fork: installed platform code, never the model's own.
# (skops.io: mlflow.sklearn imports it to load any scikit-learn model, seconds of imports.)
FLAVOR_LIBRARIES = {"sklearn": ("sklearn", "skops.io"), "xgboost": ("xgboost",), "lightgbm": ("lightgbm",),
                    "pytorch": ("torch",), "transformers": ("transformers",), "keras": ("keras",),
                    "tensorflow": ("tensorflow",)}
_MLFLOW_MODULE = re.compile(r"^mlflow(\.[a-z_][a-z0-9_]*)+$")


def import_flavor(path: Path) -> list[str]:
    """Imports the modules that load the model at `path` (MLflow's loader module, the flavor's library),
    without loading it: loading runs model code, which only a sandboxed replica may run. Only modules of
    the platform's own installation are imported, whatever the model's MLmodel file names."""
    import importlib
    import importlib.util

    import yaml

    flavors = (yaml.safe_load((path / "MLmodel").read_text()) or {}).get("flavors") or {}
    wanted = [module for name in flavors for module in FLAVOR_LIBRARIES.get(name, ())]
    loader = str((flavors.get("python_function") or {}).get("loader_module") or "")
    if _MLFLOW_MODULE.fullmatch(loader):
        wanted.insert(0, loader)
    imported = []
    for module in wanted:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.origin or "site-packages" not in spec.origin:
            continue   # only installed packages: never a module a model's code_paths put on sys.path
        try:
            importlib.import_module(module)
            imported.append(module)
        except Exception as exc:  # noqa: BLE001 - the replica imports it again and reports
            log.info("could not import %s ahead of time: %s", module, exc)
    if "transformers" in imported:
        imported += _import_transformers_classes(flavors.get("transformers") or {})
    _check_requirements(path)
    return imported


_CLASS_NAME = re.compile(r"^[A-Z][A-Za-z0-9_]*$")


def _import_transformers_classes(flavor: dict) -> list[str]:
    """transformers imports its pipelines and model classes lazily, on first use: seconds in every replica
    (`transformers.pipelines` alone is most of a replica's start). The classes the flavor names (pipeline,
    model, tokenizer) are looked up here, as attributes of the installed package only."""
    import transformers

    names = [flavor.get(key) for key in ("instance_type", "pipeline_model_type", "tokenizer_type")]
    imported = []
    for name in ["pipeline", *(n for n in names if isinstance(n, str) and _CLASS_NAME.fullmatch(n))]:
        try:
            getattr(transformers, name)
            imported.append(f"transformers.{name}")
        except Exception as exc:  # noqa: BLE001 - the replica imports it again and reports
            log.info("could not import transformers.%s ahead of time: %s", name, exc)
    return imported


def _check_requirements(path: Path) -> None:
    """Compares the model's logged requirements with what is installed, as loading it does, so the map of
    installed packages MLflow builds for that (most of a second) is built once here, not in every fork."""
    import warnings

    from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

    requirements = path / "requirements.txt"
    if not requirements.is_file():
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warn_dependency_requirement_mismatches(
                [line.strip() for line in requirements.read_text().splitlines() if line.strip()])
    except Exception as exc:  # noqa: BLE001 - only a cache; the replica checks again
        log.info("could not check %s ahead of time: %s", requirements, exc)


@contextlib.contextmanager
def _logging_to(fd: int):
    """Also sends this process's log lines to `fd` (a replica's log file) while the block runs."""
    handler = logging.StreamHandler(os.fdopen(os.dup(fd), "w", buffering=1))
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        handler.stream.close()


def _run_child(channel: socket.socket, fds: list[int], env: dict[str, str]) -> None:
    """In the forked replica: take its stdout and log, then run the worker. Never returns."""
    code = 1
    try:
        channel.close()
        stdout_fd, log_fd = fds
        os.dup2(stdout_fd, 1)
        os.dup2(log_fd, 2)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        set_process_name(b"podium-worker")  # the cmdline is still the template's: name it in ps/top
        os.environ.update(env)
        configure_logging("worker")
        settings = WorkerSettings()   # not from_environment(), as services/worker/__main__.py says
        if settings.worker_sandbox:   # single-threaded here (a fork keeps only the forking thread)
            from services.worker.sandbox import confine_replica

            confine_replica(settings)
            settings = WorkerSettings()   # the model path it may read
        from services.common import event_loop
        from services.common.tracing import configure_tracing
        from services.worker.__main__ import serve

        configure_tracing("worker", settings.otlp_endpoint)
        code = event_loop.run(serve(settings))
    except BaseException:  # noqa: BLE001 - report anything, then leave without running the template's cleanup
        traceback.print_exc()
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def main() -> None:
    configure_logging("worker_template")
    settings = TemplateSettings.from_environment()
    channel = socket.socket(fileno=settings.template_fd)
    try:
        _preload()
    except Exception as exc:  # the scaler falls back to fresh worker processes
        announce_failed("worker_template", f"cannot import the worker: {exc}")
        raise SystemExit(3) from None
    # Replicas are reaped by the kernel; the scaler watches them through pidfds. Ctrl-C is for the replicas
    # (they drain); the template ends when the scaler closes the socket or dies (parent-death signal).
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    template = Template(settings.template_cache_dir, settings.registry_uri, settings.tracking_uri)
    announce_ready("worker_template", pid=os.getpid())
    template.serve(channel)


if __name__ == "__main__":
    main()
