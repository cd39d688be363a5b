"""Observability on the real stack: x-request-id and x-podium-overhead-ms on every query answer (REST and
gRPC, errors too), each service's Prometheus /metrics after known traffic, and SO_REUSEPORT router
processes that all answer."""

from __future__ import annotations

import json
import time

import grpc
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

# The same `inference` protocol as Podium's: podium_api.inference and tritonclient.grpc register the same
# protobuf names, so only one may be imported in a test session (the tritonclient tests import theirs).
from tritonclient.grpc import service_pb2 as oip
from tritonclient.grpc import service_pb2_grpc as oip_grpc
from podium_api.v1 import query_pb2, query_pb2_grpc
from services.common.processes import start_service, stop_process
from tests.support.stack import wait_for

pytestmark = pytest.mark.stack


def _body(model) -> bytes:
    frame = model.frame.head(2)
    return json.dumps({"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}}).encode()


def _scrape(address: str) -> dict:
    text = requests.get(f"http://{address}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples: dict, name: str, **labels) -> float:
    """The sum of the series of `name` whose labels include `labels` (0 when there is none yet)."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def _check_overhead(headers, total_ms: float) -> None:
    overhead = float(headers["x-podium-overhead-ms"])
    assert 0 <= overhead <= total_ms


def test_rest_answers_carry_request_id_and_overhead(stack, iris_endpoint, iris_model):
    started = time.perf_counter()
    reply = stack.api("POST", "/serving-endpoints/iris/invocations", data=_body(iris_model),
                      headers={"Content-Type": "application/json", "x-request-id": "caller-req-1"})
    total_ms = (time.perf_counter() - started) * 1000
    assert reply.status_code == 200 and reply.headers["x-request-id"] == "caller-req-1"
    _check_overhead(reply.headers, total_ms)
    generated = stack.api("POST", "/serving-endpoints/iris/invocations", data=_body(iris_model),
                          headers={"Content-Type": "application/json", "x-request-id": "not a token!"})
    assert generated.status_code == 200 and len(generated.headers["x-request-id"]) == 32
    assert generated.headers["x-request-id"] != "not a token!"
    # Errors, the router's own and the model's, carry the id too.
    missing = stack.api("POST", "/serving-endpoints/nope/invocations", json={}, headers={"x-request-id": "r-404"})
    assert missing.status_code == 404 and missing.headers["x-request-id"] == "r-404"
    bad = stack.api("POST", "/serving-endpoints/iris/invocations", data=b"{",
                    headers={"Content-Type": "application/json", "x-request-id": "r-400"})
    assert bad.status_code == 400 and bad.headers["x-request-id"] == "r-400"
    unauthenticated = stack.api_as(None, "POST", "/serving-endpoints/iris/invocations", json={})
    assert unauthenticated.status_code == 401 and len(unauthenticated.headers["x-request-id"]) == 32


def test_oip_rest_answer_carries_request_id_and_overhead(stack, iris_oip_endpoint):
    name = iris_oip_endpoint["name"]
    body = {"inputs": [{"name": n, "datatype": "FP64", "shape": [1], "data": [1.0]}
                       for n in ("sepal_length", "sepal_width", "petal_length", "petal_width")]}
    started = time.perf_counter()
    reply = stack.api("POST", f"/v2/models/{name}/infer", json=body, headers={"x-request-id": "oip-1"})
    total_ms = (time.perf_counter() - started) * 1000
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-request-id"] == "oip-1"
    _check_overhead(reply.headers, total_ms)


def test_grpc_answers_carry_request_id_and_overhead(stack, iris_endpoint, iris_model):
    with grpc.insecure_channel(stack.info["grpc_target"]) as channel:
        stub = query_pb2_grpc.QueryStub(channel)
        started = time.perf_counter()
        reply, call = stub.Invoke.with_call(query_pb2.InvokeRequest(endpoint="iris", body=_body(iris_model)),
                                            timeout=30, metadata=stack.grpc_metadata() + (("x-request-id", "g-1"),))
        total_ms = (time.perf_counter() - started) * 1000
        initial = dict(call.initial_metadata())
        assert initial["x-request-id"] == "g-1" and json.loads(reply.body)["predictions"]
        _check_overhead(initial, total_ms)
        _, generated = stub.Invoke.with_call(query_pb2.InvokeRequest(endpoint="iris", body=_body(iris_model)),
                                             timeout=30, metadata=stack.grpc_metadata())
        assert len(dict(generated.initial_metadata())["x-request-id"]) == 32
        with pytest.raises(grpc.RpcError) as missing:
            stub.Invoke(query_pb2.InvokeRequest(endpoint="nope", body=b"{}"), timeout=10,
                        metadata=stack.grpc_metadata() + (("x-request-id", "g-404"),))
        assert ("x-request-id", "g-404") in missing.value.trailing_metadata()


def test_oip_grpc_answer_carries_request_id_and_overhead(stack, iris_oip_endpoint):
    request = oip.ModelInferRequest(model_name=iris_oip_endpoint["name"], inputs=[
        oip.ModelInferRequest.InferInputTensor(name=n, datatype="FP64", shape=[1],
                                               contents=oip.InferTensorContents(fp64_contents=[1.0]))
        for n in ("sepal_length", "sepal_width", "petal_length", "petal_width")])
    with grpc.insecure_channel(stack.info["grpc_target"]) as channel:
        _, call = oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer.with_call(
            request, timeout=30, metadata=stack.grpc_metadata() + (("x-request-id", "oip-g-1"),))
    initial = dict(call.initial_metadata())
    assert initial["x-request-id"] == "oip-g-1" and float(initial["x-podium-overhead-ms"]) >= 0


def test_every_service_metrics_count_known_traffic(stack, iris_endpoint, iris_model):
    [router_metrics] = stack.info["metrics"]["router"]
    scaler_metrics = stack.info["metrics"]["scaler"]
    assert router_metrics.startswith("127.0.0.1:") and scaler_metrics.startswith("127.0.0.1:")
    targets = requests.get(f"http://{scaler_metrics}/targets", timeout=10).json()
    [worker_metrics] = [a for t in targets if t["labels"]["endpoint_name"] == "iris" for a in t["targets"]]
    before, worker_before = _scrape(router_metrics), _scrape(worker_metrics)
    for _ in range(5):
        assert stack.api("POST", "/serving-endpoints/iris/invocations", data=_body(iris_model),
                         headers={"Content-Type": "application/json"}).status_code == 200
    for _ in range(2):
        assert stack.api("POST", "/serving-endpoints/iris/invocations", data=b"{",
                         headers={"Content-Type": "application/json"}).status_code == 400
    after, worker_after = _scrape(router_metrics), _scrape(worker_metrics)

    def delta(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)
    assert delta("podium_router_requests_total", endpoint_name="iris") == 7
    assert delta("podium_router_errors_total", endpoint_name="iris", error_code="BAD_REQUEST",
                 status_class="4xx") == 2
    assert delta("podium_router_request_latency_ms_count", endpoint_name="iris") == 7
    assert delta("podium_router_overhead_ms_count") == 5   # answered by the model: the successes
    assert ("podium_router_in_flight_requests", (("endpoint_name", "iris"),
                                                 ("served_entity_name", f"iris-{iris_model.version}"))) in after
    # The worker counted the same queries; its model load was timed.
    predicted = _value(worker_after, "podium_worker_predictions_total", method="predict") - \
        _value(worker_before, "podium_worker_predictions_total", method="predict")
    assert predicted == 7
    assert _value(worker_after, "podium_worker_predict_latency_ms_count", method="predict") >= 7
    assert _value(worker_after, "podium_worker_model_load_seconds") > 0
    scaler = _scrape(scaler_metrics)
    assert _value(scaler, "podium_scaler_replicas_ready", endpoint_name="iris") >= 1
    assert _value(scaler, "podium_scaler_replicas_desired", endpoint_name="iris") >= 1
    # The Databricks export is a view of the same registry: the same count under its name.
    export = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(
        stack.api("GET", "/api/2.0/serving-endpoints/iris/metrics").text) for s in f.samples}
    assert _value(export, "request_count_total") == _value(after, "podium_router_requests_total",
                                                           endpoint_name="iris")
    assert _value(export, "request_4xx_count_total") == _value(after, "podium_router_errors_total",
                                                               endpoint_name="iris", status_class="4xx")


def test_router_processes_share_the_port_and_all_answer(stack, iris_endpoint, iris_model):
    """Three peer routers, as `podium up` starts PODIUM_ROUTER_PROCESSES of them: each binds the same ports
    with SO_REUSEPORT and has its own metrics port."""
    env = {"PODIUM_DATA_DIR": str(stack.data_dir), "PODIUM_REDIS_URL": stack.info["redis_url"],
           "PODIUM_CONTROL_PLANE_TARGET": stack.info["control_plane_target"], "PODIUM_ROUTER_PORT": "0",
           "PODIUM_ROUTER_GRPC_PORT": "0", "PODIUM_ROUTER_REUSE_PORT": "true", **stack.router_credentials()}
    started = [start_service("services.router", env, stack.data_dir / "logs" / "router-reuseport-0.log")]
    try:
        url, grpc_target = started[0][1]["router_url"], started[0][1]["grpc_target"]
        env.update({"PODIUM_ROUTER_PORT": url.rsplit(":", 1)[1], "PODIUM_ROUTER_GRPC_PORT": grpc_target.rsplit(":", 1)[1]})
        started += [start_service("services.router", env, stack.data_dir / "logs" / f"router-reuseport-{i}.log")
                    for i in (1, 2)]
        readies = [ready for _, ready in started]
        assert {r["router_url"] for r in readies} == {url} and {r["grpc_target"] for r in readies} == {grpc_target}
        metrics_addresses = [r["metrics_address"] for r in readies]
        assert len(set(metrics_addresses)) == 3

        def answered_by_all() -> bool:
            for _ in range(12):   # a new connection each time: the kernel spreads them over the processes
                reply = requests.post(f"{url}/serving-endpoints/iris/invocations", data=_body(iris_model),
                                      headers={"Authorization": f"Bearer {stack.admin_token}", "Connection": "close",
                                               "Content-Type": "application/json"}, timeout=30)
                assert reply.status_code in (200, 404), reply.text   # 404 until that process has the table
            counts = [_value(_scrape(a), "podium_router_requests_total", endpoint_name="iris")
                      for a in metrics_addresses]
            return all(c > 0 for c in counts)
        wait_for(answered_by_all, timeout_s=60, what="every router process to answer a query")
    finally:
        for process, _ in started:
            stop_process(process)
