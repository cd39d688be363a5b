"""Router process: settings → clients → core → REST and gRPC adapters → serve."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from podium_api.inference import grpc_predict_v2_pb2_grpc
from podium_api.v1 import query_pb2_grpc
from services.common import event_loop
from services.common.control_plane_client import ControlPlaneClient
from services.common.gc_tuning import freeze_startup_objects
from services.common.grpc_server import SERVER_OPTIONS
from services.common.logging import configure_logging
from services.common.metrics_server import start_metrics_server
from services.common.processes import wait_for_stop
from services.common.tracing import configure_tracing
from services.common.readiness import announce_ready
from services.common.master_keys import load_cipher
from services.common.outcomes import shadow_key
from services.common.tls import TlsFiles, add_server_port, https_context
from services.router.ai_gateway import AiGateway
from services.router.admission import Admission, LoadTracker
from services.router.auth import TokenCache
from services.router.backends import ControlPlaneSecrets, RoutingTableFollower, WorkerPool
from services.router.core import Gateway
from services.router.external.client import ProviderClient
from services.router.external.credentials import Credentials
from services.router.grpc_api import QueryServicer
from services.router.inference_log import InferenceLog
from services.router.inference_store import InferenceStore
from services.router.metrics import EndpointMetrics
from services.router.metrics_publisher import MetricsPublisher
from services.router.shadow import ShadowMirror
from services.router.oip_grpc import InferenceServicer
from services.router.openapi import SignatureReader
from services.router.rate_limit import RateLimiter, RedisBuckets
from services.router.registry import ModelRegistry
from services.router.rest import build_app
from services.router.settings import RouterSettings
from services.common.egress import EgressPolicy, parse_networks
from services.router.sign_in import SignIn

log = logging.getLogger("services.router")


def entity_load(routing: RoutingTableFollower, tracker: LoadTracker) -> list[tuple[str, str, int, int]]:
    """(endpoint, served entity, in flight, queued) per served entity, named as the routing table names them."""
    names = {r.deployment_key: (e.name, r.served_entity_name) for e in routing.endpoints.values() for r in e.routes}
    return [(*names[key], in_flight, queued) for key, in_flight, queued in tracker.current() if key in names]


async def build_ai_gateway(settings: RouterSettings, control_plane: ControlPlaneClient) -> tuple[AiGateway, list]:
    """The AI gateway's parts, and what to close (in order) when the router stops."""
    master_key = settings.master_key.get_secret_value() if settings.master_key else ""
    cipher = await asyncio.to_thread(load_cipher, master_key, settings.resolved_key_file())
    # `{{secrets/scope/key}}` from the control plane's encrypted store (PODIUM_SECRETS first, where given).
    resolver = ControlPlaneSecrets(control_plane, {k: v.get_secret_value() for k, v in settings.secrets.items()})
    providers = ProviderClient(Credentials(cipher, resolver, settings.secret_cache_ttl_s),
                               timeout_s=settings.provider_timeout_s, max_retries=settings.provider_max_retries,
                               connect_timeout_s=settings.provider_connect_timeout_s,
                               egress=EgressPolicy(parse_networks(settings.egress_allowed_networks),
                                                   frozenset(p for p in (settings.router_port,
                                                                         settings.router_grpc_port) if p)))
    await providers.start()
    limiter = RateLimiter(RedisBuckets(settings.redis_url, settings.rate_limit_timeout_s)
                          if settings.redis_url else None, is_fail_open=settings.redis_failure_mode == "open")
    store = await asyncio.to_thread(InferenceStore, settings.resolved_inference_database_url(), cipher)
    inference_log = InferenceLog(store, queue_size=settings.inference_queue_size,
                                 batch_size=settings.inference_batch_size,
                                 retention_s=settings.inference_retention_days * 86400)
    inference_log.start()
    ai_gateway = AiGateway(providers, limiter, inference_log, store,
                           max_payload_bytes=settings.inference_max_payload_bytes,
                           fallback_timeout_s=settings.fallback_timeout_s)
    return ai_gateway, [ai_gateway, inference_log, providers, limiter]


async def serve(settings: RouterSettings) -> None:
    internal_tls = TlsFiles.from_settings(settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file)
    control_plane = ControlPlaneClient(settings.control_plane_target, timeout_s=settings.management_timeout_s,
                                       internal_token=settings.internal_token.get_secret_value(), tls=internal_tls)
    pool = WorkerPool(settings.worker_token.get_secret_value(), internal_tls, eject_s=settings.replica_eject_s)
    tracker = LoadTracker()
    routing = RoutingTableFollower(control_plane, pool)
    metrics = EndpointMetrics(functools.partial(entity_load, routing, tracker))
    publisher = None
    if settings.redis_url:
        publisher = MetricsPublisher(settings.redis_url, tracker, interval_s=settings.metrics_interval_s,
                                     ttl_s=settings.metrics_ttl_s, outcomes=metrics.outcomes)
    else:
        log.warning("no Redis URL: load metrics are not published, so endpoints do not autoscale")
    admission = Admission(tracker, queue_limit=settings.queue_limit, timeout_s=settings.queue_timeout_s,
                          on_queued=publisher.request_wake if publisher else (lambda key: None))

    def on_table() -> None:
        """A new routing table: gone endpoints' series are dropped, waiting requests look again, retired
        deployments are forgotten."""
        metrics.keep_only(routing.endpoints.keys())
        admission.routes_changed()
        tracker.retain({r.deployment_key for e in routing.endpoints.values() for r in e.routes})
        keys = {r.deployment_key for e in routing.endpoints.values() for r in e.routes}
        metrics.retain_outcomes(keys | {shadow_key(k) for k in keys})   # shadow comparisons publish beside them
    routing.on_change = on_table
    follower = asyncio.create_task(routing.run())
    publishing = asyncio.create_task(publisher.run()) if publisher else None
    await routing.first_table.wait()  # answer no query before knowing the endpoints
    registry = ModelRegistry(settings.registry_uri, settings.tracking_uri, settings.registry_timeout_s)
    signatures = SignatureReader(registry, alias_ttl_s=settings.openapi_alias_ttl_s)
    ai_gateway, closing = await build_ai_gateway(settings, control_plane)
    auth = TokenCache(control_plane.authenticate, ttl_s=settings.auth_cache_ttl_s,
                      stale_grace_s=settings.auth_stale_grace_s)
    shadow = ShadowMirror(pool, routing, tracker, metrics.registry, queue_limit=settings.shadow_queue_limit,
                          senders=settings.shadow_senders, timeout_s=settings.forward_timeout_s,
                          outcomes=metrics.outcomes, max_payload_bytes=settings.inference_max_payload_bytes,
                          inference_log=next((c for c in closing if isinstance(c, InferenceLog)), None))
    gateway = Gateway(control_plane, routing, pool, auth, forward_timeout_s=settings.forward_timeout_s,
                      metrics=metrics, signatures=signatures, registry=registry, ai_gateway=ai_gateway,
                      admission=admission, shadow=shadow)
    shadowing = asyncio.create_task(shadow.run())

    # Clients see the router's own certificate (HTTPS; gRPC queries over TLS, no client certificate).
    public_tls = None
    if settings.router_tls_cert_file and settings.router_tls_key_file:
        public_tls = TlsFiles(settings.tls_ca_file or settings.router_tls_cert_file, settings.router_tls_cert_file,
                              settings.router_tls_key_file)
    app = build_app(gateway, settings.max_request_bytes, settings.max_concurrent_requests,
                    sign_in=SignIn(control_plane))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    ssl_context = https_context(public_tls.cert_file, public_tls.key_file) if public_tls else None
    reuse_port = settings.router_reuse_port   # other router processes serve these ports too
    site = web.TCPSite(runner, settings.router_host, settings.router_port, ssl_context=ssl_context,
                       reuse_port=reuse_port or None)
    await site.start()
    http_port = runner.addresses[0][1]

    grpc_options = [o for o in SERVER_OPTIONS if o[0] != "grpc.so_reuseport"] + [("grpc.so_reuseport", int(reuse_port))]
    grpc_server = grpc.aio.server(options=grpc_options,
                                  maximum_concurrent_rpcs=settings.max_concurrent_requests)
    query_pb2_grpc.add_QueryServicer_to_server(QueryServicer(gateway), grpc_server)
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(gateway), grpc_server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    grpc_port = add_server_port(grpc_server, f"{settings.router_host}:{settings.router_grpc_port}", public_tls,
                                require_client_auth=False)
    await grpc_server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)

    metrics_runner, metrics_address = None, ""
    if settings.router_metrics_port >= 0:
        metrics_runner, metrics_address = await start_metrics_server(metrics.registry, settings.router_metrics_host,
                                                                     settings.router_metrics_port)
    freeze_startup_objects()
    scheme = "https" if public_tls else "http"
    announce_ready("router", router_url=f"{scheme}://{settings.router_host}:{http_port}",
                   grpc_target=f"{settings.router_host}:{grpc_port}", metrics_address=metrics_address)
    await wait_for_stop()
    await grpc_server.stop(grace=5)
    if metrics_runner is not None:
        await metrics_runner.cleanup()
    await runner.cleanup()
    for part in closing:
        await part.close()
    for task in (follower, publishing, shadowing):
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
    settings = RouterSettings.from_environment()
    configure_logging("router")
    configure_tracing("router", settings.otlp_endpoint)
    event_loop.run(serve(settings))


if __name__ == "__main__":
    main()
