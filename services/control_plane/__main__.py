"""Control-plane process: settings → store → core → gRPC adapter → serve."""

from __future__ import annotations

import asyncio
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from podium_api.v1 import control_plane_pb2_grpc
from services.common.grpc_server import SERVER_OPTIONS
from services.common.logging import configure_logging
from services.common.readiness import announce_ready
from services.common.secret_box import Cipher, load_master_key
from services.control_plane.backends import ScalerClients
from services.control_plane.core import EndpointService
from services.control_plane.grpc_api import ControlPlaneServicer
from services.control_plane.settings import ControlPlaneSettings
from services.control_plane.store import EndpointStore


async def serve(settings: ControlPlaneSettings) -> None:
    store = EndpointStore(settings.resolved_database_url())
    scalers = ScalerClients(timeout_s=settings.scaler_timeout_s)
    master_key = settings.master_key.get_secret_value() if settings.master_key else None
    cipher = Cipher.from_key(load_master_key(master_key, settings.data_dir))
    service = EndpointService(store, report_expiry_s=settings.report_expiry_s, scalers=scalers, cipher=cipher)
    await service.start()
    server = grpc.aio.server(options=SERVER_OPTIONS)
    control_plane_pb2_grpc.add_ControlPlaneServicer_to_server(ControlPlaneServicer(service), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(f"{settings.control_plane_host}:{settings.control_plane_port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    announce_ready("control_plane", grpc_target=f"{settings.control_plane_host}:{port}")
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=2)
    await scalers.close()
    store.close()


def main() -> None:
    settings = ControlPlaneSettings()
    configure_logging("control_plane")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
