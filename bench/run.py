"""Podium's query-path benchmark: `python -m bench.run [--duration S] [--quick]`.

Starts everything it needs on 127.0.0.1 (a tiny scikit-learn model in a fresh MLflow registry, `podium up`
with an endpoint per case, one of them batching, `mlflow models serve --env-manager local` with 1 and 2 workers,
a bare aiohttp handler), runs each case for a
bounded time, prints a table with ratios against the baselines measured in the same run, and writes
bench/results/latest.json and latest.md (plus a timestamped copy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from bench import cases
from bench.load import has_wrk
from services.common.gc_tuning import freeze_startup_objects

RESULTS = Path(__file__).resolve().parent / "results"


def free_port() -> int:
    # mlflow models serve cannot announce an OS-picked port, so pick one here (a tiny race, bench only).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def register_model(data_dir: Path, tracking_uri: str) -> tuple[str, list[float]]:
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 4)), columns=["a", "b", "c", "d"])
    model = LogisticRegression().fit(frame, (frame.a + frame.b > 0).astype(int))
    with mlflow.start_run():
        mlflow.sklearn.log_model(model, name="model", signature=infer_signature(frame, model.predict(frame)),
                                 registered_model_name="bench.default.tiny")
    return "models:/bench.default.tiny/1", frame.iloc[0].tolist()


class Processes:
    """Every process the bench starts, stopped on exit whatever happens."""

    def __init__(self):
        self._started: list[subprocess.Popen] = []

    def start(self, args: list[str], env: dict | None = None, log: Path | None = None, **kwargs) -> subprocess.Popen:
        if log:
            log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "wb") if log else subprocess.DEVNULL
        process = subprocess.Popen(args, env={**os.environ, **(env or {})}, stdout=kwargs.pop("stdout", out),
                                   stderr=out, stdin=subprocess.DEVNULL, **kwargs)
        self._started.append(process)
        return process

    def stop(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self) -> None:
        for process in reversed(self._started):
            self.stop(process)


def wait_http(url: str, timeout_s: float = 90.0) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


def start_podium(procs: Processes, data_dir: Path) -> dict:
    # The bench calls workers and the routing table directly: it hands `podium up` the service credentials.
    tokens = {"PODIUM_INTERNAL_TOKEN": secrets.token_hex(32), "PODIUM_WORKER_TOKEN": secrets.token_hex(32)}
    process = procs.start([sys.executable, "-m", "podium.cli", "up", "--data-dir", str(data_dir), "--port", "0"],
                          env=tokens, log=data_dir / "podium-up.log")
    deadline = time.monotonic() + 120
    while not (data_dir / "podium.json").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((data_dir / "podium-up.log").read_text()[-2000:])
        time.sleep(0.2)
    return {**json.loads((data_dir / "podium.json").read_text()),
            "bench_internal_token": tokens["PODIUM_INTERNAL_TOKEN"], "bench_worker_token": tokens["PODIUM_WORKER_TOKEN"]}


def start_mlflow(procs: Processes, model_uri: str, tracking_uri: str, workers: int, log: Path) -> str:
    port = free_port()
    procs.start([sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
                 "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)],
                env={"MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri,
                     # mlflow execs `uvicorn` by name: it must find this interpreter's.
                     "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}, log=log)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/ping", timeout_s=120)
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load run (default 5)")
    parser.add_argument("--quick", action="store_true", help="concurrency 1 and 64 only, one-row requests only")
    args = parser.parse_args(argv)
    if not has_wrk():
        print("bench needs `wrk` (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="podium-bench-") as tmp:
        data_dir = Path(tmp)
        try:
            report = run_all(procs, data_dir, args)
        finally:
            procs.stop_all()
    write_report(report)
    return 0


def run_all(procs: Processes, data_dir: Path, args) -> dict:
    concurrencies = (1, 64) if args.quick else (1, 8, 64)
    row_counts = (1,) if args.quick else (1, 64)
    info = start_podium(procs, data_dir / "podium")
    model_uri, row = register_model(data_dir, info["tracking_uri"])
    # This process is the load generator and has imported MLflow, pandas and scikit-learn: a full garbage
    # collection here would be a pause counted against whatever is being measured.
    freeze_startup_objects()
    token = info.get("admin_token", "")
    report: dict = {"machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                                "platform": platform.platform()},
                    "duration_s": args.duration, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    podium = cases.PodiumTargets.create(info, model_uri, token)
    mlflow_urls = {w: start_mlflow(procs, model_uri, info["tracking_uri"], w, data_dir / f"mlflow-{w}.log")
                   for w in (1, 2)}
    report["throughput"] = cases.throughput(podium, mlflow_urls, row, concurrencies, row_counts, args.duration)
    report["batched"] = cases.batched_throughput(podium, row, concurrencies, args.duration)
    report["overhead"] = asyncio.run(cases.router_overhead(podium, row, args.duration))
    bare = procs.start([sys.executable, "-m", "bench.bare_server"], stdout=subprocess.PIPE)
    bare_url = f"http://127.0.0.1:{int(bare.stdout.readline())}"
    report["router_cpu"] = cases.router_cpu(podium, bare_url, bare.pid, row, args.duration)
    provider = procs.start([sys.executable, "-m", "bench.provider_server"], stdout=subprocess.PIPE)
    report["external_model_proxy"] = asyncio.run(cases.external_model_proxy(
        podium, provider.stdout.readline().decode().strip(), args.duration))
    report["control_plane"] = asyncio.run(cases.control_plane(procs, data_dir / "cp"))
    report["summary"] = cases.summarize(report)
    return report


def write_report(report: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    markdown = cases.to_markdown(report)
    print(markdown)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in ("latest", stamp):
        (RESULTS / f"{name}.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        (RESULTS / f"{name}.md").write_text(markdown)


if __name__ == "__main__":
    sys.exit(main())
