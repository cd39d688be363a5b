"""A machine-wide copy of each registered model version's artifacts, shared by every replica.

Resolving `models:/name@alias` and downloading the artifacts is paid once per machine and model version
(by the warm template, services/worker/template.py); replicas then load from the local directory. The
directory is keyed by registry and resolved version, so an alias that moves gets a new copy.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[0-9]+)|@(?P<alias>[A-Za-z_][A-Za-z0-9_-]*))$")


def resolve_version(model_uri: str, registry_uri: str) -> tuple[str, str]:
    """(name, version) of a `models:/name/version` or `models:/name@alias` URI (an alias asks the registry)."""
    match = _MODELS_URI.fullmatch(model_uri)
    if match is None:
        raise ValueError(f"not a registered-model URI: {model_uri}")
    if match["version"]:
        return match["name"], match["version"]
    from mlflow import MlflowClient

    version = MlflowClient(registry_uri=registry_uri or None).get_model_version_by_alias(match["name"], match["alias"])
    return match["name"], str(version.version)


def cached_model_path(cache_dir: Path, model_uri: str, registry_uri: str) -> Path:
    """The local directory holding the model's artifacts, downloading them on the first call (blocking)."""
    name, version = resolve_version(model_uri, registry_uri)
    digest = hashlib.sha256(f"{registry_uri}\0{name}\0{version}".encode()).hexdigest()[:20]
    path = cache_dir / digest
    if (path / "MLmodel").exists():
        log.info("%s is in this machine's model cache (%s): nothing to download", model_uri, path)
        return path
    import mlflow

    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=cache_dir))
    started = time.monotonic()
    log.info("downloading %s from the model registry into this machine's model cache", model_uri)
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(staging))
        files = [f for f in staging.rglob("*") if f.is_file()]
        log.info("downloaded %s: %d files, %.2f MB in %.1f s", model_uri, len(files),
                 sum(f.stat().st_size for f in files) / 1e6, time.monotonic() - started)
        try:
            os.replace(staging, path)  # atomic: a replica never sees a half-downloaded copy
        except OSError:
            if not (path / "MLmodel").exists():  # not another process that finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
