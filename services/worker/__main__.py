"""Worker process: binds its gRPC port (health NOT_SERVING), loads the model, then serves predictions."""

from __future__ import annotations

import asyncio
import logging
import os
import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from podium_api.v1 import worker_pb2_grpc
from services.common import event_loop
from services.common.errors import PodiumError
from services.common.gc_tuning import freeze_startup_objects
from services.common.grpc_edge import abort_with, grpc_edge, metadata_token
from services.common.grpc_server import SERVER_OPTIONS
from services.common.logging import configure_logging
from services.common.metrics_server import start_metrics_server
from services.common.tracing import configure_tracing
from services.common.processes import wait_for_stop
from services.common.readiness import (
    BATCHING_HEALTH_SERVICE, announce_failed, announce_listening, announce_ready,
)
from services.common.tls import TlsFiles, add_server_port
from services.worker import metrics, prediction_json, sandbox
from services.worker.core import CallerCheck, Predictor, load_model, usable_gpu_count
from services.worker.generative import stop_local_trace_export
from services.worker.grpc_api import WorkerServicer
from services.worker.model_threads import call_threads, limit_call_threads
from services.worker.prediction_stream import StreamDrain
from services.worker.settings import WorkerSettings

log = logging.getLogger("services.worker")


async def serve(settings: WorkerSettings) -> int:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    pre_read = sandbox.PRE_READ.get("tls")   # a sandboxed replica read its TLS files before confinement
    if isinstance(pre_read, sandbox.ServerTls):
        port = server.add_secure_port(f"{settings.worker_host}:{settings.worker_port}", grpc.ssl_server_credentials(
            [(pre_read.key, pre_read.cert)], root_certificates=pre_read.ca, require_client_auth=True))
    else:
        tls = TlsFiles.from_settings(settings.worker_tls_ca_file, settings.worker_tls_cert_file,
                                     settings.worker_tls_key_file)
        port = add_server_port(server, f"{settings.worker_host}:{settings.worker_port}", tls)
    address = f"{settings.worker_host}:{port}"
    await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    # The predict servicer is registered before start; it answers UNAVAILABLE until the model is in.
    callers = CallerCheck(settings.worker_caller_token_sha256)
    holder = _LateServicer(callers)
    worker_pb2_grpc.add_WorkerServicer_to_server(holder, server)
    await server.start()
    metrics_runner, metrics_address = None, ""
    if settings.worker_metrics_port >= 0:
        metrics_runner, metrics_address = await start_metrics_server(metrics.REGISTRY, settings.worker_metrics_host,
                                                                     settings.worker_metrics_port)
    announce_listening("worker", address=address, metrics_address=metrics_address)
    if settings.worker_device == "cuda" and await asyncio.to_thread(usable_gpu_count) == 0:
        # A GPU workload never falls back to the CPU silently: the endpoint's update fails, saying why.
        reason = (f"no GPU available: this replica was given CUDA_VISIBLE_DEVICES="
                  f"{settings.cuda_visible_devices or ''} but no CUDA device is usable in it")
        log.error(reason)
        announce_failed("worker", reason)
        await server.stop(grace=None)
        return 3
    load_started = time.monotonic()
    try:
        model = await asyncio.to_thread(load_model, settings.worker_model_uri, settings.registry_uri,
                                        settings.tracking_uri, settings.worker_model_path)
    except Exception as exc:  # the registry's own reason goes to the caller, e.g. RESOURCE_DOES_NOT_EXIST
        reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        log.error("cannot load %s: %s", settings.worker_model_uri, reason)
        announce_failed("worker", reason)
        await server.stop(grace=None)
        return 3
    metrics.observe_model_load(time.monotonic() - load_started)
    if await asyncio.to_thread(stop_local_trace_export):
        log.info("MLflow tracing is off in this replica: its tracking store is local, which replicas never open")
    prediction_json.use_in_scoring_server()
    freeze_startup_objects()
    predictor = Predictor(model, settings.worker_predict_threads, settings.worker_max_queued_requests, callers,
                          settings.worker_max_batch_size, settings.worker_max_batch_wait_ms)
    drain = StreamDrain()
    holder.servicer = WorkerServicer(predictor, drain)
    is_batching = predictor.batch_policy.rows > 1   # the scaler sizes a replica that does not for fewer requests
    threads = call_threads(os.environ, settings.worker_device, predictor.batch_policy.wide_calls)
    if threads is not None and limit_call_threads(threads):
        log.info("torch runs each model call on %d thread: the cores are shared out by replicas, not by a call's threads", threads)
    await health_servicer.set(BATCHING_HEALTH_SERVICE, health_pb2.HealthCheckResponse.SERVING if is_batching
                              else health_pb2.HealthCheckResponse.NOT_SERVING)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    log.info("serving %s on %s (device %s, CUDA_VISIBLE_DEVICES=%s; %s%s)", settings.worker_model_uri, address,
             settings.worker_device, settings.cuda_visible_devices, predictor.batch_policy.reason,
             f", a batch waiting up to {settings.worker_max_batch_wait_ms:g} ms"
             if predictor.batch_policy.rows > 1 and settings.worker_max_batch_wait_ms else "")
    announce_ready("worker", address=address, metrics_address=metrics_address, is_batching=is_batching)
    await wait_for_stop(settings.worker_supervisor_pid)
    # Graceful: leave health, finish what is in flight (streams end once theirs is answered), then stop.
    await health_servicer.enter_graceful_shutdown()
    drain.event.set()
    await server.stop(grace=10)
    predictor.close()
    if metrics_runner is not None:
        await metrics_runner.cleanup()
    return 0


class _LateServicer(worker_pb2_grpc.WorkerServicer):
    """Delegates to the real servicer once the model has loaded."""

    servicer: WorkerServicer | None = None

    def __init__(self, callers: CallerCheck):
        self._callers = callers

    async def PredictStream(self, request_iterator, context):
        try:
            self._callers.require(metadata_token(context))
        except PodiumError as exc:
            await abort_with(context, exc)
        await self._require_loaded(context)
        async for frame in self.servicer.PredictStream(request_iterator, context):
            yield frame

    async def PredictEvents(self, request, context):
        await self._require_loaded(context)
        async for event in self.servicer.PredictEvents(request, context):
            yield event

    @grpc_edge
    async def Metadata(self, request, context):
        await self._require_loaded(context)
        return await self.servicer.Metadata(request, context)

    async def _require_loaded(self, context) -> None:
        if self.servicer is None:
            self._callers.require(metadata_token(context))  # say nothing, not even "loading", to strangers
            await context.abort(grpc.StatusCode.UNAVAILABLE, "model is still loading",
                                trailing_metadata=(("error-code", "TEMPORARILY_UNAVAILABLE"),))


def main() -> None:
    # Not from_environment(): the served entity's environment_vars, of any name, are in it too.
    settings = WorkerSettings()
    configure_logging("worker")
    configure_tracing("worker", settings.otlp_endpoint)
    raise SystemExit(event_loop.run(serve(settings)))


if __name__ == "__main__":
    main()
