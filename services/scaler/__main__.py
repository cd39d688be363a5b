"""Scaler process: settings → control-plane client, load reader, runtime → reconcile loop, and its gRPC
logs API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from podium_api.v1 import scaler_pb2_grpc
from services.common.control_plane_client import ControlPlaneClient
from services.common.grpc_server import SERVER_OPTIONS
from services.common.logging import configure_logging
from services.common.readiness import announce_ready
from services.common.tls import TlsFiles, add_server_port
from services.scaler.core import Scaler, ScalingSettings, reconcile_forever
from services.scaler.environments import VirtualenvManager
from services.scaler.gpus import detect_gpus
from services.scaler.grpc_api import ScalerServicer
from services.scaler.launchers import TemplateUnavailable, WarmTemplate
from services.scaler.metrics import LoadReader
from services.scaler.replica_grants import ReplicaGrants
from services.scaler.replica_logs import ReplicaLogs
from services.scaler.replica_records import ReplicaRecords
from services.scaler.replica_specs import ContainerOptions, KubernetesOptions
from services.scaler.runtime import LocalProcessRuntime
from services.common.metrics_server import start_metrics_server
from services.scaler.prometheus import add_target_route, scaler_registry, scrape_targets
from services.scaler.settings import ScalerSettings
from services.worker.settings import WorkerSettings

log = logging.getLogger("services.scaler")


async def run(settings: ScalerSettings) -> None:
    tls = TlsFiles.from_settings(settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file)
    control_plane = ControlPlaneClient(settings.control_plane_target,
                                       internal_token=settings.internal_token.get_secret_value(), tls=tls)
    worker_env = WorkerSettings.env_for(worker_supervisor_pid=settings.supervisor_pid or os.getpid(),
                                        worker_caller_token_sha256=settings.worker_caller_token_sha256,
                                        registry_uri=settings.registry_uri or None,
                                        tracking_uri=settings.tracking_uri or None,
                                        worker_sandbox=settings.worker_sandbox,
                                        worker_sandbox_uid_base=settings.worker_sandbox_uid_base)
    if tls and settings.worker_tls_cert_file and settings.worker_tls_key_file:
        worker_env.update(WorkerSettings.env_for(worker_tls_ca_file=settings.worker_tls_ca_file or tls.ca_file,
                                                 worker_tls_cert_file=settings.worker_tls_cert_file,
                                                 worker_tls_key_file=settings.worker_tls_key_file))
    environments = None
    if settings.worker_env_manager == "virtualenv":
        environments = VirtualenvManager(settings.data_dir / "envs", settings.registry_uri, settings.tracking_uri,
                                         settings.worker_env_build_timeout_s)
    logs_dir = settings.data_dir / "logs"
    template = None
    runtime = _remote_runtime(settings, worker_env, tls)
    if runtime is None:
        gpus = await asyncio.to_thread(detect_gpus, settings.gpus, settings.cuda_visible_devices)
        if settings.worker_template and environments is None:  # the template runs the platform's Python only
            template = WarmTemplate(worker_env, settings.data_dir / "cache" / "models",
                                    logs_dir / "worker-template.log", request_timeout_s=settings.worker_start_timeout_s)
        runtime = LocalProcessRuntime(
            logs_dir, settings.worker_host, worker_env, records=ReplicaRecords(settings.data_dir / "replicas"),
            template=template, environments=environments, gpus=gpus,
            heartbeat_interval_s=settings.heartbeat_interval_s, heartbeat_expiry_s=settings.heartbeat_expiry_s,
            stop_grace_s=settings.worker_stop_grace_s, tls=tls,
            grants=ReplicaGrants(control_plane, settings.replica_router_url))

    def running_replicas(key: str) -> list[str]:
        return [r.replica_id for r in runtime.replicas() if r.key == key]

    server = grpc.aio.server(options=SERVER_OPTIONS)
    replica_logs = ReplicaLogs(logs_dir, running_replicas, internal_token=settings.internal_token.get_secret_value())
    scaler_pb2_grpc.add_ScalerServicer_to_server(ScalerServicer(replica_logs), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = add_server_port(server, f"{settings.scaler_host}:{settings.scaler_port}", tls)
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    target = f"{settings.scaler_advertise_host or settings.scaler_host}:{port}"

    load = LoadReader(settings.redis_url) if settings.redis_url else None
    if load is None:
        log.warning("no Redis URL: no load metrics, so replica counts stay where they are")
    scaling = ScalingSettings(settings.target_concurrency_per_replica, settings.scale_to_zero_after_s,
                              settings.scale_up_window_s, settings.scale_down_window_s, settings.scale_max_step,
                              unbatched_concurrency=settings.unbatched_concurrency_per_replica)
    scaler = Scaler(control_plane, runtime, load, scaling, start_timeout_s=settings.worker_start_timeout_s,
                    max_start_failures=settings.worker_max_start_failures, scaler_target=target)
    adopted = await runtime.adopt()  # before the first pass: a restart keeps what runs
    if adopted:
        log.info("adopted %d running replicas", len(adopted))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    background = []
    if load is not None:
        background.append(asyncio.create_task(load.listen_for_wakes(lambda key: scaler.wake.set())))
    if template is not None:
        background.append(asyncio.create_task(_warm_up(template)))
    metrics_runner, metrics_address = None, ""
    if settings.scaler_metrics_port >= 0:
        def targets() -> list[dict]:
            return scrape_targets(((r.metrics_address, r.key, r.replica_id) for r in runtime.replicas()),
                                  scaler.replica_counts)
        metrics_runner, metrics_address = await start_metrics_server(
            scaler_registry(lambda: scaler.replica_counts), settings.scaler_metrics_host,
            settings.scaler_metrics_port, add_target_route(targets))
    announce_ready("scaler", grpc_target=target, metrics_address=metrics_address)
    try:
        await reconcile_forever(scaler, settings.scaler_interval_s, stop)
    finally:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await scaler.close()
        await server.stop(grace=2)
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        if load is not None:
            await load.close()
        await control_plane.close()


def _remote_runtime(settings: ScalerSettings, worker_env: dict[str, str], tls: TlsFiles | None):
    """The Docker or Kubernetes backend (PODIUM_REPLICA_BACKEND); None for local processes."""
    if settings.replica_backend == "local":
        return None
    heartbeats = {"heartbeat_interval_s": settings.heartbeat_interval_s,
                  "heartbeat_expiry_s": settings.heartbeat_expiry_s, "stop_grace_s": settings.worker_stop_grace_s}
    if settings.replica_backend == "docker":
        from services.scaler.docker_runtime import DockerRuntime
        options = ContainerOptions(settings.worker_image, settings.docker_network, settings.docker_stack,
                                   settings.worker_container_port, settings.docker_worker_domain,
                                   _listed(settings.docker_worker_volumes))
        return DockerRuntime(options, worker_env, docker_host=settings.docker_host, tls=tls, **heartbeats)
    from services.scaler.kubernetes_runtime import KubernetesRuntime
    options = KubernetesOptions(settings.worker_image, settings.kubernetes_namespace, settings.docker_stack,
                                settings.worker_container_port, settings.kubernetes_cluster_domain,
                                _listed(settings.kubernetes_worker_secrets))
    return KubernetesRuntime(options, worker_env, tls=tls, **heartbeats)


def _listed(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


async def _warm_up(template: WarmTemplate) -> None:
    """Starts the template now, so its imports are paid before the first replica is wanted."""
    try:
        await template.start()
    except TemplateUnavailable as exc:
        log.warning("%s; replicas start as fresh processes", exc)


def main() -> None:
    settings = ScalerSettings.from_environment()
    configure_logging("scaler")
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
