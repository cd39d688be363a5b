"""The worker's core: one loaded MLflow model, scored with MLflow's own scoring-server functions.

Using `mlflow.pyfunc.scoring_server.invocations` (what `mlflow models serve` runs) means input formats,
signature enforcement, params and output encoding match the stock server by construction.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import orjson

from services.common.errors import Unavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    http_status: int
    body: bytes
    content_type: str


def load_model(model_uri: str, registry_uri: str = "", tracking_uri: str = ""):
    """Loads a registered model (blocking: seconds). Raises MlflowException with the registry's reason."""
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    if registry_uri:
        mlflow.set_registry_uri(registry_uri)
    return mlflow.pyfunc.load_model(model_uri)


class Predictor:
    def __init__(self, model, threads: int, queue_limit: int):
        from mlflow.pyfunc import scoring_server

        self._model = model
        self._input_schema = model.metadata.get_input_schema()
        self._invocations = scoring_server.invocations
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="predict")
        self._slots = asyncio.Semaphore(queue_limit)

    async def predict(self, body: bytes, content_type: str) -> Prediction:
        if self._slots.locked():
            raise Unavailable("worker queue is full", retry_after_s=1)  # shed load; never queue without bound
        async with self._slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, self._score, body, content_type or "application/json")

    def _score(self, body: bytes, content_type: str) -> Prediction:
        from mlflow.exceptions import MlflowException

        try:
            result = self._invocations(body, content_type, self._model, self._input_schema)
        except MlflowException as exc:
            # As `mlflow models serve` answers, minus the stack trace: callers never see internals.
            error = orjson.loads(exc.serialize_as_json())
            if error.pop("stack_trace", None):
                log.info("prediction failed: %s", exc.message)
            return Prediction(exc.get_http_status_code(), orjson.dumps(error), "application/json")
        except Exception:
            log.exception("model raised an unexpected error")
            error = {"error_code": "BAD_REQUEST", "message": "Encountered an unexpected error while evaluating "
                     "the model. Verify that the input is compatible with the model for inference."}
            return Prediction(400, orjson.dumps(error), "application/json")
        if result.status != 200:
            error = {"error_code": "BAD_REQUEST", "message": str(result.response)}
            return Prediction(result.status, orjson.dumps(error), "application/json")
        return Prediction(200, result.response.encode(), result.mimetype)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
