"""The task a served model was logged with, read from its MLmodel in the registry when a config is written, so
the endpoint shows it as Databricks does (`agent/v1/responses` for a ResponsesAgent, `agent/v2/chat` for a
ChatAgent, `agent/v1/chat` for a ChatModel, `llm/v1/chat` where a flavor logged that task).

Best effort: a registry that is slow, missing or does not have the version leaves the task empty (the config
update itself then fails on the replicas, with the registry's reason). MLflow's client is blocking: every read
runs on a small thread pool under a deadline; answers are kept per model version (a version never changes).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)


class ModelTasks:
    """`timeout_s` stays well under the router's deadline for a management call (10 s)."""

    def __init__(self, registry_uri: str, tracking_uri: str, timeout_s: float = 4.0):
        self._registry_uri = registry_uri
        self._tracking_uri = tracking_uri or registry_uri
        self._timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="model-task")
        self._known: dict[tuple[str, str], str] = {}

    def warm_up(self) -> None:
        """Imports MLflow's client on the pool now (seconds on a busy machine), not on the first create."""
        if self._registry_uri:
            self._pool.submit(_import_client)

    async def tag(self, config: dict) -> dict:
        """The config with `task`: that of its first custom served entity whose model has one (external
        models show theirs from their spec)."""
        for entity in config["served_entities"]:
            if entity.get("external_model") is None and entity.get("entity_name"):
                task = await self.task(entity["entity_name"], str(entity.get("entity_version", "")))
                if task:
                    return {**config, "task": task}
        return config

    async def task(self, name: str, version: str) -> str:
        if not self._registry_uri or not version.isdigit():   # an alias may move: not kept, not read here
            return ""
        if (name, version) not in self._known:
            loop = asyncio.get_running_loop()
            try:
                found = await asyncio.wait_for(loop.run_in_executor(self._pool, self._read, name, version),
                                               self._timeout_s)
            except Exception as exc:   # noqa: BLE001 - best effort: the endpoint shows no task
                log.info("no task for %s version %s: %s", name, version, type(exc).__name__)
                return ""
            self._known[(name, version)] = found
        return self._known[(name, version)]

    def _read(self, name: str, version: str) -> str:
        import mlflow
        from mlflow import MlflowClient
        from mlflow.models import Model

        client = MlflowClient(tracking_uri=self._tracking_uri, registry_uri=self._registry_uri)
        root = client.get_model_version_download_uri(name, version).rstrip("/")
        with tempfile.TemporaryDirectory(prefix="podium-mlmodel-") as tmp:
            model = Model.load(mlflow.artifacts.download_artifacts(artifact_uri=f"{root}/MLmodel", dst_path=tmp,
                                                                   tracking_uri=self._tracking_uri))
        task = (model.metadata or {}).get("task")
        return task if isinstance(task, str) else ""

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _import_client() -> None:
    importlib.import_module("mlflow.models")
    importlib.import_module("mlflow.tracking")
