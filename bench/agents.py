"""Time to first event of a streaming agent, through Podium and in-process: `python -m bench.agents [--n N]`.

Starts `podium up` in a temporary directory, logs two generative models from code (tests/support/agent_code.py:
an MLflow ResponsesAgent and a plain pyfunc with predict_stream), serves each (workload_size Small, no scale to
zero), and times, one request at a time on 127.0.0.1:

- Podium REST: POST /serving-endpoints/<name>/invocations with `"stream": true` over one kept-alive connection,
  from the request's first byte sent to its first `data:` line read (the rest of the stream is read after);
- Podium gRPC: Query.InvokeStream, from the call to its first message;
- floor REST / floor gRPC: the same clients against a server that answers one event at once
  (bench/stream_floor.py): what the transport and client cost by themselves;
- in-process: the same registered model loaded in this process, from the JSON body to its first event rendered
  as JSON (MLflow's parse of the body, predict_stream, the first next(), the JSON encoding), which is what a
  replica does before it hands the event on.

Prints p50/p90/p99 of each (the round with the lowest p50 of --rounds interleaved rounds: the machine may be
busy with other work) and Podium's added time at p50 (Podium p50 minus in-process p50). MLflow tracing is off
on both sides (replicas turn it off where the tracking store is local, as here).
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import requests

from bench.run import Processes, start_podium

PAYLOADS = {
    "responses": {"input": [{"role": "user", "content": "how fast is the first word"}]},
    "streaming": {"prompt": "how fast is the first word"},
}


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": statistics.median(ordered), "p90": pick(0.9), "p99": pick(0.99)}


def _rest_first_event_ms(url: str, token: str, endpoint: str, body: bytes, n: int) -> list[float]:
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        conn.request("POST", f"/serving-endpoints/{endpoint}/invocations", body=body, headers=headers)
        reply = conn.getresponse()
        if reply.status != 200:
            raise RuntimeError(f"{endpoint}: HTTP {reply.status} {reply.read()[:300]!r}")
        while not (line := reply.readline()).startswith(b"data:"):   # HTTPResponse undoes the chunked framing
            if not line:
                raise RuntimeError("the stream ended before its first event")
        samples.append((time.perf_counter() - started) * 1000)
        reply.read()
    conn.close()
    return samples


def _first_message_ms(open_call, n: int) -> list[float]:
    """From opening a server-streaming call (`open_call(i)`) to its first message, n times; each call is then
    read to its end."""
    samples = []
    for i in range(n):
        started = time.perf_counter()
        call = open_call(i)
        next(call)
        samples.append((time.perf_counter() - started) * 1000)
        for _ in call:
            pass
    return samples


def _grpc_first_event_ms(target: str, token: str, endpoint: str, body: bytes, n: int) -> list[float]:
    import grpc

    from podium_api.v1 import query_pb2, query_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = query_pb2_grpc.QueryStub(channel)
        metadata = (("authorization", f"Bearer {token}"),)
        return _first_message_ms(lambda _: stub.InvokeStream(query_pb2.InvokeRequest(endpoint=endpoint, body=body),
                                                             timeout=30, metadata=metadata), n)


def _replica_first_event_ms(address: str, worker_token: str, body: bytes, n: int) -> list[float]:
    """The router's own hop: the replica's Worker.PredictEvents called directly, as the router calls it."""
    import grpc

    from podium_api.v1 import worker_pb2, worker_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = worker_pb2_grpc.WorkerStub(channel)
        metadata = (("authorization", f"Bearer {worker_token}"),)
        return _first_message_ms(lambda i: stub.PredictEvents(
            worker_pb2.PredictItem(id=i, body=body, content_type="application/json", timeout_s=30),
            timeout=30, metadata=metadata), n)


def _replica_address(info: dict, endpoint: str) -> str:
    """The gRPC address of a ready replica of `endpoint`: the scaler's service-discovery list names it,
    its replica record gives the address."""
    groups = requests.get(f"http://{info['metrics']['scaler']}/targets", timeout=10).json()
    for group in groups:
        labels = group.get("labels", {})
        record = Path(info["data_dir"]) / "replicas" / f"{labels.get('podium_replica', '')}.json"
        if labels.get("endpoint_name") == endpoint and record.exists():
            return json.loads(record.read_text())["address"]
    raise RuntimeError(f"no ready replica of {endpoint}")


def _start_floor(procs: Processes) -> dict[str, str]:
    """bench/stream_floor.py in a process of its own: {"grpc": target, "http": url}."""
    process = procs.start([sys.executable, "-m", "bench.stream_floor"], log=None, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line.startswith("grpc="):
        raise RuntimeError(f"bench.stream_floor did not start: {line!r}")
    return dict(part.split("=", 1) for part in line.split())


def _in_process_first_event_ms(pyfunc, body: bytes, n: int) -> list[float]:
    from mlflow.pyfunc import scoring_server
    from mlflow.utils.proto_json_utils import NumpyEncoder, _get_jsonable_obj

    schema = pyfunc.metadata.get_input_schema()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        request = {k: v for k, v in json.loads(body).items() if k != "stream"}
        parsed = scoring_server._parse_json_data(request, pyfunc.metadata, schema)
        events = pyfunc.predict_stream(parsed.data, params=parsed.params or None)
        json.dumps(_get_jsonable_obj(next(events), pandas_orient="records"), cls=NumpyEncoder)
        samples.append((time.perf_counter() - started) * 1000)
        for _ in events:
            pass
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300, help="timed requests per case (after 30 to warm up)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per case, interleaved; the best p50 is kept")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import mlflow

    from tests.support import agent_models

    procs = Processes()
    try:
        with tempfile.TemporaryDirectory(prefix="podium-bench-agents-", ignore_cleanup_errors=True) as tmp:
            info = start_podium(procs, Path(tmp))
            floor = _start_floor(procs)
            token = info["admin_token"]
            registered = {kind: agent_models.register_agent(info, kind, f"bench.agents.{kind}") for kind in PAYLOADS}
            for kind, agent in registered.items():
                reply = requests.post(info["router_url"] + "/api/2.0/serving-endpoints", timeout=30,
                                      headers={"Authorization": f"Bearer {token}"}, json={
                                          "name": f"bench-{kind}", "config": {"served_entities": [{
                                              "entity_name": agent.name, "entity_version": agent.version,
                                              "workload_size": "Small", "scale_to_zero_enabled": False}]}})
                reply.raise_for_status()
            for kind in registered:
                deadline = time.monotonic() + 300
                while requests.get(f"{info['router_url']}/api/2.0/serving-endpoints/bench-{kind}", timeout=10,
                                   headers={"Authorization": f"Bearer {token}"}).json()["state"] != \
                        {"ready": "READY", "config_update": "NOT_UPDATING"}:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"bench-{kind} did not become ready")
                    time.sleep(0.5)
            # Replicas trace nothing where the tracking store is local (services/worker/generative.py): neither
            # does the in-process model, so both sides do the same work.
            mlflow.tracing.disable()
            print(f"time to first event, ms: the best of {args.rounds} rounds of {args.n} sequential requests "
                  "(after 30 to warm up)")
            print(f"{'model':<10} {'path':<12} {'p50':>7} {'p90':>7} {'p99':>7}")
            for kind, agent in registered.items():
                body = json.dumps({**PAYLOADS[kind], "stream": True}).encode()
                pyfunc = mlflow.pyfunc.load_model(agent.uri)
                figures: dict[str, dict[str, float]] = {}
                paths = (("in-process", lambda n: _in_process_first_event_ms(pyfunc, body, n)),
                         ("podium REST", lambda n: _rest_first_event_ms(info["router_url"], token, f"bench-{kind}",
                                                                        body, n)),
                         ("podium gRPC", lambda n: _grpc_first_event_ms(info["grpc_target"], token,
                                                                        f"bench-{kind}", body, n)))
                if info.get("bench_worker_token"):   # the replica alone: what the router's hop adds
                    address = _replica_address(info, f"bench-{kind}")
                    paths += (("replica gRPC", lambda n: _replica_first_event_ms(
                        address, info["bench_worker_token"], body, n)),)
                paths += (("floor REST", lambda n: _rest_first_event_ms(floor["http"], token, "floor", body, n)),
                          ("floor gRPC", lambda n: _grpc_first_event_ms(floor["grpc"], token, "floor", body, n)))
                for _ in range(args.rounds):   # interleaved rounds, the best kept: other load on the machine
                    for path, measure in paths:
                        measure(30)
                        row = _percentiles(measure(args.n))
                        if path not in figures or row["p50"] < figures[path]["p50"]:
                            figures[path] = row
                for path, _ in paths:
                    row = figures[path]
                    print(f"{kind:<10} {path:<12} {row['p50']:7.2f} {row['p90']:7.2f} {row['p99']:7.2f}")
                for wire in ("REST", "gRPC"):
                    added = figures[f"podium {wire}"]["p50"] - figures["in-process"]["p50"]
                    print(f"{kind:<10} added by Podium ({wire}) at p50: {added:.2f} ms, of which the transport's "
                          f"own floor (a server answering at once, same client) {figures[f'floor {wire}']['p50']:.2f} ms")
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
