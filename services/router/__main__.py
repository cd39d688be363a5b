"""Router process: settings → clients → core → REST and gRPC adapters → serve."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from podium_api.inference import grpc_predict_v2_pb2_grpc
from podium_api.v1 import query_pb2_grpc
from services.common.control_plane_client import ControlPlaneClient
from services.common.grpc_server import SERVER_OPTIONS
from services.common.logging import configure_logging
from services.common.readiness import announce_ready
from services.common.secret_box import Cipher, MappingSecretResolver, load_master_key
from services.router import rest_gateway
from services.router.ai_gateway import AiGateway
from services.router.admission import Admission, LoadTracker
from services.router.backends import RoutingTableFollower, WorkerPool
from services.router.core import Gateway
from services.router.external.client import ProviderClient
from services.router.external.credentials import Credentials
from services.router.grpc_api import QueryServicer
from services.router.inference_log import InferenceLog
from services.router.inference_store import InferenceStore
from services.router.metrics import EndpointMetrics
from services.router.metrics_publisher import MetricsPublisher
from services.router.oip_grpc import InferenceServicer
from services.router.openapi import SignatureReader
from services.router.rate_limit import RateLimiter, RedisBuckets
from services.router.registry import ModelRegistry
from services.router.rest import build_app
from services.router.settings import RouterSettings

log = logging.getLogger("services.router")


async def build_ai_gateway(settings: RouterSettings) -> tuple[AiGateway, list]:
    """The AI gateway's parts, and what to close (in order) when the router stops."""
    master_key = settings.master_key.get_secret_value() if settings.master_key else None
    cipher = Cipher.from_key(load_master_key(master_key, settings.data_dir))
    resolver = MappingSecretResolver({k: v.get_secret_value() for k, v in settings.secrets.items()})
    providers = ProviderClient(Credentials(cipher, resolver, settings.secret_cache_ttl_s),
                               timeout_s=settings.provider_timeout_s, max_retries=settings.provider_max_retries,
                               connect_timeout_s=settings.provider_connect_timeout_s)
    await providers.start()
    limiter = RateLimiter(RedisBuckets(settings.redis_url, settings.rate_limit_timeout_s)
                          if settings.redis_url else None)
    store = await asyncio.to_thread(InferenceStore, settings.resolved_inference_database_url(), cipher)
    inference_log = InferenceLog(store, queue_size=settings.inference_queue_size,
                                 batch_size=settings.inference_batch_size,
                                 retention_s=settings.inference_retention_days * 86400)
    inference_log.start()
    ai_gateway = AiGateway(providers, limiter, inference_log, store,
                           max_payload_bytes=settings.inference_max_payload_bytes)
    return ai_gateway, [ai_gateway, inference_log, providers, limiter]


async def serve(settings: RouterSettings) -> None:
    control_plane = ControlPlaneClient(settings.control_plane_target, timeout_s=settings.management_timeout_s)
    pool = WorkerPool()
    metrics = EndpointMetrics()
    tracker = LoadTracker()
    publisher = None
    if settings.redis_url:
        publisher = MetricsPublisher(settings.redis_url, tracker, interval_s=settings.metrics_interval_s,
                                     ttl_s=settings.metrics_ttl_s)
    else:
        log.warning("no Redis URL: load metrics are not published, so endpoints do not autoscale")
    admission = Admission(tracker, queue_limit=settings.queue_limit, timeout_s=settings.queue_timeout_s,
                          on_queued=publisher.request_wake if publisher else (lambda key: None))
    routing = RoutingTableFollower(control_plane, pool, on_table=metrics.keep_only)

    def on_table() -> None:  # a new table: waiting requests look again; retired deployments are forgotten
        admission.routes_changed()
        tracker.retain({r.deployment_key for e in routing.endpoints.values() for r in e.routes})
    routing.on_change = on_table
    follower = asyncio.create_task(routing.run())
    publishing = asyncio.create_task(publisher.run()) if publisher else None
    await routing.first_table.wait()  # answer no query before knowing the endpoints
    signatures = SignatureReader(settings.registry_uri, settings.tracking_uri, alias_ttl_s=settings.openapi_alias_ttl_s)
    registry = ModelRegistry(settings.registry_uri, settings.tracking_uri, settings.registry_timeout_s)
    ai_gateway, closing = await build_ai_gateway(settings)
    gateway = Gateway(control_plane, routing, pool, forward_timeout_s=settings.forward_timeout_s, metrics=metrics,
                      signatures=signatures, registry=registry, ai_gateway=ai_gateway, admission=admission)

    app = build_app(gateway, settings.max_request_bytes)
    rest_gateway.add_routes(app, gateway, ai_gateway)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.router_host, settings.router_port)
    await site.start()
    http_port = runner.addresses[0][1]

    grpc_server = grpc.aio.server(options=SERVER_OPTIONS)
    query_pb2_grpc.add_QueryServicer_to_server(QueryServicer(gateway), grpc_server)
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(gateway), grpc_server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    grpc_port = grpc_server.add_insecure_port(f"{settings.router_host}:{settings.router_grpc_port}")
    await grpc_server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)

    announce_ready("router", router_url=f"http://{settings.router_host}:{http_port}",
                   grpc_target=f"{settings.router_host}:{grpc_port}")
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await grpc_server.stop(grace=5)
    await runner.cleanup()
    for part in closing:
        await part.close()
    for task in (follower, publishing):
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if publisher is not None:
        await publisher.close()
    await pool.close()
    registry.close()
    await control_plane.close()


def main() -> None:
    settings = RouterSettings()
    configure_logging("router")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
