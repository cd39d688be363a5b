"""Read-only access to the MLflow model registry, for the management UI and the endpoints' OpenAPI documents
(never on the query path).

MLflow's client is blocking, so every call runs on a small thread pool under a deadline; the event loop
that serves queries never waits on the registry. Calls name the registry and tracking URIs on their own
MlflowClient: MLflow's process-wide URIs are never set.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from services.common.errors import DeadlineExceeded, EndpointNotFound, InvalidParameter, PodiumError, Unavailable

log = logging.getLogger(__name__)

MAX_MODELS = 1000
MAX_VERSIONS = 10000


class ModelNotFound(EndpointNotFound):
    """RESOURCE_DOES_NOT_EXIST for a registered model or version (same code as an unknown endpoint)."""


class ModelRegistry:
    def __init__(self, registry_uri: str, tracking_uri: str, timeout_s: float):
        self._registry_uri = registry_uri
        self._tracking_uri = tracking_uri or registry_uri
        self._timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="registry")

    async def _run(self, function, *args):
        if not self._registry_uri:
            raise Unavailable("this router was started without a model registry URI (PODIUM_REGISTRY_URI)")
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._pool, function, *args), self._timeout_s)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"the model registry did not answer within {self._timeout_s:g} s") from None

    async def registered_models(self) -> list[dict]:
        """Every registered model with its versions (newest first) and aliases."""
        return await self._run(self._registered_models)

    async def signature(self, name: str, version: str) -> dict:
        """The input/output schema (`inputs`, `outputs`, `params`: MLflow's schema JSON lists, None where
        absent) and serving input example of `name` at `version` (a number, or an alias with or without @)."""
        return await self._run(self._signature, name, version)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- on the pool ----

    def _client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self._tracking_uri, registry_uri=self._registry_uri)

    def _registered_models(self) -> list[dict]:
        from mlflow.exceptions import MlflowException

        try:
            client = self._client()
            models = client.search_registered_models(max_results=MAX_MODELS)
            versions = client.search_model_versions(max_results=MAX_VERSIONS)
        except MlflowException as exc:
            raise _registry_error(exc) from None
        by_name: dict[str, list[dict]] = {}
        for v in versions:
            by_name.setdefault(v.name, []).append({
                "version": str(v.version), "status": v.status, "creation_timestamp": v.creation_timestamp,
                "aliases": sorted(v.aliases or []), "description": v.description or "",
            })
        return [{
            "name": m.name,
            "description": m.description or "",
            "last_updated_timestamp": m.last_updated_timestamp,
            "aliases": {alias: str(version) for alias, version in sorted((m.aliases or {}).items())},
            "versions": sorted(by_name.get(m.name, []), key=lambda v: -int(v["version"])),
        } for m in sorted(models, key=lambda m: m.name)]

    def _signature(self, name: str, version: str) -> dict:
        import mlflow
        from mlflow.exceptions import MlflowException
        from mlflow.models import Model

        version = version.lstrip("@")
        try:
            client = self._client()
            if not version.isdigit():
                version = str(client.get_model_version_by_alias(name, version).version)
            root = client.get_model_version_download_uri(name, version).rstrip("/")
            with tempfile.TemporaryDirectory(prefix="podium-signature-") as tmp:
                model = Model.load(mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{root}/MLmodel", dst_path=tmp, tracking_uri=self._tracking_uri))
                example = _serving_example(model, root, tmp, self._tracking_uri)
        except MlflowException as exc:
            raise _registry_error(exc) from None
        signature = model.signature
        return {
            "name": name,
            "version": version,
            "inputs": signature.inputs.to_dict() if signature and signature.inputs else None,
            "outputs": signature.outputs.to_dict() if signature and signature.outputs else None,
            "params": signature.params.to_dict() if signature and signature.params else None,
            "serving_input_example": example,
        }


def _serving_example(model, root: str, tmp: str, tracking_uri: str):
    """The invocations payload MLflow saved with the model (serving_input_example.json), if any."""
    import mlflow
    from mlflow.exceptions import MlflowException

    info = model.saved_input_example_info or {}
    path = info.get("serving_input_path")
    if not path:
        return None
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"{root}/{path}", dst_path=tmp,
                                                    tracking_uri=tracking_uri)
        return json.loads(Path(local).read_text())
    except (MlflowException, OSError, ValueError):
        log.warning("cannot read the serving input example of %s", root)
        return None


def _registry_error(exc) -> PodiumError:
    code = getattr(exc, "error_code", "")
    if code == "RESOURCE_DOES_NOT_EXIST":
        return ModelNotFound(exc.message)
    if code == "INVALID_PARAMETER_VALUE":
        return InvalidParameter(exc.message)
    log.warning("model registry error: %s", exc)
    return Unavailable(f"the model registry failed: {exc.message}")
