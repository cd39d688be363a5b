"""Starting `podium up` as a user would, and talking to it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from services.common.standby import is_waiting_spare

PODIUM = [sys.executable, "-m", "podium.cli"]

# Short heartbeats and deadlines, so each injected fault plays out in seconds (tests/stack/test_faults.py).
FAULTS = {
    "PODIUM_SCALER_INTERVAL_S": "0.25",
    "PODIUM_TARGET_CONCURRENCY_PER_REPLICA": "2",
    "PODIUM_UNBATCHED_CONCURRENCY_PER_REPLICA": "2",   # the unbatched test models run on exactly their floor
    "PODIUM_HEARTBEAT_INTERVAL_S": "0.25",
    "PODIUM_HEARTBEAT_EXPIRY_S": "1.5",
    "PODIUM_METRICS_INTERVAL_S": "0.2",
    "PODIUM_FORWARD_TIMEOUT_S": "8",
    "PODIUM_QUEUE_TIMEOUT_S": "10",
    "PODIUM_WORKER_STOP_GRACE_S": "5",
}


@dataclass
class RunningStack:
    process: subprocess.Popen
    data_dir: Path
    info: dict

    @property
    def url(self) -> str:
        return self.info["router_url"]

    @property
    def admin_token(self) -> str:
        return self.info["admin_token"]

    def api(self, method: str, path: str, timeout_s: float = 30, **kwargs) -> requests.Response:
        """A REST call as the admin `podium up` created (its token is in podium.json)."""
        return self.api_as(self.admin_token, method, path, timeout_s=timeout_s, **kwargs)

    def api_as(self, token: str | None, method: str, path: str, timeout_s: float = 30, **kwargs) -> requests.Response:
        """A REST call with `Authorization: Bearer <token>` (none when token is None)."""
        headers = dict(kwargs.pop("headers", None) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("verify", self.info.get("ca_file", True))
        return requests.request(method, self.url + path, timeout=timeout_s, headers=headers, **kwargs)

    def grpc_metadata(self, token: str | None = None) -> tuple[tuple[str, str], ...]:
        """gRPC call metadata carrying a credential (the admin's by default)."""
        return (("authorization", f"Bearer {token or self.admin_token}"),)

    def router_credentials(self) -> dict[str, str]:
        """The service credentials `podium up` gave its router, to start another router process on this
        stack (read from the running router's environment, as only its own user can)."""
        router = service_pids(self.data_dir, "services.router")[0]   # every router has the same ones
        environ = dict(e.split(b"=", 1) for e in Path(f"/proc/{router}/environ").read_bytes().split(b"\0") if b"=" in e)
        return {name: environ[name.encode()].decode() for name in ("PODIUM_INTERNAL_TOKEN", "PODIUM_WORKER_TOKEN")}

    def user_token(self, user_name: str, lifetime_seconds: int = 3600) -> str:
        """A fresh token of user `user_name` (created if new), minted by the admin on the user's behalf."""
        created = self.api("POST", "/api/2.0/preview/scim/v2/Users", json={"userName": user_name})
        assert created.status_code in (201, 409), created.text
        reply = self.api("POST", "/api/2.0/token-management/on-behalf-of/tokens",
                         json={"user_name": user_name, "lifetime_seconds": lifetime_seconds})
        assert reply.status_code == 200, reply.text
        return reply.json()["token_value"]

    def wait_endpoint(self, name: str, timeout_s: float = 120.0, until=("NOT_UPDATING", "UPDATE_FAILED")) -> dict:
        """Polls GET until config_update reaches one of `until`; returns the endpoint."""
        deadline = time.monotonic() + timeout_s
        while True:
            endpoint = self.api("GET", f"/api/2.0/serving-endpoints/{name}").json()
            if endpoint.get("state", {}).get("config_update") in until:
                return endpoint
            if time.monotonic() > deadline:
                raise AssertionError(f"endpoint {name} still {endpoint.get('state')} after {timeout_s} s")
            time.sleep(0.3)

    def serve(self, name: str, served_entities: list[dict], routes: list[dict] | None = None,
              timeout_s: float = 300.0) -> dict:
        """Creates an endpoint over REST and waits until it serves (READY, NOT_UPDATING); returns it."""
        config: dict = {"served_entities": served_entities}
        if routes is not None:
            config["traffic_config"] = {"routes": routes}
        created = self.api("POST", "/api/2.0/serving-endpoints", json={"name": name, "config": config})
        assert created.status_code == 200, created.text
        endpoint = self.wait_endpoint(name, timeout_s)
        assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}, endpoint
        return endpoint

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_stack(data_dir: Path, extra_env: dict[str, str] | None = None, timeout_s: float = 120.0,
                extra_args: list[str] = ()) -> RunningStack:
    # Each stack gets its own Redis and MLflow store unless told otherwise: the REDIS_URL this process may
    # have, and the MLFLOW_* URIs that mlflow.set_tracking_uri() exports on registering into an earlier
    # stack, would point a second stack at the first one's.
    env = {**os.environ, **(extra_env or {})}
    for name in ("REDIS_URL", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        if name not in (extra_env or {}):
            env.pop(name, None)
    log = open(data_dir / "podium-up.log", "wb")
    process = subprocess.Popen([*PODIUM, "up", "--data-dir", str(data_dir), "--port", "0", *extra_args],
                               stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    podium_json = data_dir / "podium.json"
    deadline = time.monotonic() + timeout_s
    while not podium_json.exists():
        if process.poll() is not None:
            raise RuntimeError(f"podium up exited: {(data_dir / 'podium-up.log').read_text()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"podium up not ready: {(data_dir / 'podium-up.log').read_text()[-3000:]}")
        time.sleep(0.2)
    return RunningStack(process, data_dir, json.loads(podium_json.read_text()))


def service_pids(data_dir: Path, module: str, env_match: str = "") -> list[int]:
    """PIDs of `python -m <module>` processes of this stack (and whose environment has env_match), not counting
    the spares that wait to replace them (services/common/standby.py)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if module.encode() not in cmdline or is_waiting_spare(cmdline, (proc / "comm").read_bytes()):
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"PODIUM_DATA_DIR={data_dir}".encode() in environ and (not env_match or env_match.encode() in environ):
            pids.append(int(proc.name))
    return sorted(pids)


def worker_pids(data_dir: Path, model_uri: str = "") -> list[int]:
    """PIDs of this stack's worker replicas (of model_uri if given), from /proc alone.

    A fresh worker is `python -m services.worker.sandbox` with its model in its environment; a replica forked from
    the warm template keeps the template's command line and environment, but is named `podium-worker` and
    writes its stderr to logs/<deployment key>/<replica>.log, whose directory names the model.
    """
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            if f"PODIUM_DATA_DIR={data_dir}".encode() not in environ:
                continue
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if b"services.worker.sandbox" in cmdline or b"services.worker" in cmdline:
                uri = next((e.split(b"=", 1)[1].decode() for e in environ
                            if e.startswith(b"PODIUM_WORKER_MODEL_URI=")), "")
            elif (proc / "comm").read_text().strip() == "podium-worker":
                uri = (Path(os.readlink(proc / "fd" / "2")).parent / "model_uri").read_text().strip()
            else:
                continue
        except OSError:
            continue
        if not model_uri or uri == model_uri:
            pids.append(int(proc.name))
    return sorted(pids)


def wait_for(condition, timeout_s: float = 60.0, interval_s: float = 0.2, what: str = "condition"):
    """Polls until condition() is truthy and returns its value; fails the test after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


async def wait_for_async(condition, timeout_s: float = 10.0, interval_s: float = 0.01, what: str = "condition"):
    """wait_for on the event loop: polls without blocking it, so the servers under test keep running."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(interval_s)


class WithCredential:
    """A gRPC stub whose every call carries `authorization: Bearer <token>` metadata."""

    def __init__(self, stub, token: str):
        self._stub = stub
        self._metadata = (("authorization", f"Bearer {token}"),)

    def __getattr__(self, name: str):
        method = getattr(self._stub, name)
        return lambda request, **kwargs: method(request, metadata=self._metadata, **kwargs)


def redis_pids(data_dir: Path) -> list[int]:
    """The stack's embedded redis-server: the one serving the socket under its data dir."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"redis-server" in cmdline and f"{data_dir}/redis.sock".encode() in cmdline:
            pids.append(int(proc.name))
    return pids
