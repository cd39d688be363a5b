"""Router process: settings → clients → core → REST and gRPC adapters → serve."""

from __future__ import annotations

import asyncio
import contextlib
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
from services.router.backends import RoutingTableFollower, WorkerPool
from services.router.core import Gateway
from services.router.grpc_api import QueryServicer
from services.router.metrics import EndpointMetrics
from services.router.oip_grpc import InferenceServicer
from services.router.openapi import SignatureReader
from services.router.registry import ModelRegistry
from services.router.rest import build_app
from services.router.settings import RouterSettings


async def serve(settings: RouterSettings) -> None:
    control_plane = ControlPlaneClient(settings.control_plane_target, timeout_s=settings.management_timeout_s)
    pool = WorkerPool()
    metrics = EndpointMetrics()
    routing = RoutingTableFollower(control_plane, pool, on_table=metrics.keep_only)
    follower = asyncio.create_task(routing.run())
    await routing.first_table.wait()  # answer no query before knowing the endpoints
    signatures = SignatureReader(settings.registry_uri, settings.tracking_uri, alias_ttl_s=settings.openapi_alias_ttl_s)
    registry = ModelRegistry(settings.registry_uri, settings.tracking_uri, settings.registry_timeout_s)
    gateway = Gateway(control_plane, routing, pool, forward_timeout_s=settings.forward_timeout_s, metrics=metrics,
                      signatures=signatures, registry=registry)

    runner = web.AppRunner(build_app(gateway, settings.max_request_bytes), access_log=None)
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
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follower
    await pool.close()
    registry.close()
    await control_plane.close()


def main() -> None:
    settings = RouterSettings()
    configure_logging("router")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
