"""Shadow benchmark: the caller's p50/p99 latency with and without a shadow served entity, in the same run.

    PYTHONPATH=$PWD python bench/shadow.py                 # about 90 s: stack, models, 36 s of load

It starts `podium up` in a temporary directory, registers a small sklearn classifier and a second one that
answers differently (so every copy is compared and found different), and serves two endpoints on the same
stack: `plain` (the classifier alone) and `shadowed` (the same, plus the other one as a shadow entity at
--share %). --clients keep-alive clients then send --rate queries a second in all (paced, so the load is the
same on both sides and below what the machine can take; --rate 0: back to back, as fast as answered) to one
endpoint at a time, alternating every --phase-s seconds for --rounds rounds (plain, shadowed, plain, ...), so
both see the same machine over the same minutes; the first second of each phase is not counted. It prints
each side's requests, p50 and p99, the ratios, and the shadow's outcomes (compared, dropped) from the
router's metrics.

The shadow replica and the router's copies take CPU of their own while the shadowed endpoint is queried: on
a machine with few cores that is part of what the caller may see, and it is measured here as it is.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--share", type=int, default=100, help="the shadow's shadow_percentage")
    parser.add_argument("--rate", type=float, default=100.0, help="queries a second, all clients together")
    parser.add_argument("--phase-s", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import requests
    from prometheus_client.parser import text_string_to_metric_families

    from tests.support.models import register_sklearn_classifier
    from tests.support.stack import start_stack

    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="podium-shadow-") as tmp:
        stack = start_stack(Path(tmp))
        try:
            live = register_sklearn_classifier(stack.info, "main.default.bench_live", seed=1)
            other = register_sklearn_classifier(stack.info, "main.default.bench_shadow", seed=1, invert=True)
            live_entity = {"entity_name": live.name, "entity_version": live.version, "name": "live",
                           "workload_size": "Small", "scale_to_zero_enabled": False}
            shadow_entity = {"entity_name": other.name, "entity_version": other.version, "name": "shadow",
                             "shadow_percentage": args.share, "workload_size": "Small", "scale_to_zero_enabled": False}
            for name, entities in (("plain", [live_entity]), ("shadowed", [live_entity, shadow_entity])):
                created = stack.api("POST", "/api/2.0/serving-endpoints", json={"name": name, "config": {
                    "served_entities": entities,
                    "traffic_config": {"routes": [{"served_entity_name": "live", "traffic_percentage": 100}]}}})
                assert created.status_code == 200, created.text
            for name in ("plain", "shadowed"):   # both start together
                state = stack.wait_endpoint(name, timeout_s=300)["state"]
                assert state == {"ready": "READY", "config_update": "NOT_UPDATING"}, state
            payload = {"dataframe_records": live.frame.head(2).to_dict(orient="records")}
            latencies: dict[str, list[float]] = {"plain": [], "shadowed": []}
            failures = {"plain": 0, "shadowed": 0}
            target = {"name": "plain", "counted": False}
            stop = threading.Event()
            lock = threading.Lock()

            interval_s = args.clients / args.rate if args.rate > 0 else 0.0

            def client() -> None:
                with requests.Session() as session:
                    headers = {"Authorization": f"Bearer {stack.admin_token}"}
                    next_at = time.monotonic()
                    while not stop.is_set():
                        next_at += interval_s
                        # Paced: a client that fell behind sends at once and starts its schedule again,
                        # never in a burst to catch up.
                        time.sleep(max(0.0, next_at - time.monotonic()))
                        next_at = max(next_at, time.monotonic() - interval_s)
                        name, counted = target["name"], target["counted"]
                        started = time.monotonic()
                        reply = session.post(f"{stack.url}/serving-endpoints/{name}/invocations", json=payload,
                                             headers=headers, timeout=30)
                        elapsed_ms = (time.monotonic() - started) * 1000
                        if counted and target["name"] == name:
                            with lock:
                                if reply.status_code == 200:
                                    latencies[name].append(elapsed_ms)
                                else:
                                    failures[name] += 1

            threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
            for thread in threads:
                thread.start()
            before = _shadow_outcomes(stack, requests, text_string_to_metric_families)
            for _ in range(args.rounds):
                for name in ("plain", "shadowed"):
                    target.update(name=name, counted=False)
                    time.sleep(1.0)   # the phase's first second: copies of the other phase still in flight
                    target["counted"] = True
                    time.sleep(args.phase_s - 1.0)
            stop.set()
            for thread in threads:
                thread.join(30)
            time.sleep(0.5)   # the last copies land after their queries
            after = _shadow_outcomes(stack, requests, text_string_to_metric_families)
        finally:
            stack.stop()

    rows = {name: _percentiles(values) for name, values in latencies.items()}
    pace = f"{args.rate:g} queries/s" if args.rate > 0 else "back to back"
    print(f"{args.clients} clients, {pace}, {args.rounds} rounds of {args.phase_s:g} s per side, shadow at "
          f"{args.share} %, run {time.monotonic() - began:.0f} s")
    print(f"{'':<10}{'requests':>9}{'failed':>8}{'p50 ms':>9}{'p99 ms':>9}")
    for name, (count, p50, p99) in rows.items():
        print(f"{name:<10}{count:>9}{failures[name]:>8}{p50:>9.2f}{p99:>9.2f}")
    (_, p50a, p99a), (_, p50b, p99b) = rows["plain"], rows["shadowed"]
    print(f"ratio shadowed/plain: p50 {p50b / p50a:.2f}, p99 {p99b / p99a:.2f}")
    print("shadow outcomes during the run:", {k: int(after.get(k, 0) - before.get(k, 0)) for k in after})
    return 0


def _percentiles(values: list[float]) -> tuple[int, float, float]:
    ordered = sorted(values)
    if not ordered:
        return 0, float("nan"), float("nan")
    return len(ordered), statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _shadow_outcomes(stack, requests, parse) -> dict[str, float]:
    text = requests.get(f"http://{stack.info['metrics']['router'][0]}/metrics", timeout=10).text
    return {s.labels["outcome"]: s.value for family in parse(text) if family.name == "podium_router_shadow_requests"
            for s in family.samples if s.name.endswith("_total") and s.labels.get("endpoint_name") == "shadowed"}


if __name__ == "__main__":
    sys.exit(main())
