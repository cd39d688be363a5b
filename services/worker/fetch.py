"""`python -m services.worker.fetch CACHE_DIR`: downloads a replica's model into the machine's model cache
before the replica starts, so the sandboxed replica never opens the registry (services/worker/sandbox.py).

Platform code only: it resolves and copies the artifacts (services/worker/model_cache.py), never loads the
model. The model comes from PODIUM_WORKER_MODEL_URI and the registry from the worker's registry settings;
it prints one JSON line, `{"path": ...}` or `{"error": ...}` (the registry's reason).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    from services.common.logging import configure_logging
    from services.worker.model_cache import cached_model_path
    from services.worker.settings import WorkerSettings

    configure_logging("worker_fetch")
    settings = WorkerSettings()
    try:
        import mlflow

        if settings.tracking_uri:
            mlflow.set_tracking_uri(settings.tracking_uri)
        if settings.registry_uri:
            mlflow.set_registry_uri(settings.registry_uri)
        path = cached_model_path(Path(sys.argv[1]), settings.worker_model_uri, settings.registry_uri)
    except Exception as exc:  # noqa: BLE001 - the registry's own reason goes to the caller
        print(json.dumps({"error": getattr(exc, "message", None) or str(exc) or type(exc).__name__}), flush=True)
        raise SystemExit(3) from None
    print(json.dumps({"path": str(path)}), flush=True)


if __name__ == "__main__":
    main()
