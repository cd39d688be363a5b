"""Podium's model-zoo benchmark: `python -m bench.zoo [--quick] [--duration S] [--models name,name]`.

Trains eight tiny models in-process (bench/zoo_models.py: scikit-learn numeric and mixed-type pipelines, a
tree pipeline, XGBoost, LightGBM, a PyTorch MLP, a Hugging Face text classifier with random weights, a custom
pyfunc), registers each as `bench.zoo.<name>` in the MLflow registry that `podium up` writes to podium.json,
and serves each model two ways, one system under load at a time (all on 127.0.0.1):

- Podium: `podium up` once for the whole run; one endpoint per model, created as a user would (POST
  /api/2.0/serving-endpoints, workload_size Small, scale_to_zero_enabled false, no tuning fields) and
  queried through the router's REST URL /serving-endpoints/<name>/invocations with the admin token.
- `mlflow models serve --env-manager local` with 1 worker, then with 2 workers (each started, measured and
  stopped before the next system is loaded).

Per model and system: c=1 one-row p50 latency (wrk -c1 --latency), c=64 one-row throughput (wrk -c64), errors
(wrk's non-2xx answers plus socket errors, as bench/load.py counts them), and whether the response to the
same one-row request is the same from Podium and mlflow (bytes, and parsed JSON). Podium only: the mean batch
size during the c=64 run (delta of the workers' `podium_worker_batch_size` histogram _sum/_count) and each
replica's PSS before load and after the c=64 run.

Finding the replicas of an endpoint: the scaler's Prometheus service-discovery list (GET
http://<podium.json metrics.scaler>/targets) labels each running replica's metrics address with its
endpoint_name and replica id; the replica record <data_dir>/replicas/<replica id>.json (what the scaler
keeps so a restarted scaler adopts its replicas) gives its pid and, again, its metrics address. Both are
written by the scaler from the worker's own ready line, so no address is guessed.

Each figure is the best of two wrk runs (the lower c=1 p50, the higher c=64 throughput), after a 1 s warm-up
at the same concurrency (c=1: also two more runs of each of Podium and mlflow with 1 worker taken in turn, while
both are up, the best of all kept); Podium's c=64 warm-up goes on (1 s at a time, at most 60 s) until every replica the
scaler wants under that load is ready, and its length and the replicas are reported. Writes bench/results/zoo.json and zoo.md
(and a timestamped copy of each).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path

import orjson
import requests

from bench.cases import PodiumTargets
from bench.load import LoadResult, has_wrk, wrk
from bench.run import Processes, start_mlflow, start_podium
from bench.zoo_models import BUILDERS, ZooModel, build
from services.common.gc_tuning import freeze_startup_objects

RESULTS = Path(__file__).resolve().parent / "results"
WARM_UP_S = 1.0
DEPLOY_TIMEOUT_S = 420.0


def _figures(result: LoadResult) -> dict:
    return {"throughput_rps": round(result.throughput, 1), "p50_ms": round(result.p50_ms, 3),
            "p99_ms": round(result.p99_ms, 3), "requests": result.requests, "errors": result.errors}


RUNS = 2   # each figure is the best of this many runs: a shared machine's noise only ever makes things slower


def _load(url: str, body: bytes, headers: dict | None, duration_s: float, concurrency: int) -> dict:
    """The best of RUNS runs: the lowest p50 at c=1, the highest throughput otherwise (errors summed)."""
    wrk(url, body, concurrency, WARM_UP_S, headers)
    runs = [wrk(url, body, concurrency, duration_s, headers) for _ in range(RUNS)]
    best = min(runs, key=lambda r: r.p50_ms) if concurrency == 1 else max(runs, key=lambda r: r.throughput)
    return {**_figures(best), "errors": sum(r.errors for r in runs), "runs": len(runs)}


def _one_request(url: str, body: bytes, headers: dict | None) -> dict:
    reply = requests.post(url, data=body, headers={"Content-Type": "application/json", **(headers or {})}, timeout=60)
    return {"status": reply.status_code, "body": reply.content}


def _short(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def _error(exc: BaseException) -> str:
    return _short(f"{type(exc).__name__}: {exc}".strip(), 600)


# --- Podium's replicas: where they are, their metrics and memory ----------------------------------------------


class Replicas:
    def __init__(self, info: dict):
        self._scaler_metrics = info.get("metrics", {}).get("scaler", "")
        self._records = Path(info["data_dir"]) / "replicas"

    def of(self, endpoint: str) -> list[dict]:
        """[{replica_id, pid, metrics_address}] of the endpoint's running replicas."""
        if not self._scaler_metrics:
            raise RuntimeError("podium.json lists no scaler metrics address (scaler metrics off?)")
        groups = requests.get(f"http://{self._scaler_metrics}/targets", timeout=10).json()
        out = []
        for group in groups:
            labels = group.get("labels", {})
            if labels.get("endpoint_name") != endpoint:
                continue
            record_path = self._records / f"{labels.get('podium_replica', '')}.json"
            record = json.loads(record_path.read_text()) if record_path.exists() else {}
            out.append({"replica_id": labels.get("podium_replica", ""), "pid": record.get("pid"),
                        "metrics_address": group["targets"][0] if group.get("targets") else
                        record.get("metrics_address", "")})
        return out

    @staticmethod
    def batch_histogram(replicas: list[dict]) -> dict[str, tuple[float, float]]:
        """replica id -> (podium_worker_batch_size_sum, _count)."""
        out = {}
        for replica in replicas:
            if not replica["metrics_address"]:
                continue
            text = requests.get(f"http://{replica['metrics_address']}/metrics", timeout=10).text
            values = dict(re.findall(r"^podium_worker_batch_size_(sum|count)(?:\{[^}]*\})? ([0-9.eE+-]+)$", text, re.M))
            out[replica["replica_id"]] = (float(values.get("sum", 0)), float(values.get("count", 0)))
        return out

    @staticmethod
    def pss_mib(replicas: list[dict]) -> dict[str, float | None]:
        out = {}
        for replica in replicas:
            try:
                rollup = Path(f"/proc/{replica['pid']}/smaps_rollup").read_text()
                out[replica["replica_id"]] = round(int(re.search(r"^Pss:\s+(\d+) kB", rollup, re.M).group(1)) / 1024, 1)
            except (OSError, AttributeError, TypeError):
                out[replica["replica_id"]] = None
        return out


def _mean_batch(before: dict, after: dict) -> float | None:
    total = sum(s - before.get(r, (0.0, 0.0))[0] for r, (s, _) in after.items())
    calls = sum(c - before.get(r, (0.0, 0.0))[1] for r, (_, c) in after.items())
    return round(total / calls, 2) if calls > 0 else None


# --- the systems under test -------------------------------------------------------------------------------------


def endpoint_name(model: str) -> str:
    return "zoo-" + model.replace("_", "-")


def create_endpoint(podium: PodiumTargets, model: ZooModel) -> None:
    body = {"name": endpoint_name(model.name), "config": {"served_entities": [
        {"entity_name": model.registered_name, "entity_version": model.version, "workload_size": "Small",
         "scale_to_zero_enabled": False}]}}
    reply = requests.post(f"{podium.router_url}/api/2.0/serving-endpoints", json=body, headers=podium.headers(),
                          timeout=60)
    if reply.status_code >= 300:
        raise RuntimeError(f"create endpoint: HTTP {reply.status_code} {_short(reply.text)}")


def deploy_failure(podium: PodiumTargets, endpoint: str, data_dir: Path) -> str:
    """What the endpoint says about itself, and the tail of the newest worker log (for the report)."""
    try:
        state = requests.get(f"{podium.router_url}/api/2.0/serving-endpoints/{endpoint}", headers=podium.headers(),
                             timeout=10).text
    except requests.RequestException as exc:
        state = _error(exc)
    logs = sorted((data_dir / "logs").glob("*/*.log"), key=lambda p: p.stat().st_mtime)
    tail = ""
    for log in reversed(logs):
        text = log.read_text(errors="replace")
        if endpoint in text or "Traceback" in text:
            tail = f"{log.relative_to(data_dir)}: ...{text[-800:]}"
            break
    return _short(f"endpoint: {_short(state, 800)} | {tail}", 1800)


def measure_podium(podium: PodiumTargets, replicas: Replicas, model: ZooModel, duration_s: float
                   ) -> tuple[dict, dict]:
    endpoint = endpoint_name(model.name)
    url, headers = podium.invocations(endpoint), podium.headers()
    out: dict = {"endpoint": endpoint}
    answer = _one_request(url, model.body, headers)
    running = replicas.of(endpoint)
    out["replicas_before"] = [r["replica_id"] for r in running]
    out["pss_mib_before"] = replicas.pss_mib(running)
    out["c1"] = _load(url, model.body, headers, duration_s, 1)
    out["c64_warm_up_s"], out["replicas_at_c64"] = _warm_up_until_scaled(podium, endpoint, url, model.body, headers)
    before = replicas.batch_histogram(replicas.of(endpoint))
    out["c64"] = _figures(wrk(url, model.body, 64, duration_s, headers))
    running = replicas.of(endpoint)
    out["mean_batch_size_c64"] = _mean_batch(before, replicas.batch_histogram(running))
    out["replicas_after"] = [r["replica_id"] for r in running]
    out["pss_mib_after_c64"] = replicas.pss_mib(running)
    return out, answer


SCALE_UP_LIMIT_S = 60.0


def _replica_state(podium: PodiumTargets, endpoint: str) -> tuple[int, int, int]:
    """(ready, desired, starting) replicas of the endpoint's served entities, as its GET shows them."""
    config = requests.get(f"{podium.router_url}/api/2.0/serving-endpoints/{endpoint}", headers=podium.headers(),
                          timeout=10).json().get("config") or {}
    states = [e.get("state") or {} for e in config.get("served_entities") or []]
    return tuple(sum(int(s.get(k) or 0) for s in states)
                 for k in ("ready_replicas", "desired_replicas", "starting_replicas"))


def _warm_up_until_scaled(podium: PodiumTargets, endpoint: str, url: str, body: bytes, headers: dict | None
                          ) -> tuple[float, int]:
    """Load at c=64 until every replica the scaler wants under it is ready (a model that does not batch is
    scaled out under load: the figure is the steady state a sustained load sees, and the time it took to
    reach it is reported beside it). Returns (seconds of warm-up, ready replicas)."""
    started = time.monotonic()
    wrk(url, body, 64, WARM_UP_S, headers)
    state = _replica_state(podium, endpoint)
    # Steady once two looks a second of load apart agree and every replica wanted is ready: the scaler may
    # not have decided anything yet at the first look.
    while time.monotonic() - started < SCALE_UP_LIMIT_S:
        wrk(url, body, 64, 1.0, headers)
        state, before = _replica_state(podium, endpoint), state
        ready, desired, starting = state
        if state == before and not starting and ready >= desired:
            break
    return round(time.monotonic() - started, 1), state[0]


def _alternating_c1(podium: tuple[str, dict], mlflow: tuple[str, dict], body: bytes, duration_s: float) -> dict:
    """The best c=1 p50 of each of two servers over RUNS runs each, taken in turn (Podium, mlflow, ...)."""
    best = {"podium_p50_ms": float("inf"), "mlflow_p50_ms": float("inf")}
    for (url, headers) in (podium, mlflow):
        wrk(url, body, 1, WARM_UP_S, headers)
    for _ in range(RUNS):
        for key, (url, headers) in (("podium_p50_ms", podium), ("mlflow_p50_ms", mlflow)):
            best[key] = min(best[key], round(wrk(url, body, 1, duration_s, headers).p50_ms, 3))
    return best


def _port_closed(url: str, timeout_s: float = 30.0) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                pass
        except OSError:
            return True
        time.sleep(0.2)
    return False


def measure_mlflow(procs: Processes, model: ZooModel, tracking_uri: str, workers: int, duration_s: float,
                   log: Path, podium_c1: tuple[str, dict] | None = None) -> tuple[dict, dict]:
    """mlflow's figures; with `podium_c1` (Podium's URL and headers), also c=1 runs alternating between
    the two (`c1_alternating`): a shared machine's load drifts over minutes, and c=1 p50s a few minutes
    apart can differ by more than the systems do."""
    started = len(procs._started)
    began = time.monotonic()
    try:
        url = start_mlflow(procs, model.uri, tracking_uri, workers, log)
        out: dict = {"start_s": round(time.monotonic() - began, 1)}
        answer = _one_request(f"{url}/invocations", model.body, None)
        out["c1"] = _load(f"{url}/invocations", model.body, None, duration_s, 1)
        out["c64"] = _load(f"{url}/invocations", model.body, None, duration_s, 64)
        if podium_c1 is not None:
            out["c1_alternating"] = _alternating_c1(podium_c1, (f"{url}/invocations", {}), model.body, duration_s)
    except Exception as exc:
        tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
        raise RuntimeError(f"{_error(exc)} | log: ...{tail}") from exc
    finally:
        for process in procs._started[started:]:
            procs.stop(process)
    # Its uvicorn (a child that gets SIGTERM when the CLI dies) must be gone before anything else is loaded.
    if not _port_closed(url):
        out["warning"] = f"{url} still answers 30 s after stopping the server"
    return out, answer


# --- comparison and report ----------------------------------------------------------------------------------------


def compare(podium_answer: dict | None, mlflow_answer: dict | None) -> dict:
    if podium_answer is None or mlflow_answer is None:
        return {"equal_bytes": None, "equal_json": None}
    p, m = podium_answer["body"], mlflow_answer["body"]
    try:
        equal_json = json.loads(p) == json.loads(m)
    except ValueError:
        equal_json = False
    return {"equal_bytes": p == m and podium_answer["status"] == mlflow_answer["status"], "equal_json": equal_json,
            "podium_status": podium_answer["status"], "mlflow_status": mlflow_answer["status"],
            "podium_body": _short(p.decode(errors="replace")), "mlflow_body": _short(m.decode(errors="replace"))}


def ratios(row: dict) -> dict:
    podium, one, two = row.get("podium"), row.get("mlflow_1w"), row.get("mlflow_2w")
    out: dict = {}
    if not podium:
        return out
    best_rps = max((m["c64"]["throughput_rps"] for m in (one, two) if m), default=0)
    if best_rps:
        out["c64_throughput_vs_best_mlflow"] = round(podium["c64"]["throughput_rps"] / best_rps, 2)
    if one:
        out["c1_p50_vs_mlflow_1w"] = round(podium["c1"]["p50_ms"] / one["c1"]["p50_ms"], 2)
    best_p50 = min((m["c1"]["p50_ms"] for m in (one, two) if m), default=0)
    if best_p50:
        out["c1_p50_vs_best_mlflow"] = round(podium["c1"]["p50_ms"] / best_p50, 2)
    return out


def run_model(procs: Processes, podium: PodiumTargets | None, replicas: Replicas, model: ZooModel, info: dict,
              duration_s: float, data_dir: Path, deploy_error: str | None) -> dict:
    row: dict = {"flavor": model.flavor, "model_uri": model.uri, "request_body": model.body.decode(), "errors": {}}
    answers: dict = {}
    if deploy_error:
        row["errors"]["podium"] = deploy_error
    else:
        try:
            row["podium"], answers["podium"] = measure_podium(podium, replicas, model, duration_s)
        except Exception as exc:
            row["errors"]["podium"] = _error(exc)
            traceback.print_exc()
    for workers in (1, 2):
        paired = (podium.invocations(endpoint_name(model.name)), podium.headers()) \
            if workers == 1 and "podium" in row else None
        try:
            row[f"mlflow_{workers}w"], answers[f"mlflow_{workers}w"] = measure_mlflow(
                procs, model, info["tracking_uri"], workers, duration_s,
                data_dir / "mlflow-logs" / f"{model.name}-{workers}w.log", paired)
        except Exception as exc:
            row["errors"][f"mlflow_{workers}w"] = _error(exc)
            traceback.print_exc()
    alternating = (row.get("mlflow_1w") or {}).get("c1_alternating")
    if alternating:   # each c=1 figure: the best of its own runs and the alternating ones
        row["podium"]["c1"]["p50_ms"] = min(row["podium"]["c1"]["p50_ms"], alternating["podium_p50_ms"])
        row["mlflow_1w"]["c1"]["p50_ms"] = min(row["mlflow_1w"]["c1"]["p50_ms"], alternating["mlflow_p50_ms"])
    row["same_answer"] = compare(answers.get("podium"), answers.get("mlflow_1w"))
    if "mlflow_2w" in answers and "mlflow_1w" in answers:
        row["same_answer"]["mlflow_1w_vs_2w_equal_bytes"] = answers["mlflow_1w"]["body"] == answers["mlflow_2w"]["body"]
    row["ratios"] = ratios(row)
    return row


def run_all(procs: Processes, data_dir: Path, args, names: list[str]) -> dict:
    began = time.monotonic()
    # No model hub anywhere: the Hugging Face model is built locally, and Podium's workers and mlflow inherit this.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    info = start_podium(procs, data_dir / "podium")
    podium = PodiumTargets(info["router_url"], info["grpc_target"], info["control_plane_target"],
                           Path(info["data_dir"]), info.get("admin_token", ""))
    replicas = Replicas(info)
    report: dict = {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
        "duration_s": args.duration, "warm_up_s": WARM_UP_S, "load_tool": "wrk (-c1 and -c64, --latency)",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "models": {}}
    models: dict[str, ZooModel] = {}
    build_errors: dict[str, str] = {}
    for name in names:
        started = time.monotonic()
        try:
            models[name] = build(name, info["tracking_uri"], data_dir / "zoo-build", info.get("registry_uri"))
            print(f"built {name} in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        except Exception as exc:
            build_errors[name] = _error(exc)
            traceback.print_exc()
    deploy_errors: dict[str, str] = {}
    created: dict[str, float] = {}
    for name, model in models.items():
        try:
            create_endpoint(podium, model)
            created[name] = time.monotonic()
        except Exception as exc:
            deploy_errors[name] = _error(exc)
    deploy_s: dict[str, float] = {}
    for name in created:
        try:
            left_s = DEPLOY_TIMEOUT_S - (time.monotonic() - created[name])
            podium.wait_ready(endpoint_name(name), timeout_s=max(30.0, left_s))
            deploy_s[name] = round(time.monotonic() - created[name], 1)
        except Exception as exc:
            why = deploy_failure(podium, endpoint_name(name), Path(info["data_dir"]))
            deploy_errors[name] = f"{_error(exc)} | {why}"
    print(f"endpoints ready: {deploy_s}; failed: {sorted(deploy_errors)}", file=sys.stderr, flush=True)
    # This process is the load generator's parent and has imported MLflow, torch and transformers: a full
    # garbage collection here would be a pause counted against whatever is measured.
    freeze_startup_objects()
    for name in names:
        if name in build_errors:
            report["models"][name] = {"flavor": BUILDERS[name][0], "errors": {"build": build_errors[name]}}
            continue
        started = time.monotonic()
        row = run_model(procs, podium, replicas, models[name], info, args.duration, data_dir, deploy_errors.get(name))
        row["podium_deploy_s"] = deploy_s.get(name)
        row["bench_s"] = round(time.monotonic() - started, 1)
        report["models"][name] = row
        print(summary_line(name, row), file=sys.stderr, flush=True)
    report["total_s"] = round(time.monotonic() - began, 1)
    return report


def summary_line(name: str, row: dict) -> str:
    p = row.get("podium", {})
    return (f"{name}: podium c64 {p.get('c64', {}).get('throughput_rps')} rps, ratios {row.get('ratios')}, "
            f"equal {row.get('same_answer', {}).get('equal_bytes')}, errors {list(row.get('errors', {}))}")


def _cell(value, suffix: str = "") -> str:
    return "-" if value is None else f"{value}{suffix}"


def to_markdown(report: dict) -> str:
    machine = report["machine"]
    lines = [f"# Podium model-zoo benchmark ({report['started']})", "",
             f"{machine['cores']} cores, {machine['memory_gib']} GiB, Python {machine['python']}, "
             f"{machine['platform']}. wrk, one-row requests, each figure the best of {RUNS} runs of "
             f"{report['duration_s']:g} s after a {report['warm_up_s']:g} s warm-up; total bench time {report.get('total_s')} s.", "",
             "Podium: one endpoint per model (Small, no scale to zero, no tuning fields), through the router's "
             "REST invocations URL. mlflow: `mlflow models serve --env-manager local`, 1 and 2 workers. "
             "Ratios: Podium c64 req/s over the better mlflow's; Podium c1 p50 over mlflow 1 worker's (and over "
             "the better of the two). Errors: non-2xx + socket errors, Podium/mlflow 1w/mlflow 2w.", "",
             "| model | flavor | c1 p50 ms podium / mlflow 1w / 2w | c1 p50 ratio vs 1w (vs best) | "
             "c64 req/s podium / mlflow 1w / 2w | c64 ratio | errors | mean batch c64 | replicas at c64 (warm-up s) | "
             "replica PSS MiB before → after c64 | same answer bytes / json | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in report["models"].items():
        systems = [row.get(k) for k in ("podium", "mlflow_1w", "mlflow_2w")]
        p50 = " / ".join(_cell(s and s["c1"]["p50_ms"]) for s in systems)
        rps = " / ".join(_cell(s and s["c64"]["throughput_rps"]) for s in systems)
        errors = "/".join(_cell(s and s["c1"]["errors"] + s["c64"]["errors"]) for s in systems)
        r = row.get("ratios", {})
        podium = row.get("podium") or {}
        pss = ", ".join(f"{_cell(podium.get('pss_mib_before', {}).get(rid))} → {_cell(after)}"
                        for rid, after in podium.get("pss_mib_after_c64", {}).items()) or "-"
        same = row.get("same_answer", {})
        note = "; ".join(f"{stage}: {text[:160]}" for stage, text in row.get("errors", {}).items())
        lines.append(f"| {name} | {row.get('flavor')} | {p50} | {_cell(r.get('c1_p50_vs_mlflow_1w'))} "
                     f"({_cell(r.get('c1_p50_vs_best_mlflow'))}) | {rps} | "
                     f"{_cell(r.get('c64_throughput_vs_best_mlflow'))} | "
                     f"{errors} | {_cell(podium.get('mean_batch_size_c64'))} | {_cell(podium.get('replicas_at_c64'))} "
                     f"({_cell(podium.get('c64_warm_up_s'))}) | {pss} | "
                     f"{_cell(same.get('equal_bytes'))} / {_cell(same.get('equal_json'))} | "
                     f"{note.replace('|', '/').replace(chr(10), ' ')} |")
    lines += ["", "## Request bodies (the same bytes to every system)", ""]
    lines += [f"- {name}: `{row.get('request_body', '-')}`" for name, row in report["models"].items()]
    different = {n: r["same_answer"] for n, r in report["models"].items()
                 if r.get("same_answer", {}).get("equal_bytes") is False}
    if different:
        lines += ["", "## Answers that differ", ""]
        for name, same in different.items():
            lines += [f"- {name}: podium HTTP {same.get('podium_status')} `{same.get('podium_body')}`; "
                      f"mlflow HTTP {same.get('mlflow_status')} `{same.get('mlflow_body')}`"]
    lines.append("")
    return "\n".join(lines)


def write_report(report: dict, complete: bool) -> None:
    """A timestamped copy always; zoo.json/zoo.md (the committed figures) only from a complete default run."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(report)
    print(markdown)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in ("zoo", f"zoo-{stamp}") if complete else (f"zoo-{stamp}",):
        (RESULTS / f"{name}.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        (RESULTS / f"{name}.md").write_text(markdown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=None, help="seconds per wrk run (default 5; 2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="2 s per wrk run")
    parser.add_argument("--models", default="", help=f"comma-separated subset of: {','.join(BUILDERS)}")
    parser.add_argument("--keep-dir", default="", help="run in this directory and keep it (logs, registry)")
    args = parser.parse_args(argv)
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    names = [n.strip() for n in args.models.split(",") if n.strip()] or list(BUILDERS)
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        parser.error(f"unknown models {unknown}; known: {','.join(BUILDERS)}")
    if not has_wrk():
        print("bench needs `wrk` (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    procs = Processes()
    if args.keep_dir:
        Path(args.keep_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="podium-zoo-") as tmp:
        data_dir = Path(args.keep_dir or tmp)
        try:
            report = run_all(procs, data_dir, args, names)
        finally:
            procs.stop_all()
    write_report(report, complete=not args.quick and args.duration == 5.0 and names == list(BUILDERS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
