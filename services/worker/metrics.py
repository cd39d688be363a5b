"""The worker's Prometheus series (podium_worker_*), in this process's one registry.

A worker process serves one model, so the registry is module-level: every part of the worker (the gRPC
adapter, the loader, the batch collector: `metrics.observe_batch(n)`) records into it without being handed it.
Served at GET /metrics on the worker's metrics port (PODIUM_WORKER_METRICS_PORT, default 0 = an OS-picked
port, announced in the worker's ready line and kept in its replica record).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
LATENCY_BUCKETS_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000, 60000)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

_predictions = Counter("podium_worker_predictions", "Requests answered, by method (predict, infer) and outcome "
                       "(ok, model_error, error)", ("method", "outcome"), registry=REGISTRY)
_latency = Histogram("podium_worker_predict_latency_ms", "Time from receiving a request to its prediction "
                     "(queueing for the model included), in milliseconds", ("method",),
                     buckets=LATENCY_BUCKETS_MS, registry=REGISTRY)
_in_flight = Gauge("podium_worker_in_flight_requests", "Requests inside this worker", registry=REGISTRY)
_batch_size = Histogram("podium_worker_batch_size", "Requests scored together in one model call",
                        buckets=BATCH_BUCKETS, registry=REGISTRY)
_model_load = Gauge("podium_worker_model_load_seconds", "How long loading the model took", registry=REGISTRY)


def observe_batch(size: int) -> None:
    """One model call that scored `size` requests together (1 without batching)."""
    _batch_size.observe(size)


def observe_model_load(seconds: float) -> None:
    _model_load.set(seconds)


class PredictionTimer:
    """Times one request (`with PredictionTimer("predict") as p:`); `p.outcome` may be set before it ends, and
    `p.elapsed_ms` is the worker's time, sent back to the router in the item's reply (model_ms)."""

    __slots__ = ("_method", "_started", "outcome", "elapsed_ms")

    def __init__(self, method: str):
        self._method = method
        self.outcome = "ok"
        self.elapsed_ms = 0.0

    def __enter__(self) -> "PredictionTimer":
        _in_flight.inc()
        self._started = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.elapsed_ms = (time.perf_counter() - self._started) * 1000
        _in_flight.dec()
        outcome = "error" if exc_type is not None else self.outcome
        _predictions.labels(self._method, outcome).inc()
        _latency.labels(self._method).observe(self.elapsed_ms)
