"""Autoscaling benchmark: cold start from zero replicas and scale-up under a load step, beside the time
`mlflow models serve --env-manager local` takes to answer its first request for the same model.

    .venv/bin/python -m bench.autoscale          # 1-2 minutes on 2 cores; everything on 127.0.0.1

It starts `podium up` in a temporary directory with seconds-scale autoscaling windows (the tests' stack
helper, tests/support/stack.py), registers a tiny scikit-learn model, and measures, every call carrying the
admin token from podium.json as a user's would:
  cold start      seconds from the first request to an endpoint scaled to zero until its answer
                  (median of --cycles); with the warm template (default) and, in a second stack, with
                  fresh worker processes (PODIUM_WORKER_TEMPLATE=false), to show what the template saves
  scale-up        seconds from the start of a load step (8 clients on a 0.2 s/request model, 1 replica)
                  until a second replica is ready and in the routing table
  mlflow serve    seconds from `mlflow models serve` starting until it answers the first request
The target is a cold start in at most half of mlflow's time. Every wait has a deadline. The figures are
printed and written to --output (bench/results/autoscale.json by default; not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.run import Processes, start_mlflow
from tests.support.load import SteadyLoad
from tests.support.stack import RunningStack, start_stack, wait_for, worker_pids

REPO = Path(__file__).resolve().parent.parent

FAST = {
    "PODIUM_SCALER_INTERVAL_S": "0.25", "PODIUM_SCALE_TO_ZERO_AFTER_S": "2", "PODIUM_SCALE_DOWN_WINDOW_S": "2",
    "PODIUM_TARGET_CONCURRENCY_PER_REPLICA": "2", "PODIUM_HEARTBEAT_INTERVAL_S": "0.25",
    "PODIUM_METRICS_INTERVAL_S": "0.2", "PODIUM_METRICS_TTL_S": "2",
}


def _entity(model, **fields) -> dict:
    return {"entity_name": model.name, "entity_version": model.version, **fields}


def _uri(model) -> str:
    return f"models:/{model.name}/{model.version}"


def _records(model) -> dict:
    return {"dataframe_records": model.frame.to_dict(orient="records")}


def _entity_state(stack: RunningStack, name: str) -> dict:
    return stack.api("GET", f"/api/2.0/serving-endpoints/{name}").json()["config"]["served_entities"][0]["state"]


def cold_starts(stack: RunningStack, name: str, model, cycles: int) -> list[float]:
    seconds = []
    for _ in range(cycles):
        wait_for(lambda: (s := _entity_state(stack, name))["desired_replicas"] == 0 and s["ready_replicas"] == 0
                 and s["starting_replicas"] == 0, timeout_s=60, interval_s=0.1, what="scale to zero")
        # Out of the routing table is not gone: the last replica drains, then exits.
        wait_for(lambda: not worker_pids(stack.data_dir, _uri(model)), timeout_s=60, interval_s=0.05,
                 what="no worker process left")
        started = time.monotonic()
        reply = stack.api("POST", f"/serving-endpoints/{name}/invocations", json=_records(model), timeout_s=180)
        seconds.append(time.monotonic() - started)
        if reply.status_code != 200:
            raise RuntimeError(f"cold start answered {reply.status_code}: {reply.text}")
    return seconds


def scale_up(stack: RunningStack, name: str, model, clients: int = 8) -> float:
    with SteadyLoad([stack.url], f"/serving-endpoints/{name}/invocations", stack.admin_token, _records(model),
                    clients=clients, timeout_s=120) as load:
        started = time.monotonic()
        wait_for(lambda: _entity_state(stack, name)["ready_replicas"] >= 2, timeout_s=120, interval_s=0.02,
                 what="a second replica")
        elapsed = time.monotonic() - started
    if load.failed():
        raise RuntimeError(f"requests failed during the load step: {load.failures[:3]}")
    return elapsed


def mlflow_serve_first_answer(info: dict, model, scratch: Path) -> float:
    import requests

    procs = Processes()
    started = time.monotonic()
    try:
        url = start_mlflow(procs, _uri(model), info["tracking_uri"], 1, scratch / "mlflow-serve.log")

        def answered() -> bool:
            reply = requests.post(f"{url}/invocations", json=_records(model), timeout=30)
            return reply.status_code == 200
        wait_for(answered, timeout_s=180, interval_s=0.02, what="mlflow models serve's first answer")
        return time.monotonic() - started
    finally:
        procs.stop_all()


def measure_warm(root: Path, cycles: int) -> dict[str, object]:
    from tests.support.models import register_sklearn_classifier
    from tests.support.slow_model import register_slow_model

    data_dir = root / "warm"
    data_dir.mkdir()
    stack = start_stack(data_dir, FAST, timeout_s=180)
    try:
        iris = register_sklearn_classifier(stack.info, "main.default.bench_iris")
        stack.serve("cold", [_entity(iris, min_provisioned_concurrency=0, max_provisioned_concurrency=2,
                                     scale_to_zero_enabled=True)])
        results: dict[str, object] = {"cold_start_s": cold_starts(stack, "cold", iris, cycles)}
        slow = register_slow_model(stack.info, "main.default.bench_slow", delay_s=0.2)
        stack.serve("elastic", [_entity(slow, min_provisioned_concurrency=2, max_provisioned_concurrency=8)])
        results["scale_up_s"] = scale_up(stack, "elastic", slow)
        results["mlflow_serve_first_answer_s"] = mlflow_serve_first_answer(stack.info, iris, root)
        return results
    finally:
        stack.stop()


def measure_fresh(root: Path) -> list[float]:
    from tests.support.models import register_sklearn_classifier

    data_dir = root / "fresh"
    data_dir.mkdir()
    stack = start_stack(data_dir, {**FAST, "PODIUM_WORKER_TEMPLATE": "false"}, timeout_s=180)
    try:
        model = register_sklearn_classifier(stack.info, "main.default.bench_iris")
        stack.serve("cold", [_entity(model, min_provisioned_concurrency=0, max_provisioned_concurrency=2,
                                     scale_to_zero_enabled=True)])
        return cold_starts(stack, "cold", model, 1)
    finally:
        stack.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=3, help="cold starts to measure (median reported)")
    parser.add_argument("--no-fresh", action="store_true", help="skip the stack without the warm template")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "autoscale.json",
                        help="where the figures are written as JSON (default bench/results/autoscale.json)")
    args = parser.parse_args()

    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="podium-bench-") as tmp:
        root = Path(tmp)
        results = measure_warm(root, args.cycles)
        if not args.no_fresh:
            results["cold_start_fresh_process_s"] = measure_fresh(root)

    cold = statistics.median(results["cold_start_s"])
    mlflow_s = results["mlflow_serve_first_answer_s"]
    figures = {k: ([round(x, 3) for x in v] if isinstance(v, list) else round(v, 3)) for k, v in results.items()}
    figures["cold_start_over_mlflow"] = round(cold / mlflow_s, 4)
    figures["machine"] = (f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
                          f"at the end")
    figures["run_s"] = round(time.monotonic() - began)
    figures["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
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
