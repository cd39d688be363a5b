"""Scaler process: settings → control-plane client → runtime → reconcile loop."""

from __future__ import annotations

import asyncio
import signal

from services.common.control_plane_client import ControlPlaneClient
from services.common.logging import configure_logging
from services.common.readiness import announce_ready
from services.scaler.core import Scaler, reconcile_forever
from services.scaler.environments import VirtualenvManager
from services.scaler.gpus import detect_gpus
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
    runtime = LocalProcessRuntime(settings.data_dir / "logs", settings.worker_host, worker_env,
                                  environments=environments, gpus=gpus)
    scaler = Scaler(control_plane, runtime, start_timeout_s=settings.worker_start_timeout_s,
                    max_start_failures=settings.worker_max_start_failures)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    announce_ready("scaler")
    try:
        await reconcile_forever(scaler, settings.scaler_interval_s, stop)
    finally:
        await scaler.close()
        await control_plane.close()


def main() -> None:
    settings = ScalerSettings()
    configure_logging("scaler")
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
