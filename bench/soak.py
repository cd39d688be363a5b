"""Soak benchmark: steady load on one endpoint for a bounded time, and what every process of the stack
holds at the start and at the end (RSS and open file descriptors), to show that nothing grows.

    PYTHONPATH=$PWD python bench/soak.py --minutes 3       # everything on 127.0.0.1

It starts `podium up` in a temporary directory, registers a tiny scikit-learn model on two replicas, runs
--clients closed-loop clients (the bounded load generator of the fault tests) for a warm-up minute's
fraction, samples every service (control plane, router, scaler, Redis, worker replicas), keeps the load
on for --minutes, samples again and prints one row per process; the figures also go to --output as JSON.
A growth in RSS beyond warm-up noise, or in file descriptors at all, is what this is run to catch.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def stack_processes(data_dir: Path) -> dict[str, psutil.Process]:
    """The stack's processes by role: services by module, workers by pid, Redis by its socket."""
    from tests.support.stack import service_pids, worker_pids

    found = {}
    for module in ("services.control_plane", "services.router", "services.scaler"):
        for pid in service_pids(data_dir, module):
            found[module.removeprefix("services.")] = psutil.Process(pid)
    for pid in worker_pids(data_dir):
        found[f"worker {pid}"] = psutil.Process(pid)
    for process in psutil.process_iter(["cmdline"]):
        if any(str(data_dir / "redis.sock") in part for part in process.info["cmdline"] or ()):
            found["redis"] = process
    return found


def sample(processes: dict[str, psutil.Process]) -> dict[str, dict]:
    out = {}
    for role, process in processes.items():
        try:
            out[role] = {"pid": process.pid, "rss_mb": round(process.memory_info().rss / 2**20, 1),
                         "fds": process.num_fds()}
        except psutil.Error:
            out[role] = {"pid": process.pid, "rss_mb": None, "fds": None}   # gone: itself a finding
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0, help="soak duration after warm-up (bounded: <= 60)")
    parser.add_argument("--warmup-s", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "soak.json")
    args = parser.parse_args()
    minutes = min(args.minutes, 60.0)

    from tests.support.load import SteadyLoad
    from tests.support.models import register_sklearn_classifier
    from tests.support.stack import start_stack, wait_for

    with tempfile.TemporaryDirectory(prefix="podium-soak-") as tmp:
        stack = start_stack(Path(tmp))
        try:
            model = register_sklearn_classifier(stack.info, "main.default.soak")
            stack.serve("soak", [{"entity_name": model.name, "entity_version": model.version,
                                  "min_provisioned_concurrency": 8, "max_provisioned_concurrency": 8}])
            wait_for(lambda: len(stack_processes(stack.data_dir)) >= 6, timeout_s=120, what="two replicas")
            payload = {"dataframe_records": model.frame.to_dict(orient="records")}
            with SteadyLoad([stack.url], "/serving-endpoints/soak/invocations", stack.admin_token, payload,
                            clients=args.clients, timeout_s=30) as load:
                time.sleep(args.warmup_s)
                processes = stack_processes(stack.data_dir)
                start, start_ok, started = sample(processes), load.ok(), time.monotonic()
                time.sleep(minutes * 60)
                end, end_ok, seconds = sample(processes), load.ok(), time.monotonic() - started
        finally:
            stack.stop()
    result = {"minutes": minutes, "clients": args.clients, "requests": end_ok - start_ok,
              "throughput_rps": round((end_ok - start_ok) / seconds, 1), "failed": load.failed(),
              "start": start, "end": end}
    print(f"{result['requests']} requests in {seconds:.0f} s ({result['throughput_rps']}/s), {load.failed()} failed")
    print(f"{'process':<16} {'RSS start MB':>13} {'RSS end MB':>11} {'fds start':>10} {'fds end':>8}")
    for role in start:
        print(f"{role:<16} {start[role]['rss_mb']!s:>13} {end[role]['rss_mb']!s:>11} "
              f"{start[role]['fds']!s:>10} {end[role]['fds']!s:>8}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if load.failed() == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
