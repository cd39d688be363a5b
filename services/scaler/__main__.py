"""Scaler process: settings → control-plane client → runtime → reconcile loop, and its gRPC logs API."""

from __future__ import annotations

import asyncio
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from podium_api.v1 import scaler_pb2_grpc
from services.common.control_plane_client import ControlPlaneClient
from services.common.grpc_server import SERVER_OPTIONS
from services.common.logging import configure_logging
from services.common.readiness import announce_ready
from services.scaler.core import Scaler, reconcile_forever
from services.scaler.environments import VirtualenvManager
from services.scaler.gpus import detect_gpus
from services.scaler.grpc_api import ScalerServicer
from services.scaler.replica_logs import ReplicaLogs
from services.scaler.runtime import LocalProcessRuntime
from services.scaler.settings import ScalerSettings


async def run(settings: ScalerSettings) -> None:
    control_plane = ControlPlaneClient(settings.control_plane_target)
    worker_env = {}
    if settings.registry_uri:
        worker_env["PODIUM_REGISTRY_URI"] = settings.registry_uri
    if settings.tracking_uri:
        worker_env["PODIUM_TRACKING_URI"] = settings.tracking_uri
    environments = None
    if settings.worker_env_manager == "virtualenv":
        environments = VirtualenvManager(settings.data_dir / "envs", settings.registry_uri, settings.tracking_uri,
                                         settings.worker_env_build_timeout_s)
    gpus = await asyncio.to_thread(detect_gpus, settings.gpus, settings.cuda_visible_devices)
    logs_dir = settings.data_dir / "logs"
    runtime = LocalProcessRuntime(logs_dir, settings.worker_host, worker_env, environments=environments, gpus=gpus)

    def running_replicas(key: str) -> list[str]:
        return [r.replica_id for r in runtime.replicas() if r.key == key]

    server = grpc.aio.server(options=SERVER_OPTIONS)
    scaler_pb2_grpc.add_ScalerServicer_to_server(ScalerServicer(ReplicaLogs(logs_dir, running_replicas)), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(f"{settings.scaler_host}:{settings.scaler_port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    target = f"{settings.scaler_host}:{port}"

    scaler = Scaler(control_plane, runtime, start_timeout_s=settings.worker_start_timeout_s,
                    max_start_failures=settings.worker_max_start_failures, scaler_target=target)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    announce_ready("scaler", grpc_target=target)
    try:
        await reconcile_forever(scaler, settings.scaler_interval_s, stop)
    finally:
        await scaler.close()
        await server.stop(grace=2)
        await control_plane.close()


def main() -> None:
    settings = ScalerSettings()
    configure_logging("scaler")
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
