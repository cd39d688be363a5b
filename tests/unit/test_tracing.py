"""One trace per query across router → worker, the request id on both sides, and the overhead figure.

The router's core (Gateway, with its real WorkerPool) and a real worker gRPC server (a tiny scikit-learn
model saved with MLflow and loaded as the worker loads it) run in this process; both services' spans land
in one in-memory exporter, so the test reads the whole trace.
"""

from __future__ import annotations

import hashlib
import json
import logging

import grpc
import numpy as np
import pandas as pd
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from podium_api.v1 import worker_pb2_grpc
from services.common import tracing
from services.common.deployments import EndpointRoutes, RouteTarget
from services.common.logging import JsonFormatter
from services.common.principals import CAN_QUERY, USER, Principal
from services.common.request_context import choose_request_id, request_id_var, traceparent_var
from services.router.auth import TokenCache
from services.router.backends import WorkerPool
from services.router.core import Gateway
from services.router.metrics import EndpointMetrics
from services.worker.core import CallerCheck, Predictor
from services.worker.grpc_api import WorkerServicer

WORKER_TOKEN = "worker-credential"
CALLER = Principal("u-1", "alice", USER)
BODY = json.dumps({"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2.0]]}}).encode()
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import mlflow
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame(np.random.default_rng(0).normal(size=(40, 2)), columns=["a", "b"])
    path = tmp_path_factory.mktemp("model") / "m"
    mlflow.sklearn.save_model(LogisticRegression().fit(frame, (frame.a > 0).astype(int)), str(path))
    return mlflow.pyfunc.load_model(str(path))


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    yield exporter
    tracing.use_provider(None)


class _Routing:
    """The routing table as the follower holds it: one endpoint, one served entity, one replica."""

    def __init__(self, address: str):
        route = RouteTarget("m-1", 100, "dep-1", (address,))
        self.endpoints = {"e": EndpointRoutes("e", "id-e", (route,), acl=((CALLER.id, CAN_QUERY),))}

    def replica_addresses(self, key: str):
        return self.endpoints["e"].routes[0].replica_addresses if key == "dep-1" else None


@pytest.fixture
async def gateway(model):
    server = grpc.aio.server()
    predictor = Predictor(model, 1, 8, CallerCheck(hashlib.sha256(WORKER_TOKEN.encode()).hexdigest()))
    worker_pb2_grpc.add_WorkerServicer_to_server(WorkerServicer(predictor), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()

    async def authenticate(token: str) -> Principal:
        return CALLER
    pool = WorkerPool(WORKER_TOKEN)
    yield Gateway(None, _Routing(f"127.0.0.1:{port}"), pool, TokenCache(authenticate), forward_timeout_s=10,
                  metrics=EndpointMetrics(), signatures=None)
    await pool.close()
    await server.stop(grace=None)
    predictor.close()


async def _query(gateway: Gateway, request_id: str, traceparent: str = ""):
    """As the REST and gRPC edges do: the request's context set around one core call."""
    id_token, parent_token = request_id_var.set(request_id), traceparent_var.set(traceparent)
    try:
        return await gateway.query("alice-token", "e", BODY, "application/json")
    finally:
        request_id_var.reset(id_token)
        traceparent_var.reset(parent_token)


async def test_one_trace_from_router_to_worker(gateway, spans):
    result = await _query(gateway, "req-trace-1", CALLER_TRACEPARENT)
    assert json.loads(result.body)["predictions"] in ([0], [1])
    by_name = {s.name: s for s in spans.get_finished_spans()}
    assert {"router.query", "router.auth", "router.route", "router.forward", "worker.predict"} <= set(by_name)
    # One trace, the caller's: every span of both services carries its id.
    assert {format(s.context.trace_id, "032x") for s in by_name.values()} == {CALLER_TRACE}
    query, forward, predict = by_name["router.query"], by_name["router.forward"], by_name["worker.predict"]
    assert format(query.parent.span_id, "016x") == "00f067aa0ba902b7" and query.kind is SpanKind.SERVER
    assert by_name["router.auth"].parent.span_id == query.context.span_id
    assert forward.parent.span_id == query.context.span_id and forward.kind is SpanKind.CLIENT
    # The worker continued the router's trace from the traceparent in the gRPC metadata.
    assert predict.parent.span_id == forward.context.span_id and predict.kind is SpanKind.SERVER


async def test_concurrent_queries_on_the_replica_stream_keep_their_own_traces(gateway, spans):
    """Requests that overlap go over the replica's PredictStream (several per frame): each worker span still
    continues its own request's forward span, and the worker logs each one's request id."""
    import asyncio

    await asyncio.gather(*(_query(gateway, f"req-many-{i}", _traceparent(i)) for i in range(6)))
    finished = spans.get_finished_spans()
    forwards = {s.context.span_id: s for s in finished if s.name == "router.forward"}
    predicts = [s for s in finished if s.name == "worker.predict"]
    assert len(predicts) == 6 and len(forwards) == 6
    for predict in predicts:
        forward = forwards[predict.parent.span_id]
        assert predict.context.trace_id == forward.context.trace_id
    assert len({s.context.trace_id for s in predicts}) == 6


def _traceparent(i: int) -> str:
    return f"00-{i + 1:032x}-{i + 1:016x}-01"


async def test_without_caller_trace_a_new_one_spans_both_services(gateway, spans):
    await _query(gateway, "req-trace-2")
    finished = spans.get_finished_spans()
    assert len({s.context.trace_id for s in finished}) == 1
    assert next(s for s in finished if s.name == "router.query").parent is None


async def test_tracing_off_makes_no_spans_and_still_answers(gateway):
    with tracing.server_span("router.query"):
        assert tracing.current_traceparent() == ""   # nothing to send on: no span was made
    result = await _query(gateway, "req-off")
    assert result.request_id == "req-off"


async def test_overhead_is_router_time_outside_the_model(gateway):
    for _ in range(3):
        result = await _query(gateway, "req-overhead")
        assert result.model_ms is not None and result.model_ms > 0   # the model_ms of the worker's stream reply
        assert result.overhead_ms is not None and 0 <= result.overhead_ms
        assert result.request_id == "req-overhead"


async def test_worker_sees_the_request_id(gateway, caplog):
    """A model error is logged by the worker; its log record carries the router's request id."""
    bad = json.dumps({"dataframe_split": {"columns": ["zz"], "data": [["x"]]}}).encode()
    request_id_var.set("req-worker-log")
    caplog.set_level(logging.INFO, logger="services.worker.core")
    with pytest.raises(Exception):
        await gateway.query("alice-token", "e", bad, "application/json")
    records = [r for r in caplog.records if r.name == "services.worker.core"]
    assert records
    assert all(json.loads(JsonFormatter().format(r)).get("request_id") == "req-worker-log" for r in records)


def test_json_log_lines_carry_request_and_trace_ids():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    token = request_id_var.set("req-log")
    try:
        with tracing.server_span("router.query", CALLER_TRACEPARENT):
            record = logging.LogRecord("services.router", logging.INFO, __file__, 1, "hello %s", ("x",), None)
            line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
        tracing.use_provider(None)
    assert line["request_id"] == "req-log" and line["trace_id"] == CALLER_TRACE and len(line["span_id"]) == 16
    assert line["message"] == "hello x"


@pytest.mark.parametrize("given, kept", [
    pytest.param("abc-123", True, id="a sane token is kept"),
    pytest.param("a" * 128, True, id="128 characters"),
    pytest.param("a" * 129, False, id="too long"),
    pytest.param("two words", False, id="a space"),
    pytest.param("x\r\nSet-Cookie: y", False, id="header injection"),
    pytest.param("", False, id="empty"),
    pytest.param(None, False, id="absent"),
])
def test_choose_request_id(given, kept):
    chosen = choose_request_id(given)
    if kept:
        assert chosen == given
    else:
        assert chosen != given and len(chosen) == 32 and int(chosen, 16) >= 0
