"""The worker's core: one loaded MLflow model, scored with MLflow's own scoring-server functions.

Using `mlflow.pyfunc.scoring_server.invocations` (what `mlflow models serve` runs) means input formats,
signature enforcement, params and output encoding match the stock server by construction.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import hmac
import inspect
import logging
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson

from services.common.errors import BadRequest, InvalidParameter, PodiumError, Unauthenticated, Unavailable
from services.common.tensors import ModelMetadata, RawTensor
from services.worker import batch_merge, generative, metrics, prediction_json, row_exact, signature
from services.worker.batch_collector import BatchCollector
from services.worker.direct_scoring import DirectScorer, is_plain_json

log = logging.getLogger(__name__)

# An unbatched request that finds the worker otherwise idle is scored on the event loop, not in a predict
# thread, when the model's calls take under INLINE_MAX_MS and its body is at most INLINE_MAX_BYTES.
INLINE_MAX_MS = 1.0
INLINE_MAX_BYTES = 16 * 1024
# A stream's first step runs on the event loop when the replica is otherwise idle and it typically takes under
# INLINE_FIRST_MAX_MS: the loop would mostly wait for the GIL the model holds meanwhile anyway.
INLINE_FIRST_MAX_MS = 2.0


@dataclass(frozen=True)
class ScoringResult:
    """What `mlflow models serve` would answer to one request (or, for tensors, the InferReply's bytes)."""

    http_status: int
    body: bytes
    content_type: str


def load_model(model_uri: str, registry_uri: str = "", tracking_uri: str = "", local_path: str = ""):
    """Loads a registered model (blocking: seconds). Raises MlflowException with the registry's reason.

    With `local_path` (the machine's copy of its artifacts, made once by the warm template) nothing is
    asked of the registry. What it logs here is the replica's build log (`GET .../served-models/{name}/
    build-logs`): the environment it runs in, then the download and the load, each with its duration.
    """
    import mlflow

    if sys.prefix != sys.base_prefix and Path(sys.prefix, "requirements.txt").exists():
        # services/scaler/environments.py built this virtualenv (its output comes first in the build log)
        log.info("environment: the model's own virtualenv %s, built from its logged requirements (Python %s, "
                 "mlflow %s from the platform)", Path(sys.prefix).name, platform.python_version(), mlflow.__version__)
    else:
        log.info("environment: the platform's default environment (Python %s, mlflow %s); no per-model environment "
                 "is built, so the model's logged requirements are not installed", platform.python_version(),
                 mlflow.__version__)
    if local_path:
        log.info("using the machine's copy of %s at %s (downloaded once for every replica)", model_uri, local_path)
        path = Path(local_path)
    else:
        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        if registry_uri:
            mlflow.set_registry_uri(registry_uri)
        # Artifacts may be read at predict time (e.g. a pyfunc's context.artifacts): keep them until exit.
        download_dir = tempfile.mkdtemp(prefix="podium-model-")
        atexit.register(shutil.rmtree, download_dir, ignore_errors=True)
        started = time.monotonic()
        log.info("downloading %s from the model registry", model_uri)
        path = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=download_dir))
        files = [f for f in path.rglob("*") if f.is_file()]
        log.info("downloaded %s: %d files, %.2f MB in %.1f s", model_uri, len(files),
                 sum(f.stat().st_size for f in files) / 1e6, time.monotonic() - started)
    started = time.monotonic()
    model = mlflow.pyfunc.load_model(str(path))
    log.info("loaded %s (flavors: %s) in %.1f s", model_uri, ", ".join(sorted(model.metadata.flavors)),
             time.monotonic() - started)
    return model


def usable_gpu_count() -> int:
    """CUDA devices this process can use (blocking: imports torch where installed, else asks nvidia-smi)."""
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in listed.stdout.splitlines() if line.startswith("GPU ")) if listed.returncode == 0 else 0


class CallerCheck:
    """A worker answers only Podium's router: the caller must present the worker credential.

    The worker is given only the credential's SHA-256 (PODIUM_WORKER_CALLER_TOKEN_SHA256), so model code
    running in this process cannot learn a credential it could use anywhere. No digest: nobody is answered.
    """

    def __init__(self, token_sha256: str):
        self._digest = token_sha256.lower()

    def require(self, token: str) -> None:
        presented = hashlib.sha256(token.encode()).hexdigest()
        if not (token and self._digest and hmac.compare_digest(presented, self._digest)):
            raise Unauthenticated("Invalid access token.")


class Predictor:
    """Every method takes the caller's credential first: only the router's is answered.

    Where batching is on (services/worker/row_exact.py: by default for models it cannot change, or as the
    served entity asks), requests that arrive while the model runs and merge (services/worker/batch_merge.py)
    are scored in its next call, and each gets its own rows of the answer, byte for byte what it would get
    alone. `max_batch_size`: 0 the model's default, 1 off, more the most rows in one call.
    """

    def __init__(self, model, threads: int, queue_limit: int, callers: CallerCheck, max_batch_size: int = 0,
                 max_batch_wait_ms: float = 0.0):
        from mlflow.pyfunc import scoring_server

        self._callers = callers
        self._model = model
        self._input_schema = model.metadata.get_input_schema()
        self._output_schema = model.metadata.get_output_schema()
        self._has_params = model.metadata.get_params_schema() is not None
        self.metadata: ModelMetadata = signature.model_metadata(model.metadata)
        self._scoring = scoring_server
        self._invocations = scoring_server.invocations
        self.task, self.is_streaming = generative.model_task(model), generative.is_streaming(model)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="predict",
                                        initializer=generative.yield_cpu if self.is_streaming else None)
        self._slots = asyncio.Semaphore(queue_limit)
        self._in_flight = 0                     # requests in _run (the inline rule runs only without a collector)
        self._typical_ms: float | None = None   # how long an unbatched call takes (None: none ran yet)
        self._streams = 0                       # streams in predict_events
        self._typical_first_ms: float | None = None   # how long a stream's first step takes, as _typical_ms
        # One merged batch at a time (as Ray Serve and Triton run a replica's batches): while it runs the next
        # one grows, and a second would mostly contend for the GIL. Unmergeable requests use the other threads.
        self.batch_policy = row_exact.batch_policy(model, max_batch_size)
        self._guard = self.batch_policy.guard
        self._collector = BatchCollector(self._score_batch, self._pool, 1, self.batch_policy.rows, max_batch_wait_ms) \
            if self.batch_policy.rows > 1 else None
        self._json_batching = self._collector is not None and \
            batch_merge.is_json_batchable(model.metadata, self._input_schema)
        self._has_nested_columns = signature.has_nested_columns(self._input_schema)
        # The guard reads the DataFrame a JSON request becomes: tensors are scored alone on a guarded model.
        self._tensor_batching = self._collector is not None and self._guard is None \
            and batch_merge.is_tensor_batchable(self._input_schema)
        self._predict_takes_params = "params" in inspect.signature(model.predict).parameters
        self._direct = _direct_scorer(model)
        self._traces = generative.collects_traces(model)   # return_trace is looked for in this model's requests

    @property
    def batch_stats(self):
        """What batching did so far (None when it is off)."""
        return self._collector.stats if self._collector is not None else None

    async def predict(self, token: str, body: bytes, content_type: str) -> ScoringResult:
        self._callers.require(token)
        content_type = content_type or "application/json"
        if self.is_streaming and generative.asks_stream(body, content_type) is not None:
            raise generative.StreamRequired()
        if self._traces and generative.asks_trace(body, content_type):   # scored alone, its trace collected
            return await self._run(generative.trace_collected, self._score, body, content_type)
        part = batch_merge.json_part(body, content_type, has_nested_columns=self._has_nested_columns) \
            if self._json_batching else None
        if part is None:
            return await self._run(self._score, body, content_type, small=len(body) <= INLINE_MAX_BYTES)
        return await self._submit(part)

    async def infer(self, token: str, inputs: list[RawTensor], outputs: list[str], params: dict) -> list[RawTensor]:
        """Open Inference Protocol tensors in, tensors out; InvalidParameter when they do not fit the signature."""
        self._callers.require(token)
        part = batch_merge.tensor_part(inputs, outputs, params) if self._tensor_batching else None
        if part is None:
            return await self._run(self._infer, inputs, outputs, params,
                                   small=sum(len(t.raw) for t in inputs) <= INLINE_MAX_BYTES)
        return await self._submit(part)

    async def predict_events(self, token: str, body: bytes, content_type: str):
        """The model's events for a JSON request with `"stream": true`, as it yields them."""
        self._callers.require(token)
        request = generative.asks_stream(body, content_type or "application/json")
        if not self.is_streaming or request is None:
            raise InvalidParameter("Only a model with predict_stream streams, for a JSON object with \"stream\": true")
        if self._slots.locked():
            raise Unavailable("worker queue is full", retry_after_s=1)
        async with self._slots:
            # Alone and fast to its first event: that step runs on the event loop, as _run's inline rule says.
            inline = self._in_flight == 0 and self._streams == 0 and self._typical_first_ms is not None and \
                self._typical_first_ms < INLINE_FIRST_MAX_MS
            self._streams += 1
            try:
                async for event in generative.stream_events(self._model, self._pool, request, inline,
                                                            self._time_first_step):
                    yield event
            finally:
                self._streams -= 1

    def check_caller(self, token: str) -> None:
        """Unauthenticated unless `token` is the router's credential."""
        self._callers.require(token)

    def describe(self, token: str) -> ModelMetadata:
        """The model's signature as tensors."""
        self._callers.require(token)
        return self.metadata

    async def _run(self, function, *args, small: bool = True):
        if self._slots.locked():
            raise Unavailable("worker queue is full", retry_after_s=1)  # shed load; never queue without bound
        async with self._slots:
            metrics.observe_batch(1)
            self._in_flight += 1
            try:
                if small and self._in_flight == 1 and self._streams == 0 and self._collector is None and \
                        self._typical_ms is not None and self._typical_ms < INLINE_MAX_MS:
                    # Alone and fast: scored on the event loop, saving two thread hand-offs (about as long
                    # as the scoring itself for a small model); it delays no other request, being alone.
                    return self._timed(function, *args)
                return await asyncio.get_running_loop().run_in_executor(self._pool, self._timed, function, *args)
            finally:
                self._in_flight -= 1

    def _timed(self, function, *args):
        """function(*args), its duration folded into _typical_ms (whichever thread runs it)."""
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            self._typical_ms = _typical(self._typical_ms, (time.perf_counter() - started) * 1000)

    def _time_first_step(self, elapsed_ms: float) -> None:
        self._typical_first_ms = _typical(self._typical_first_ms, elapsed_ms)

    async def _submit(self, part):
        if self._slots.locked():
            raise Unavailable("worker queue is full", retry_after_s=1)
        async with self._slots:
            return await self._collector.submit(part)

    def _score_batch(self, parts: list) -> tuple[list, bool]:
        """One result per part (a ScoringResult, tensors, or the PodiumError that part raises alone) and whether
        the merged call fell back to scoring part by part. Runs in a predict thread."""
        alone = self._score_part if isinstance(parts[0], batch_merge.JsonPart) else self._infer_part
        if len(parts) == 1:
            return [alone(parts[0])], False
        try:
            results = self._score_merged(parts) if alone == self._score_part else self._infer_merged(parts)
        except Exception as exc:   # noqa: BLE001 - e.g. one request's bad value: each is scored (and fails) alone
            log.info("a merged batch of %d requests failed (%s); scoring them one by one", len(parts),
                     type(exc).__name__)
            results = None
        if results is None:
            return [alone(part) for part in parts], True
        return results, False

    def _score_merged(self, parts: list[batch_merge.JsonPart]) -> list[ScoringResult] | None:
        merged = batch_merge.merge_json(parts)
        counts = [p.rows for p in parts]
        unsure = None
        if self._guard is not None:
            raw, unsure = self._guarded_prediction(merged)
        else:
            raw = self._direct.prediction(merged) if self._direct is not None else None
            if raw is None:
                parsed = self._scoring._parse_json_data(merged, self._model.metadata, self._input_schema)
                raw = self._model.predict(parsed.data, params=parsed.params) if self._predict_takes_params \
                    else self._model.predict(parsed.data)
        if batch_merge.split_rows(raw, counts) is None:
            return None
        # What predictions_to_json does for each part's rows (invocations() renders every answer with it), with
        # the conversion to plain lists done once for the batch: a slice of it is that of the part's rows.
        rows = batch_merge.split_rows(prediction_json.jsonable(raw), counts)
        redo = [bool(flags.any()) for flags in batch_merge.split_rows(unsure, counts)] if unsure is not None \
            else [False] * len(parts)
        self._collector.stats.rescored += sum(redo)
        return [self._score_part(part) if again else
                ScoringResult(200, prediction_json.predictions_json(piece), "application/json")
                for part, piece, again in zip(parts, rows, redo)]

    def _guarded_prediction(self, request: dict):
        """The guarded model's labels for a merged request and the rows whose label must be had alone."""
        from mlflow.pyfunc import _validate_prediction_input

        built = self._direct.frame(request) if self._direct is not None else None
        if built is not None:
            return self._guard.predict(built[0])
        parsed = self._scoring._parse_json_data(request, self._model.metadata, self._input_schema)
        data, _ = _validate_prediction_input(parsed.data, parsed.params, self._input_schema,
                                             self._model.metadata.get_params_schema(), self._model.loader_module)
        return self._guard.predict(data)

    def _infer_merged(self, parts: list[batch_merge.TensorPart]) -> list[list[RawTensor]] | None:
        data = signature.model_input(self._input_schema, batch_merge.merge_tensors(parts))
        params = parts[0].params
        prediction = self._model.predict(data, params=params or None) if self._has_params \
            else self._model.predict(data)
        outputs = signature.output_tensors(prediction, self._output_schema, parts[0].outputs)
        return batch_merge.split_tensors(outputs, [p.rows for p in parts])

    def _score_part(self, part: batch_merge.JsonPart) -> ScoringResult:
        """The part scored alone, from the request it was decoded into (with MLflow's decoder) once."""
        return self._score(part.body, part.content_type, part.request)

    def _infer_part(self, part: batch_merge.TensorPart) -> list[RawTensor] | Exception:
        try:
            return self._infer(list(part.inputs), list(part.outputs), part.params)
        except Exception as exc:   # noqa: BLE001 - raised to this part's caller only, as if it came alone
            return exc

    def _infer(self, inputs: list[RawTensor], outputs: list[str], params: dict) -> list[RawTensor]:
        from mlflow.exceptions import MlflowException

        data = signature.model_input(self._input_schema, inputs)
        try:
            prediction = self._model.predict(data, params=params or None) if self._has_params \
                else self._model.predict(data)
        except MlflowException as exc:   # MLflow's own signature enforcement, as `mlflow models serve` says it
            raise InvalidParameter(exc.message) from None
        except PodiumError:
            raise
        except Exception:
            log.exception("model raised an unexpected error")
            raise BadRequest("Encountered an unexpected error while evaluating the model. Verify that the input "
                             "is compatible with the model for inference.") from None
        return signature.output_tensors(prediction, self._output_schema, outputs)

    def _score(self, body: bytes, content_type: str, request: dict | None = None) -> ScoringResult:
        """`request`: the body already decoded, where it was."""
        from mlflow.exceptions import MlflowException

        if self._direct is not None and is_plain_json(content_type):
            answer = self._direct.answer_body(body) if request is None else self._direct.answer(request)
            if answer is not None:
                return ScoringResult(200, answer, "application/json")
        try:
            result = self._invocations(body, content_type, self._model, self._input_schema)
        except MlflowException as exc:
            # As `mlflow models serve` answers, minus the stack trace: callers never see internals.
            error = orjson.loads(exc.serialize_as_json())
            error.pop("stack_trace", None)
            # The status and code only: MLflow's message may quote the caller's data, which is never logged.
            log.info("prediction failed: HTTP %d %s", exc.get_http_status_code(), error.get("error_code", ""))
            return ScoringResult(exc.get_http_status_code(), orjson.dumps(error), "application/json")
        except Exception:
            log.exception("model raised an unexpected error")
            error = {"error_code": "BAD_REQUEST", "message": "Encountered an unexpected error while evaluating "
                     "the model. Verify that the input is compatible with the model for inference."}
            return ScoringResult(400, orjson.dumps(error), "application/json")
        if result.status != 200:
            log.info("prediction failed: HTTP %d BAD_REQUEST", result.status)
            error = {"error_code": "BAD_REQUEST", "message": str(result.response)}
            return ScoringResult(result.status, orjson.dumps(error), "application/json")
        return ScoringResult(200, result.response.encode(), result.mimetype)

    def close(self) -> None:
        if self._collector is not None:
            self._collector.close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _typical(typical: float | None, elapsed_ms: float) -> float:
    """The typical duration after one more: a slow one counts at once (nothing runs inline after it until
    calls are fast again), fast ones slowly."""
    return elapsed_ms if typical is None or elapsed_ms > typical else typical + (elapsed_ms - typical) / 8


def _direct_scorer(model) -> DirectScorer | None:
    try:
        return DirectScorer.for_model(model)
    except Exception:   # noqa: BLE001 - an odd model is still served, through MLflow's path
        log.warning("cannot score this model directly; every request goes through MLflow", exc_info=True)
        return None
