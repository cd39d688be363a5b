"""The benchmark cases; each returns plain figures, and `summarize` turns them into the headline ratios."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.load import LoadResult, grpc_latency, http_latency, wrk


# The batched case's served entity is created as a user would (no batching fields): the model batches by
# default (services/worker/row_exact.py). The other endpoints turn batching off, to measure the router and
# plain replicas.
BATCHING: dict = {}
UNBATCHED = {"max_batch_size": 1}


@dataclass
class PodiumTargets:
    router_url: str
    router_grpc: str
    control_plane: str
    data_dir: Path
    token: str                 # the admin's: every call through the router needs a credential
    internal_token: str = ""   # Podium's service credential (the routing table, for worker addresses)
    worker_token: str = ""     # the router's worker credential (calling a worker directly)
    one_replica: str = "bench-one"
    many_replicas: str = "bench-many"
    batched: str = "bench-batched"

    @classmethod
    def create(cls, info: dict, model_uri: str, token: str) -> "PodiumTargets":
        targets = cls(info["router_url"], info["grpc_target"], info["control_plane_target"], Path(info["data_dir"]),
                      token, info.get("bench_internal_token", ""), info.get("bench_worker_token", ""))
        name, version = model_uri.removeprefix("models:/").rsplit("/", 1)
        cores = os.cpu_count() or 2
        for endpoint, extra in ((targets.one_replica, UNBATCHED),
                                (targets.many_replicas, {"min_provisioned_concurrency": 4 * cores,
                                                         "max_provisioned_concurrency": 4 * cores, **UNBATCHED}),
                                (targets.batched, BATCHING)):
            body = {"name": endpoint, "config": {"served_entities": [
                {"entity_name": name, "entity_version": version, "workload_size": "Small", **extra}]}}
            reply = requests.post(f"{targets.router_url}/api/2.0/serving-endpoints", json=body,
                                  headers=targets.headers(), timeout=30)
            reply.raise_for_status()
        for endpoint in (targets.one_replica, targets.many_replicas, targets.batched):
            targets.wait_ready(endpoint)
        return targets

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def wait_ready(self, endpoint: str, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = requests.get(f"{self.router_url}/api/2.0/serving-endpoints/{endpoint}", headers=self.headers(),
                                 timeout=10).json().get("state", {})
            if state.get("config_update") == "NOT_UPDATING":
                return
            if state.get("config_update") == "UPDATE_FAILED":
                raise RuntimeError(f"{endpoint} failed to deploy")
            time.sleep(0.5)
        raise RuntimeError(f"{endpoint} not ready after {timeout_s} s")

    def invocations(self, endpoint: str) -> str:
        return f"{self.router_url}/serving-endpoints/{endpoint}/invocations"

    async def worker_address(self, endpoint: str) -> str:
        from services.common.control_plane_client import ControlPlaneClient

        client = ControlPlaneClient(self.control_plane, internal_token=self.internal_token)
        try:
            async for table in client.watch_routing_table():
                for entry in table:
                    if entry.name == endpoint and entry.routes and entry.routes[0].replica_addresses:
                        return entry.routes[0].replica_addresses[0]
        finally:
            await client.close()
        raise RuntimeError("no worker address")


def payload(row: list[float], rows: int) -> bytes:
    return json.dumps({"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [row] * rows}}).encode()


def _figures(result: LoadResult) -> dict:
    return {"throughput_rps": round(result.throughput, 1), "p50_ms": round(result.p50_ms, 2),
            "p99_ms": round(result.p99_ms, 2), "requests": result.requests, "errors": result.errors}


def throughput(podium: PodiumTargets, mlflow_urls: dict[int, str], row, concurrencies, row_counts,
               duration_s: float) -> dict:
    """Case 1: saturation throughput and latency, mlflow models serve vs Podium's router."""
    targets = {f"mlflow_{w}_workers": (f"{url}/invocations", None) for w, url in mlflow_urls.items()}
    targets["podium_1_replica"] = (podium.invocations(podium.one_replica), podium.headers())
    targets[f"podium_{os.cpu_count()}_replicas"] = (podium.invocations(podium.many_replicas), podium.headers())
    out: dict = {}
    for rows in row_counts:
        body = payload(row, rows)
        for target, (url, headers) in targets.items():
            for concurrency in concurrencies:
                wrk(url, body, concurrency, 1.0, headers)  # warm-up
                out[f"{target}/rows={rows}/c={concurrency}"] = _figures(wrk(url, body, concurrency, duration_s,
                                                                            headers))
    return out


def batched_throughput(podium: PodiumTargets, row, concurrencies, duration_s: float) -> dict:
    """Case 1b: one-row requests to a served entity with its default batching, one replica."""
    url, body, out = podium.invocations(podium.batched), payload(row, 1), {}
    for concurrency in concurrencies:
        wrk(url, body, concurrency, 1.0, podium.headers())  # warm-up
        out[f"podium_batched_1_replica/rows=1/c={concurrency}"] = {
            **_figures(wrk(url, body, concurrency, duration_s, podium.headers())), **BATCHING}
    return out


async def router_overhead(podium: PodiumTargets, row, duration_s: float) -> dict:
    """Case 2: the same request to the worker's gRPC port directly vs through the router's gRPC API."""
    from podium_api.v1 import query_pb2, query_pb2_grpc
    from services.router.prediction_stream import PredictionStream

    body = payload(row, 1)
    address = await podium.worker_address(podium.one_replica)
    metadata = (("authorization", f"Bearer {podium.token}"),) if podium.token else ()
    # A worker answers only the router's worker credential.
    worker_metadata = (("authorization", f"Bearer {podium.worker_token}"),) if podium.worker_token else ()

    def direct(channel):   # the worker's PredictStream, as the router's client sends it
        stream = PredictionStream(channel, worker_metadata, address)
        async def call():
            return (await stream.predict(body, "application/json", 10)).http_status == 200
        return call

    def routed(channel):
        stub = query_pb2_grpc.QueryStub(channel)
        request = query_pb2.InvokeRequest(endpoint=podium.one_replica, body=body, content_type="application/json")
        async def call():
            await stub.Invoke(request, timeout=10, metadata=metadata)
            return True
        return call

    out: dict = {}
    saturation = await grpc_latency(address, direct, 16, duration_s=duration_s)
    # Half of saturation: calls at a fixed rate of half the worker's saturated throughput (open loop). A
    # closed loop above c=1 already queues at a worker that is ~90% busy at c=1, so its "overhead" would
    # be the router's added CPU showing up as queueing, not the latency the router adds.
    rate = saturation.throughput / 2
    for label, load in (("c=1", {"concurrency": 1}), (f"half_saturation({rate:.0f}/s)", {"rate_per_s": rate})):
        worker = await grpc_latency(address, direct, duration_s=duration_s, **load)
        router = await grpc_latency(podium.router_grpc, routed, duration_s=duration_s, **load)
        rest = await http_latency(podium.invocations(podium.one_replica), body, duration_s=duration_s,
                                  headers=podium.headers(), **load)
        out[label] = {"worker_direct": _figures(worker), "through_router_grpc": _figures(router),
                      "through_router_rest": _figures(rest),
                      "overhead_p50_ms": round(router.p50_ms - worker.p50_ms, 3),
                      "overhead_p99_ms": round(router.p99_ms - worker.p99_ms, 3)}
    out["worker_saturation_rps"] = round(saturation.throughput, 1)
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _router_pid(data_dir: Path) -> int:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"services.router" in (proc / "cmdline").read_bytes() and \
                        f"PODIUM_DATA_DIR={data_dir}".encode() in (proc / "environ").read_bytes():
                    return int(proc.name)
            except OSError:
                continue
    raise RuntimeError("router process not found")


def router_cpu(podium: PodiumTargets, bare_url: str, bare_pid: int, row, duration_s: float) -> dict:
    """Case 3: CPU seconds per query at saturation, router vs a bare aiohttp handler.

    Saturation is the measured process's own: the bare handler alone, and the router sending to the batching
    endpoint, whose replica merges requests and so answers faster than one router process can forward (its
    `cpu_utilization` shows it near one core). The router in front of the two plain replicas is measured
    too: there the replicas are the limit, the router is part-idle, and each of its wake-ups serves fewer
    requests, so each costs more."""
    body = payload(row, 1)
    router_pid = _router_pid(podium.data_dir)
    out = {}
    for label, url, pid in (("router", podium.invocations(podium.batched), router_pid),
                            ("router_replica_bound", podium.invocations(podium.many_replicas), router_pid),
                            ("bare_aiohttp", f"{bare_url}/serving-endpoints/x/invocations", bare_pid)):
        before = _cpu_seconds(pid)
        result = wrk(url, body, 64, duration_s, podium.headers())   # the same request bytes to all
        used = _cpu_seconds(pid) - before
        out[label] = {**_figures(result), "cpu_s": round(used, 3), "cpu_utilization": round(used / result.seconds, 2),
                      "cpu_ms_per_query": round(1000 * used / max(result.requests, 1), 4)}
    bare = out["bare_aiohttp"]["cpu_ms_per_query"]
    out["ratio"] = round(out["router"]["cpu_ms_per_query"] / bare, 2)
    out["ratio_replica_bound"] = round(out["router_replica_bound"]["cpu_ms_per_query"] / bare, 2)
    return out


async def external_model_proxy(podium: PodiumTargets, provider_url: str, duration_s: float) -> dict:
    """Case 4: a chat completion of a ~1 KB prompt (an e-mail address and a phone number in it) from a local
    OpenAI-compatible server, called directly vs through the router's external-model endpoint (key from the
    endpoint's config, AI gateway path, usage counted), and through a second endpoint that masks PII on input
    and output (docs/ai-gateway.md): what guardrails cost, next to what an endpoint without them pays."""
    from tests.support.external import OPENAI_KEY

    entity = {"external_model": {"provider": "openai", "name": "gpt-4o-mini", "task": "llm/v1/chat",
                                 "openai_config": {"openai_api_base": provider_url + "/v1",
                                                   "openai_api_key_plaintext": OPENAI_KEY}}}
    masked = {"guardrails": {"input": {"pii": {"behavior": "MASK"}}, "output": {"pii": {"behavior": "MASK"}}}}
    for name, ai_gateway in (("bench-external", None), ("bench-external-pii", masked)):
        spec = {"name": name, "config": {"served_entities": [entity]}}
        if ai_gateway:
            spec["ai_gateway"] = ai_gateway
        reply = requests.post(f"{podium.router_url}/api/2.0/serving-endpoints", headers=podium.headers(),
                              timeout=30, json=spec)
        reply.raise_for_status()
        podium.wait_ready(name)
    prompt = ("Please summarise this note from ana.lopez@example.com (call her on +1 415 555 0134): "
              + "the quarterly numbers look steady and the team would like a short recap. " * 12)[:1024]
    messages = [{"role": "user", "content": prompt}]
    direct_body = json.dumps({"model": "gpt-4o-mini", "messages": messages}).encode()
    routed_body = json.dumps({"messages": messages}).encode()
    out: dict = {"prompt_bytes": len(prompt.encode())}
    for concurrency in (1, 8):
        direct = await http_latency(f"{provider_url}/v1/chat/completions", direct_body, concurrency,
                                    duration_s=duration_s, headers={"Authorization": f"Bearer {OPENAI_KEY}"})
        routed = await http_latency(podium.invocations("bench-external"), routed_body, concurrency,
                                    duration_s=duration_s, headers=podium.headers())
        guarded = await http_latency(podium.invocations("bench-external-pii"), routed_body, concurrency,
                                     duration_s=duration_s, headers=podium.headers())
        out[f"c={concurrency}"] = {"direct": _figures(direct), "through_router": _figures(routed),
                                   "through_router_pii_mask": _figures(guarded),
                                   "overhead_p50_ms": round(routed.p50_ms - direct.p50_ms, 3),
                                   "overhead_p99_ms": round(routed.p99_ms - direct.p99_ms, 3),
                                   "pii_mask_cost_p50_ms": round(guarded.p50_ms - routed.p50_ms, 3),
                                   "pii_mask_cost_p99_ms": round(guarded.p99_ms - routed.p99_ms, 3)}
    return out


async def control_plane(procs, data_dir: Path) -> dict:
    """Case 5: a control plane alone (no scaler, so no replicas): create 1,000, list 10,000, get one."""
    from services.common.control_plane_client import ControlPlaneClient
    from services.common.processes import start_service

    from services.control_plane.credentials import PAT_PREFIX, issue

    data_dir.mkdir(parents=True, exist_ok=True)
    admin = issue(PAT_PREFIX).value
    process, ready = start_service("services.control_plane", {"PODIUM_DATA_DIR": str(data_dir),
                                                              "PODIUM_CONTROL_PLANE_PORT": "0",
                                                              "PODIUM_BOOTSTRAP_ADMIN_TOKEN": admin},
                                   data_dir / "control_plane.log")
    client = ControlPlaneClient(ready["grpc_target"], timeout_s=60)
    try:
        def spec(i: int) -> bytes:
            return json.dumps({"name": f"ep-{i:05d}", "config": {"served_entities": [
                {"entity_name": "bench.default.tiny", "entity_version": "1"}]}}).encode()
        create_ms = []
        for i in range(1000):
            start = time.perf_counter()
            await client.manage(admin, "CREATE_ENDPOINT", body=spec(i))
            create_ms.append((time.perf_counter() - start) * 1000)
        semaphore = asyncio.Semaphore(16)

        async def create(i):
            async with semaphore:
                await client.manage(admin, "CREATE_ENDPOINT", body=spec(i))
        await asyncio.gather(*(create(i) for i in range(1000, 10_000)))
        list_ms, parse_ms, get_ms = [], [], []
        for _ in range(10):
            # The answer's time (the call, to its last byte); the client's parse of 4 MB of JSON is its own.
            start = time.perf_counter()
            answer = await client.manage(admin, "LIST_ENDPOINTS")
            list_ms.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            listed = json.loads(answer)
            parse_ms.append((time.perf_counter() - start) * 1000)
            assert len(listed["endpoints"]) == 10_000
        for _ in range(200):
            start = time.perf_counter()
            await client.manage(admin, "GET_ENDPOINT", params={"name": "ep-04242"})
            get_ms.append((time.perf_counter() - start) * 1000)
    finally:
        await client.close()
        procs.stop(process)
    median = lambda xs: sorted(xs)[len(xs) // 2]
    p99 = lambda xs: sorted(xs)[int(len(xs) * 0.99)]
    return {"create_p50_ms": round(median(create_ms), 2), "create_p99_ms": round(p99(create_ms), 2),
            "list_10k_p50_ms": round(median(list_ms), 1), "list_10k_client_parse_p50_ms": round(median(parse_ms), 1),
            "list_10k_bytes": len(answer), "get_p50_ms": round(median(get_ms), 2)}


def summarize(report: dict) -> dict:
    throughput_ = report["throughput"]
    best_mlflow = max(throughput_.get(f"mlflow_{w}_workers/rows=1/c=64", {}).get("throughput_rps", 0) for w in (1, 2))
    podium_best = max(v["throughput_rps"] for k, v in throughput_.items()
                      if k.startswith("podium_") and k.endswith("/rows=1/c=64"))
    half = next(v for k, v in report["overhead"].items() if k.startswith("half_saturation"))
    batched = report.get("batched", {}).get("podium_batched_1_replica/rows=1/c=64", {}).get("throughput_rps")
    return {
        "router_overhead_p50_ms": half["overhead_p50_ms"],
        "router_overhead_p99_ms": half["overhead_p99_ms"],
        "router_overhead_c1_p50_ms": report["overhead"]["c=1"]["overhead_p50_ms"],
        # The Databricks REST path (what the SDKs call) against the worker's gRPC port, at half saturation.
        "router_overhead_rest_p50_ms": round(half["through_router_rest"]["p50_ms"] - half["worker_direct"]["p50_ms"], 3),
        "router_overhead_rest_p99_ms": round(half["through_router_rest"]["p99_ms"] - half["worker_direct"]["p99_ms"], 3),
        "throughput_ratio_vs_mlflow_c64": round(podium_best / best_mlflow, 2) if best_mlflow else None,
        # One-row requests at c=64 to one replica batching by default vs mlflow's best at c=64.
        "throughput_ratio_vs_mlflow_batched_c64": round(batched / best_mlflow, 2) if batched and best_mlflow else None,
        "podium_batched_rps_c64": batched,
        "router_cpu_ratio_vs_bare_aiohttp": report["router_cpu"]["ratio"],
        # The same in front of two plain replicas, which bound the throughput (the router part-idle).
        "router_cpu_ratio_replica_bound": report["router_cpu"]["ratio_replica_bound"],
        "list_10k_endpoints_ms": report["control_plane"]["list_10k_p50_ms"],
        "external_proxy_overhead_c1_p50_ms": report["external_model_proxy"]["c=1"]["overhead_p50_ms"],
        "external_proxy_overhead_c1_p99_ms": report["external_model_proxy"]["c=1"]["overhead_p99_ms"],
        "external_pii_mask_cost_c1_p50_ms": report["external_model_proxy"]["c=1"]["pii_mask_cost_p50_ms"],
        "mlflow_best_rps_c64": best_mlflow,
        "podium_best_rps_c64": podium_best,
    }


def to_markdown(report: dict) -> str:
    lines = [f"# Podium benchmark ({report['started']}, {report['machine']['cores']} cores, "
             f"{report['duration_s']:g} s per run)", "", "## Summary", "", "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["summary"].items()]
    lines += ["", "## Throughput and latency (wrk, closed loop)", "",
              "| target / rows / concurrency | req/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {v['throughput_rps']} | {v['p50_ms']} | {v['p99_ms']} | {v['errors']} |"
              for k, v in {**report["throughput"], **report.get("batched", {})}.items()]
    lines += ["", "## Router overhead (gRPC: worker direct vs through the router)", "",
              "| load | worker p50/p99 ms | router gRPC p50/p99 ms | router REST p50/p99 ms | overhead p50/p99 ms |",
              "|---|---|---|---|---|"]
    for label, v in report["overhead"].items():
        if isinstance(v, dict):
            lines.append(f"| {label} | {v['worker_direct']['p50_ms']}/{v['worker_direct']['p99_ms']} | "
                         f"{v['through_router_grpc']['p50_ms']}/{v['through_router_grpc']['p99_ms']} | "
                         f"{v['through_router_rest']['p50_ms']}/{v['through_router_rest']['p99_ms']} | "
                         f"{v['overhead_p50_ms']}/{v['overhead_p99_ms']} |")
    cpu = report["router_cpu"]
    lines += ["", "## Router CPU per query at saturation (c=64)", "",
              "| process | req/s | CPU used (cores) | CPU ms/query | vs bare |", "|---|---|---|---|---|"]
    lines += [f"| {label.replace('_', ' ')} | {cpu[label]['throughput_rps']} | {cpu[label]['cpu_utilization']} | "
              f"{cpu[label]['cpu_ms_per_query']} | {ratio} |"
              for label, ratio in (("router", cpu["ratio"]), ("router_replica_bound", cpu["ratio_replica_bound"]),
                                   ("bare_aiohttp", 1))]
    lines += ["", "## Control plane", ""]
    lines += [f"- {k}: {v}" for k, v in report["control_plane"].items()]
    proxy = report["external_model_proxy"]
    lines += ["", f"## External-model proxy (local OpenAI-compatible server, a {proxy['prompt_bytes']}-byte prompt: "
              "direct vs through the router, and through an endpoint masking PII on input and output)", "",
              "| load | direct p50/p99 ms | through router p50/p99 ms | overhead p50/p99 ms | with PII MASK p50/p99 ms "
              "| PII MASK cost p50/p99 ms |", "|---|---|---|---|---|---|"]
    lines += [f"| {label} | {v['direct']['p50_ms']}/{v['direct']['p99_ms']} | "
              f"{v['through_router']['p50_ms']}/{v['through_router']['p99_ms']} | "
              f"{v['overhead_p50_ms']}/{v['overhead_p99_ms']} | "
              f"{v['through_router_pii_mask']['p50_ms']}/{v['through_router_pii_mask']['p99_ms']} | "
              f"{v['pii_mask_cost_p50_ms']}/{v['pii_mask_cost_p99_ms']} |"
              for label, v in proxy.items() if isinstance(v, dict)]
    lines.append("")
    return "\n".join(lines)
