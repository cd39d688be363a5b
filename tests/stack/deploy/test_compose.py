"""deploy/docker-compose.yml for real: the stack comes up from locally built images in a Docker engine the
test starts itself, a model is registered in its MLflow, deployed and queried with databricks-sdk through
the one published port (TLS, tokens), then torn down. Faults: one of the two routers killed (only
requests in flight may fail), a worker replica cut off its network (no request outlives its deadline),
and a killed scaler whose successor adopts the running worker containers instead of starting new ones.

Needs root (apt, dockerd). The first run builds every image (see tests/stack/deploy/engine.py; the timings are
printed), later runs reuse them.
"""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from tests.stack.deploy import engine as engine_mod
from tests.support.models import register_sklearn_classifier
from tests.support.stack import wait_for

pytestmark = pytest.mark.docker

PROJECT = "podiumtest"
COMPOSE_FILE = engine_mod.REPO / "deploy" / "docker-compose.yml"
STACK_ENV = {"PODIUM_PORT": "", "PODIUM_GRPC_PORT": "", "PODIUM_MLFLOW_PORT": "", "PODIUM_STACK": PROJECT,
             "PODIUM_WORKER_NETWORK": f"{PROJECT}-workers", "PODIUM_DOCKER_SOCKET": str(engine_mod.SOCKET),
             # heartbeats: a replica that stops answering leaves the routing table within ~3 s
             "PODIUM_SCALE_TO_ZERO_AFTER_S": "1800"}


def compose(*args: str, timeout_s: float = 600, check: bool = True) -> str:
    result = subprocess.run(["docker-compose", "-p", PROJECT, "-f", str(COMPOSE_FILE), *args],
                            env={**engine_mod.docker_env(), **STACK_ENV}, capture_output=True, text=True,
                            timeout=timeout_s)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker-compose {' '.join(args)}: {result.stderr[-3000:]}")
    return result.stdout


def published(service: str, port: int) -> str:
    return compose("port", service, str(port)).strip().replace("0.0.0.0", "127.0.0.1")


@pytest.fixture(scope="module")
def engine():
    started = time.monotonic()
    docker_engine = engine_mod.Engine()
    try:
        docker_engine.start()
    except engine_mod.EngineUnavailable as exc:
        pytest.skip(f"no Docker engine can run here: {exc}")
    try:
        timings = engine_mod.build_all()
        timings["engine_and_images_s"] = round(time.monotonic() - started, 1)
        print(f"\ncompose images: {json.dumps(timings)}", file=sys.stderr)
        yield docker_engine
    finally:
        docker_engine.stop()


class ComposeStack:
    def __init__(self, tmp: Path):
        self.url = f"https://{published('haproxy', 8443)}"
        self.grpc_target = published("haproxy", 8444)
        self.mlflow_url = f"http://{published('mlflow', 5000)}"
        container = compose("ps", "-q", "control-plane").strip()
        tokens = engine_mod.docker("exec", container, "cat", "/var/lib/podium/secrets/tokens.env")
        self.admin_token = dict(line.split("=", 1) for line in tokens.splitlines())["PODIUM_BOOTSTRAP_ADMIN_TOKEN"]
        self.ca_file = tmp / "ca.pem"
        engine_mod.docker("cp", f"{container}:/var/lib/podium/secrets/tls/ca.pem", str(self.ca_file))

    def api(self, method: str, path: str, timeout_s: float = 30, **kwargs) -> requests.Response:
        return requests.request(method, self.url + path, headers={"Authorization": f"Bearer {self.admin_token}"},
                                verify=str(self.ca_file), timeout=timeout_s, **kwargs)


@pytest.fixture(scope="module")
def stack(engine, tmp_path_factory):
    compose("down", "-v", "--remove-orphans", check=False)
    _remove_workers()
    started = time.monotonic()
    try:
        compose("up", "-d", "--no-build", timeout_s=900)
        running = ComposeStack(tmp_path_factory.mktemp("compose"))
        wait_for(lambda: _answers(running), timeout_s=180, what="the routers behind the published port")
        print(f"\ncompose up: {time.monotonic() - started:.1f} s", file=sys.stderr)
        yield running
    except Exception:
        print(compose("logs", "--tail", "60", check=False), file=sys.stderr)
        raise
    finally:
        started = time.monotonic()
        _remove_workers()
        compose("down", "-v", "--remove-orphans", check=False)
        print(f"\ncompose down: {time.monotonic() - started:.1f} s", file=sys.stderr)


def _answers(running: ComposeStack) -> bool:
    try:
        return running.api("GET", "/api/2.0/serving-endpoints", timeout_s=5).status_code == 200
    except requests.RequestException:
        return False


def _workers() -> list[str]:
    return engine_mod.docker("ps", "-q", "--filter", f"label=podium.managed-by={PROJECT}").split()


def _remove_workers() -> None:
    ids = engine_mod.docker("ps", "-aq", "--filter", f"label=podium.managed-by={PROJECT}").split()
    if ids:
        engine_mod.docker("rm", "-f", *ids)


@pytest.fixture(scope="module")
def served(stack, monkeypatch_module):
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.serving import EndpointCoreConfigInput, ServedEntityInput

    model = register_sklearn_classifier({"tracking_uri": stack.mlflow_url, "registry_uri": stack.mlflow_url},
                                        "compose-iris")
    monkeypatch_module.setenv("REQUESTS_CA_BUNDLE", str(stack.ca_file))
    workspace = WorkspaceClient(host=stack.url, token=stack.admin_token)
    started = time.monotonic()
    workspace.serving_endpoints.create_and_wait(
        "iris", config=EndpointCoreConfigInput(name="iris", served_entities=[ServedEntityInput(
            entity_name=model.name, entity_version=model.version, workload_size="Small",
            scale_to_zero_enabled=False)]), timeout=timedelta(minutes=5))
    print(f"\nendpoint ready (worker container started): {time.monotonic() - started:.1f} s", file=sys.stderr)
    return workspace, model


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _scaler_ready_lines() -> list[dict]:
    """The `ready` lines the scaler container printed (one per start), oldest first."""
    logs = engine_mod.docker("logs", compose("ps", "-q", "scaler").strip())
    return [json.loads(line) for line in logs.splitlines() if line.startswith("{") and '"event": "ready"' in line]


def _scaler_scrape(path: str, starts_before: int) -> str:
    """GET on the scaler's own metrics server (127.0.0.1 in its container) at the address its newest `ready`
    line gives; "" until it has started more often than `starts_before`."""
    ready = _scaler_ready_lines()
    if len(ready) <= starts_before:
        return ""
    fetch = (f"import urllib.request; print(urllib.request.urlopen('http://{ready[-1]['metrics_address']}{path}', "
             "timeout=5).read().decode())")
    return engine_mod.docker("exec", compose("ps", "-q", "scaler").strip(), "python", "-c", fetch)


def _scaler_ready_count(metrics: str) -> float | None:
    for line in metrics.splitlines():
        if line.startswith("podium_scaler_replicas_ready{") and 'endpoint_name="iris"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def _expected(model) -> list:
    return model.model.predict(model.frame).tolist()


def test_query_through_published_port_with_databricks_sdk(stack, served):
    workspace, model = served
    reply = workspace.serving_endpoints.query("iris", dataframe_records=model.frame.to_dict(orient="records"))
    assert reply.predictions == _expected(model)
    assert len(_workers()) == 1   # the scaler started the replica as a container, labelled as its own
    # Tokens are on: no credential, no answer.
    assert requests.get(stack.url + "/api/2.0/serving-endpoints", verify=str(stack.ca_file), timeout=10) \
        .status_code == 401


def test_killing_one_router_fails_only_requests_in_flight(stack, served):
    _, model = served
    body = {"dataframe_records": model.frame.to_dict(orient="records")}
    stop = threading.Event()
    outcomes: list[tuple[float, int | str]] = []

    def client() -> None:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                outcome = stack.api("POST", "/serving-endpoints/iris/invocations", json=body, timeout_s=10).status_code
            except requests.RequestException as exc:
                outcome = type(exc).__name__
            outcomes.append((sent, outcome))

    def answered(since: float) -> int:
        return sum(1 for t, o in list(outcomes) if t >= since and o == 200)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client) for _ in range(4)]
        try:
            wait_for(lambda: answered(0.0) >= 40, timeout_s=60, interval_s=0.1, what="steady load through haproxy")
            kill_sent = time.monotonic()
            compose("kill", "router-1")
            killed = time.monotonic()   # the CLI takes a moment: the router died somewhere in [kill_sent, killed]
            wait_for(lambda: answered(killed) >= 40, timeout_s=60, interval_s=0.1,
                     what="load answered by the other router")
        finally:
            stop.set()
            for future in futures:
                future.result()
    compose("start", "router-1")
    failed = [(round(t - kill_sent, 2), o) for t, o in outcomes if o != 200]
    print(f"\nrouter kill: {len(outcomes)} requests, failed (s after the kill, outcome): {failed}", file=sys.stderr)
    # Only requests in flight when it died may fail: sent before it was gone, at most one per client.
    assert all(t <= killed for t, o in outcomes if o != 200), failed
    assert len(failed) <= 4, failed


def test_disconnected_replica_never_holds_a_request_past_its_deadline(stack, served):
    _, model = served
    (worker,) = _workers()
    network = f"{PROJECT}-workers"
    body = {"dataframe_records": model.frame.to_dict(orient="records")}
    engine_mod.docker("network", "disconnect", "--force", network, worker)
    try:
        durations = []
        for _ in range(6):
            sent = time.monotonic()
            try:
                stack.api("POST", "/serving-endpoints/iris/invocations", json=body, timeout_s=90)
            except requests.RequestException:
                pass
            durations.append(round(time.monotonic() - sent, 2))
        print(f"\nreplica cut off its network: request durations {durations} s", file=sys.stderr)
        # The router's forward deadline (60 s) and queue timeout bound every request; the scaler's
        # heartbeats take the replica out within seconds and start another one.
        assert max(durations) < 75, durations
        wait_for(lambda: stack.api("POST", "/serving-endpoints/iris/invocations", json=body, timeout_s=70)
                 .status_code == 200, timeout_s=240, interval_s=1, what="a replacement replica")
    finally:
        subprocess.run(["docker", "network", "connect", network, worker], env=engine_mod.docker_env(),
                       capture_output=True)


def test_restarted_scaler_adopts_running_worker_containers(stack, served):
    _, model = served
    wait_for(lambda: len(_workers()) == 1, timeout_s=120, what="one worker container")
    before = set(_workers())
    starts = len(_scaler_ready_lines())
    compose("kill", "scaler")   # a crash: nothing stops the replicas
    compose("start", "scaler")
    # Its first pass decides between adopting and starting anew: wait until the new scaler's /metrics has
    # this deployment's counts (set at the end of every pass), then its /targets lists every replica its
    # runtime holds, one it started included (start() records a replica before its container exists).
    wait_for(lambda: _scaler_ready_count(_scaler_scrape("/metrics", starts)) == 1, timeout_s=120, interval_s=0.5,
             what="a reconcile pass of the new scaler with the adopted replica ready")
    assert len(json.loads(_scaler_scrape("/targets", starts))) == 1
    assert set(_workers()) == before
    body = {"dataframe_records": model.frame.to_dict(orient="records")}
    reply = stack.api("POST", "/serving-endpoints/iris/invocations", json=body)
    assert reply.status_code == 200 and reply.json()["predictions"] == _expected(model)
