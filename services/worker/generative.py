"""Streaming a generative model's answer: MLflow's `predict_stream` (ResponsesAgent, ChatAgent, ChatModel, any
pyfunc that has it), each event handed on the moment the model yields it.

`mlflow models serve` has no streaming answer, so the request is read as its scoring server reads a JSON body
(the `stream` flag left out) and each yielded value rendered as it renders an answer in the unified LLM format
(`unwrapped_predictions_to_json`): the events are what the non-streaming answer is made of. The model's
generator runs in a predict thread; each event crosses to the event loop as it comes, never batched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass

import orjson

log = logging.getLogger(__name__)

STREAM_REQUIRED = "STREAM_REQUIRED"   # a PREDICT item that asks to stream: the router sends it to PredictEvents
_END = object()


class StreamRequired(Exception):
    """The request asks for `"stream": true` of a model that streams: it belongs on PredictEvents."""


@dataclass(frozen=True)
class ModelEvent:
    """One yielded value as JSON, or (http_status set) the error `mlflow models serve` would answer."""

    data: bytes
    http_status: int = 0


def model_task(model) -> str:
    """The task MLflow logged the model with (`agent/v1/responses`, `agent/v2/chat`, `agent/v1/chat`,
    `llm/v1/chat`, ...): MLmodel's `metadata.task`; empty when it has none."""
    task = (model.metadata.metadata or {}).get("task")
    return task if isinstance(task, str) else ""


def is_streaming(model) -> bool:
    """Whether the loaded pyfunc has predict_stream."""
    return getattr(model, "_predict_stream_fn", None) is not None


def asks_stream(body: bytes, content_type: str) -> dict | None:
    """The decoded request when it is a JSON object with `"stream": true`; None otherwise."""
    if content_type.split(";", 1)[0].strip() != "application/json":
        return None
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return request if isinstance(request, dict) and request.get("stream") is True else None


async def stream_events(model, pool: Executor, request: dict) -> AsyncIterator[ModelEvent]:
    """The model's events for `request` (decoded, `stream` still in it), in order, as it yields them; a failure
    is the last event. Closing the iterator stops the model at its next yield."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    stop = False

    def hand_over(item) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def pump() -> None:
        try:
            for event in _events(model, request):
                hand_over(event)
                # Lets the event loop take the GIL and send the event now, rather than after the switch interval
                # (5 ms) of the model's computing the next one.
                time.sleep(0)
                if stop:   # the caller left: the model's generator is closed below, at its yield
                    return
        finally:
            hand_over(_END)

    running = loop.run_in_executor(pool, pump)
    try:
        while (item := await queue.get()) is not _END:
            yield item
            if item.http_status:
                break
    finally:
        stop = True
        if not running.done():
            running.add_done_callback(_log_failure)


def _events(model, request: dict):
    """Runs in a predict thread: the model's generator, each value rendered, errors as MLflow answers them."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server
    from mlflow.utils.proto_json_utils import NumpyEncoder, _get_jsonable_obj

    generator = None
    try:
        parsed = scoring_server._parse_json_data({k: v for k, v in request.items() if k != "stream"},
                                                 model.metadata, model.metadata.get_input_schema())
        generator = model.predict_stream(parsed.data, params=parsed.params or None)
        for value in generator:
            yield ModelEvent(json.dumps(_get_jsonable_obj(value, pandas_orient="records"), cls=NumpyEncoder).encode())
    except MlflowException as exc:
        error = orjson.loads(exc.serialize_as_json())
        error.pop("stack_trace", None)
        log.info("streamed prediction failed: HTTP %d %s", exc.get_http_status_code(), error.get("error_code", ""))
        yield ModelEvent(orjson.dumps(error), exc.get_http_status_code())
    except Exception:
        log.exception("model raised an unexpected error while streaming")
        yield ModelEvent(orjson.dumps({"error_code": "BAD_REQUEST", "message": "Encountered an unexpected error "
                                       "while evaluating the model. Verify that the input is compatible with "
                                       "the model for inference."}), 400)
    finally:
        if generator is not None and hasattr(generator, "close"):
            generator.close()


def stop_local_trace_export() -> bool:
    """Turns MLflow tracing off in this replica when its tracking store is a local database or directory (the
    platform's registry, `podium up`'s sqlite): a replica never opens it, so every traced call (agents trace
    each predict) would fail to export in the background, spending a core on warnings. A remote tracking
    server keeps its traces. Blocking (imports mlflow); returns whether tracing was turned off."""
    import mlflow

    uri = mlflow.get_tracking_uri() or ""
    if "://" in uri and not uri.startswith(("sqlite:", "file:")):
        return False
    mlflow.tracing.disable()
    return True


def _log_failure(done: asyncio.Future) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.warning("a streamed prediction's thread failed: %s", done.exception())
