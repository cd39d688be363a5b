"""Autoscaling benchmark: cold start from zero replicas and scale-up under a load step, beside the time
`mlflow models serve --env-manager local` takes to answer its first request for the same model.

    PYTHONPATH=$PWD python bench/autoscale.py            # about 2-3 minutes; everything on 127.0.0.1

It starts `podium up` in a temporary directory (seconds-scale autoscaling windows), registers a tiny
scikit-learn model, and measures:
  cold start      seconds from the first request to an endpoint scaled to zero until its answer
                  (median of --cycles); with the warm template (default) and, in a second stack, with
                  fresh worker processes (PODIUM_WORKER_TEMPLATE=false), to show what the template saves
  scale-up        seconds from the start of a load step (8 clients on a 0.2 s/request model, 1 replica)
                  until a second replica is ready and in the routing table
  mlflow serve    seconds from `mlflow models serve` starting until it answers the first request
The target is a cold start in at most half of mlflow's time. Every wait has a deadline.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FAST = {
    "PODIUM_SCALER_INTERVAL_S": "0.25", "PODIUM_SCALE_TO_ZERO_AFTER_S": "2", "PODIUM_SCALE_DOWN_WINDOW_S": "2",
    "PODIUM_TARGET_CONCURRENCY_PER_REPLICA": "2", "PODIUM_HEARTBEAT_INTERVAL_S": "0.25",
    "PODIUM_METRICS_INTERVAL_S": "0.2", "PODIUM_METRICS_TTL_S": "2",
}


def wait_for(condition, timeout_s: float, what: str, interval_s: float = 0.02):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


class Stack:
    def __init__(self, data_dir: Path, extra_env: dict[str, str]):
        env = {**os.environ, **FAST, **extra_env, "PYTHONPATH": str(REPO)}
        env.pop("REDIS_URL", None)
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(data_dir / "podium-up.log", "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "podium.cli", "up", "--data-dir", str(data_dir),
                                         "--port", "0"], stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                        stdin=subprocess.DEVNULL, cwd=REPO)
        podium_json = data_dir / "podium.json"
        wait_for(lambda: podium_json.exists() or self.process.poll() is not None, 180, "podium up", 0.1)
        if self.process.poll() is not None:
            raise RuntimeError((data_dir / "podium-up.log").read_text()[-3000:])
        self.info = json.loads(podium_json.read_text())
        self.url = self.info["router_url"]

    def create(self, name: str, model, **entity) -> None:
        body = {"name": name, "config": {"served_entities": [
            {"entity_name": model.name, "entity_version": model.version, **entity}]}}
        reply = requests.post(f"{self.url}/api/2.0/serving-endpoints", json=body, timeout=30)
        reply.raise_for_status()
        wait_for(lambda: self.endpoint(name)["state"]["config_update"] == "NOT_UPDATING", 180, f"{name} ready", 0.1)

    def endpoint(self, name: str) -> dict:
        return requests.get(f"{self.url}/api/2.0/serving-endpoints/{name}", timeout=30).json()

    def entity_state(self, name: str) -> dict:
        return self.endpoint(name)["config"]["served_entities"][0]["state"]

    def query(self, name: str, model, timeout_s: float = 120) -> requests.Response:
        return requests.post(f"{self.url}/serving-endpoints/{name}/invocations", timeout=timeout_s,
                             json={"dataframe_records": model.frame.to_dict(orient="records")})

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def cold_starts(stack: Stack, name: str, model, cycles: int) -> list[float]:
    seconds = []
    for _ in range(cycles):
        wait_for(lambda: (s := stack.entity_state(name))["desired_replicas"] == 0 and s["ready_replicas"] == 0
                 and s["starting_replicas"] == 0, 60, "scale to zero", 0.1)
        time.sleep(0.5)  # the last replica has stopped, not only left the routing table
        started = time.monotonic()
        reply = stack.query(name, model)
        seconds.append(time.monotonic() - started)
        assert reply.status_code == 200, reply.text
    return seconds


def scale_up(stack: Stack, name: str, model, clients: int = 8) -> float:
    stop = threading.Event()
    failures: list[str] = []

    def client():
        with requests.Session() as session:
            while not stop.is_set():
                reply = session.post(f"{stack.url}/serving-endpoints/{name}/invocations", timeout=120,
                                     json={"dataframe_records": model.frame.to_dict(orient="records")})
                if reply.status_code != 200:
                    failures.append(reply.text)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: stack.entity_state(name)["ready_replicas"] >= 2, 120, "a second replica")
        return time.monotonic() - started
    finally:
        stop.set()
        for thread in threads:
            thread.join(120)
        assert not failures, failures[:3]


def mlflow_serve_first_answer(info: dict, model) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        bin_dir = str(Path(sys.executable).parent)
        env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
               "MLFLOW_TRACKING_URI": info["tracking_uri"], "MLFLOW_REGISTRY_URI": info["registry_uri"]}
        log = open(Path(scratch) / "serve.log", "wb")
        started = time.monotonic()
        process = subprocess.Popen([str(Path(bin_dir) / "mlflow"), "models", "serve", "-m",
                                    f"models:/{model.name}/{model.version}", "--env-manager", "local",
                                    "-h", "127.0.0.1", "-p", str(port)], env=env, stdout=log, stderr=log,
                                   stdin=subprocess.DEVNULL, start_new_session=True)

        def answered():
            if process.poll() is not None:
                raise RuntimeError("mlflow models serve exited: " + (Path(scratch) / "serve.log").read_text()[-2000:])
            try:
                reply = requests.post(f"http://127.0.0.1:{port}/invocations", timeout=30,
                                      json={"dataframe_records": model.frame.to_dict(orient="records")})
            except requests.ConnectionError:
                return False
            return reply.status_code == 200
        try:
            wait_for(answered, 180, "mlflow models serve's first answer")
            return time.monotonic() - started
        finally:
            os.killpg(process.pid, signal.SIGTERM)  # it runs uvicorn as a child
            process.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=3, help="cold starts to measure (median reported)")
    parser.add_argument("--no-fresh", action="store_true", help="skip the stack without the warm template")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "autoscale.json",
                        help="where the figures are written as JSON (default bench/results/autoscale.json)")
    args = parser.parse_args()

    from tests.support.models import register_sklearn_classifier
    from tests.support.slow_model import register_slow_model

    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="podium-bench-") as root:
        stack = Stack(Path(root) / "warm", {})
        try:
            iris = register_sklearn_classifier(stack.info, "main.default.bench_iris")
            stack.create("cold", iris, min_provisioned_concurrency=0, max_provisioned_concurrency=2,
                         scale_to_zero_enabled=True)
            results["cold_start_s"] = cold_starts(stack, "cold", iris, args.cycles)
            slow = register_slow_model(stack.info, "main.default.bench_slow", delay_s=0.2)
            stack.create("elastic", slow, min_provisioned_concurrency=2, max_provisioned_concurrency=8)
            results["scale_up_s"] = scale_up(stack, "elastic", slow)
            results["mlflow_serve_first_answer_s"] = mlflow_serve_first_answer(stack.info, iris)
        finally:
            stack.stop()
        if not args.no_fresh:
            fresh = Stack(Path(root) / "fresh", {"PODIUM_WORKER_TEMPLATE": "false"})
            try:
                model = register_sklearn_classifier(fresh.info, "main.default.bench_iris")
                fresh.create("cold", model, min_provisioned_concurrency=0, max_provisioned_concurrency=2,
                             scale_to_zero_enabled=True)
                results["cold_start_fresh_process_s"] = cold_starts(fresh, "cold", model, 1)
            finally:
                fresh.stop()

    cold = statistics.median(results["cold_start_s"])
    mlflow_s = results["mlflow_serve_first_answer_s"]
    figures = {k: ([round(x, 3) for x in v] if isinstance(v, list) else round(v, 3)) for k, v in results.items()}
    figures["cold_start_over_mlflow"] = round(cold / mlflow_s, 4)
    figures["machine"] = f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))
    print(f"cold start from zero (warm template, median of {args.cycles}): {cold:6.2f} s")
    if "cold_start_fresh_process_s" in results:
        print(f"cold start from zero (fresh worker process):          {results['cold_start_fresh_process_s'][0]:6.2f} s")
    print(f"load step to a second replica serving:                 {results['scale_up_s']:6.2f} s")
    print(f"mlflow models serve, start to first answer:            {mlflow_s:6.2f} s")
    print(f"cold start / mlflow models serve = {cold / mlflow_s:.3f}  (target <= 0.5: "
          f"{'met' if cold <= 0.5 * mlflow_s else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
