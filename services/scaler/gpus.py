"""Which GPUs this machine has, for replicas of GPU workload types (read once when the scaler starts)."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)


def detect_gpus(setting: str, visible_devices: str | None) -> tuple[str, ...]:
    """GPU ids replicas may use. `setting` is PODIUM_GPUS: "auto" asks nvidia-smi (or the NVIDIA driver's
    /proc entries); "none" or "" means none; "0,1" names them. The scaler's own CUDA_VISIBLE_DEVICES, if
    set, limits what auto-detection offers."""
    setting = setting.strip()
    if setting.lower() in ("", "none"):
        return ()
    if setting.lower() != "auto":
        return tuple(g.strip() for g in setting.split(",") if g.strip())
    found = _nvidia_smi() or _driver_entries()
    if visible_devices is not None:
        allowed = {d.strip() for d in visible_devices.split(",") if d.strip()}
        found = tuple(g for g in found if g in allowed)
    log.info("GPUs for replicas: %s", ", ".join(found) or "none")
    return found


def _nvidia_smi() -> tuple[str, ...]:
    if shutil.which("nvidia-smi") is None:
        return ()
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if result.returncode != 0:
        return ()
    return tuple(line.strip() for line in result.stdout.splitlines() if line.strip().isdigit())


def _driver_entries() -> tuple[str, ...]:
    gpus = Path("/proc/driver/nvidia/gpus")
    return tuple(str(i) for i in range(len(list(gpus.iterdir())))) if gpus.is_dir() else ()
