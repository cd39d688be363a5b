"""Streaming a generative model's answer: MLflow's `predict_stream` (ResponsesAgent, ChatAgent, ChatModel, any
pyfunc that has it), each event handed on the moment the model yields it.

`mlflow models serve` has no streaming answer, so the request is read as its scoring server reads a JSON body
(the `stream` flag left out) and each yielded value rendered as it renders an answer in the unified LLM format
(`unwrapped_predictions_to_json`): the events are what the non-streaming answer is made of. The model's
generator runs in a predict thread; each event crosses to the event loop as it comes, never batched.

And the MLflow trace of a call that asks for it (`databricks_options.return_trace`), in `databricks_output`, as
Databricks Model Serving answers it, collected in memory for that call only (docs/agents.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from contextlib import contextmanager
from contextvars import ContextVar, copy_context
from dataclasses import dataclass, replace

import orjson

from services.worker.trace_store import CollectedTraces

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


HAND_OVER_WAIT_S = 0.05   # a consumer slower than this (the caller reads slowly) lets the model go on
STREAM_NICENESS = 5       # a streaming model's predict threads, below the work that delivers its events


async def stream_events(model, pool: Executor, request: dict, first_inline: bool = False,
                        first_step_ms: Callable[[float], None] | None = None) -> AsyncIterator[ModelEvent]:
    """The model's events for `request` (decoded, `stream` still in it), in order, as it yields them; a failure
    is the last event. Closing the iterator stops the model at its next yield.

    `first_inline`: the model's first step (up to its first event) runs here, on the event loop, sparing two
    thread hand-offs (a third of the time to first event of a fast model); the caller decides it is short.
    `first_step_ms` is told how long that step took, wherever it ran."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    taken = threading.Event()
    stop = False
    events = _events(model, request)
    # Every step runs in this one context, whichever thread runs it: a context manager of the model's may
    # set a context variable before a yield and reset it after.
    context = copy_context()

    def step(timed: bool = False):
        started = time.perf_counter()
        event = context.run(next, events, _END)
        if timed and first_step_ms is not None:
            first_step_ms((time.perf_counter() - started) * 1000)
        return event

    def hand_over(item) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def pump(timed: bool) -> None:
        try:
            while (event := step(timed)) is not _END:
                timed = False
                taken.clear()
                hand_over(event)
                # Waits (briefly) until the event loop has taken the event: it then holds the GIL and sends it.
                # Otherwise the model's next step keeps the GIL, and the event waits for the switch interval
                # (5 ms), the loop having woken only to queue for the GIL.
                taken.wait(HAND_OVER_WAIT_S)
                if stop:   # the caller left: the model's generator is closed at its yield
                    return
        finally:
            context.run(events.close)
            hand_over(_END)

    running = None
    try:
        if first_inline:
            first = step(timed=True)
            if first is _END:
                return
            yield first
            if first.http_status:
                return
        running = loop.run_in_executor(pool, pump, not first_inline)
        while (item := await queue.get()) is not _END:
            taken.set()
            yield item
            if item.http_status:
                break
    finally:
        stop = True
        if running is None:
            context.run(events.close)
        elif not running.done():
            running.add_done_callback(_log_failure)


def yield_cpu() -> None:
    """Lowers the calling thread's scheduling priority (a predict thread's, as it starts, in a replica whose
    model streams): on a busy machine an event the model already made then reaches the caller (through the
    replica's event loop, the router and the caller's own process) before the model's next step takes the
    core. Best effort: Linux sets each thread's niceness."""
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(os.getpriority(os.PRIO_PROCESS, thread) + STREAM_NICENESS, 19))
    except OSError:
        log.debug("cannot lower a predict thread's priority", exc_info=True)


def _events(model, request: dict):
    """Runs in a predict thread: the model's generator, each value rendered, errors as MLflow answers them."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server
    from mlflow.utils.proto_json_utils import NumpyEncoder, _get_jsonable_obj

    trace_id = uuid.uuid4().hex if collects_traces(model) and _options_ask_trace(request) else None
    generator, finished = None, False
    with _collecting(trace_id):
        try:
            parsed = scoring_server._parse_json_data({k: v for k, v in request.items() if k != "stream"},
                                                     model.metadata, model.metadata.get_input_schema())
            generator = model.predict_stream(parsed.data, params=parsed.params or None)
            for value in generator:
                yield ModelEvent(json.dumps(_get_jsonable_obj(value, pandas_orient="records"),
                                            cls=NumpyEncoder).encode())
            finished = True
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
    trace = _collected.pop(trace_id) if trace_id is not None else None
    if finished and trace is not None:   # the stream's last event, as a non-streaming answer carries it
        yield ModelEvent(b'{"databricks_output": ' + orjson.dumps({"trace": trace}, default=str) + b"}")


def stop_local_trace_export() -> bool:
    """Sets up MLflow tracing in this replica for the calls that ask for their trace (`trace_collected`).

    With a local tracking store (the platform's registry, `podium up`'s sqlite, a `file:` directory), which a
    replica never opens, trace exports stop: every traced call (agents trace each predict) would fail to export
    in the background, spending a core on warnings. Tracing is then off for every call but those that ask, whose
    traces are kept in memory. With a remote tracking server, MLflow's tracing is left as it is (traces exported
    there) and the trace MLflow records for a call that asks is also answered (`_trace_taker`). Blocking (imports
    mlflow); returns whether exports were stopped."""
    import mlflow

    if _is_remote(mlflow.get_tracking_uri() or ""):
        try:
            _install_trace_taking()
        except Exception:   # noqa: BLE001 - MLflow's tracing internals moved: return_trace unanswered
            log.warning("cannot answer the MLflow traces of requests that ask for them", exc_info=True)
        return False
    mlflow.tracing.disable()
    try:
        _install_request_tracing()
    except Exception:   # noqa: BLE001 - MLflow's tracing internals moved: tracing stays off, return_trace unanswered
        log.warning("cannot collect MLflow traces for requests that ask for them", exc_info=True)
    return True


def _is_remote(tracking_uri: str) -> bool:
    """A tracking server MLflow exports traces to (http(s)://, databricks), not a local database or directory."""
    return tracking_uri == "databricks" or ("://" in tracking_uri and not tracking_uri.startswith(("sqlite:", "file:")))


# The request id of the call whose trace is being collected (set in the thread that runs the model).
_COLLECTING: ContextVar[str | None] = ContextVar("podium_collecting_trace", default=None)


_collected: CollectedTraces | None = None   # None: this replica collects no traces


def collects_traces(model) -> bool:
    """Whether a `return_trace` request to this model gets its trace: its pyfunc is Python code (agents, custom
    pyfuncs: the models that trace) and this replica collects traces. Classic flavors never look."""
    return _collected is not None and (getattr(model, "loader_module", "") or "").startswith("mlflow.pyfunc.")


def asks_trace(body: bytes, content_type: str) -> bool:
    """Whether the request is a JSON object with `"databricks_options": {"return_trace": true}`."""
    if b'"databricks_options"' not in body or content_type.split(";", 1)[0].strip() != "application/json":
        return False
    try:
        return _options_ask_trace(orjson.loads(body))
    except orjson.JSONDecodeError:
        return False


def _options_ask_trace(request) -> bool:
    options = request.get("databricks_options") if isinstance(request, dict) else None
    return isinstance(options, dict) and options.get("return_trace") is True


def trace_collected(score, body: bytes, content_type: str):
    """score(body, content_type) (a ScoringResult) with MLflow tracing on for this call only; a 200 answer that
    is a JSON object carries the call's trace in `databricks_output.trace`, as Databricks Model Serving answers.
    Runs in the thread that scores."""
    request_id = uuid.uuid4().hex
    with _collecting(request_id):
        result = score(body, content_type)
    trace = _collected.pop(request_id)
    if trace is None or result.http_status != 200:
        return result
    return replace(result, body=with_databricks_output(result.body, {"trace": trace}))


@contextmanager
def _collecting(request_id: str | None):
    """MLflow tracing on in this thread, its trace kept under `request_id` (the prediction context's request id,
    as Databricks Model Serving sets it); nothing where `request_id` is None."""
    if request_id is None:
        yield
        return
    from mlflow.pyfunc.context import Context, set_prediction_context

    if _taker is not None:
        _taker.attach()
    collecting = _COLLECTING.set(request_id)
    try:
        with set_prediction_context(Context(request_id=request_id)):
            yield
    finally:
        _COLLECTING.reset(collecting)
        if _taker is not None:
            _taker.finish(request_id)


def with_databricks_output(answer: bytes, output: dict) -> bytes:
    """The JSON object `answer` with `"databricks_output": output` added last, its own bytes kept as they are;
    an answer that is not an object is returned unchanged."""
    head = answer.rstrip()
    if not head.lstrip().startswith(b"{") or not head.endswith(b"}"):
        return answer
    inner = head[:-1].rstrip()
    separator = b"" if inner.endswith(b"{") else b", "
    return inner + separator + b'"databricks_output": ' + orjson.dumps(output, default=str) + b"}"


def _install_request_tracing() -> None:
    """MLflow's tracer provider becomes one that hands out a no-op tracer (what mlflow.tracing.disable() leaves)
    except where `_COLLECTING` is set, whose spans go to MLflow's inference-table processor (the one Databricks
    Model Serving uses: traces keyed by the prediction context's request id) and are kept in memory, never
    exported. So only the requests that ask for their trace pay for tracing."""
    global _collected
    from mlflow.tracing.processor.inference_table import InferenceTableSpanProcessor
    from mlflow.tracing.provider import provider
    from mlflow.tracing.trace_manager import InMemoryTraceManager
    from opentelemetry import trace as otel_trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    kept = CollectedTraces()
    no_op = otel_trace.NoOpTracer()

    class KeepInMemory(SpanExporter):
        def export(self, spans):
            manager = InMemoryTraceManager.get_instance()
            for span in spans:
                finished = manager.pop_trace(span.context.trace_id) if span.parent is None else None
                if finished is not None and finished.trace.info.client_request_id:
                    kept.put(finished.trace.info.client_request_id, finished.trace.to_dict())
            return SpanExportResult.SUCCESS

    class RequestTracerProvider(TracerProvider):
        def get_tracer(self, *args, **kwargs):
            return super().get_tracer(*args, **kwargs) if _COLLECTING.get() is not None else no_op

    tracers = RequestTracerProvider(resource=Resource({"telemetry.sdk.name": "mlflow"}))
    tracers.add_span_processor(InferenceTableSpanProcessor(KeepInMemory()))
    provider.set(tracers)
    provider.once._done = True   # MLflow would otherwise build its own provider at the first span
    _collected = kept


_taker = None   # with a remote tracking server: the TraceTaker of `_trace_taker`


def _install_trace_taking() -> None:
    """With a remote tracking server: MLflow's own tracing, and a TraceTaker for the calls that ask."""
    global _collected, _taker
    _collected, _taker = CollectedTraces(), _trace_taker()


def _trace_taker():
    from mlflow.entities import Trace, TraceData
    from mlflow.tracing.provider import provider
    from mlflow.tracing.trace_manager import InMemoryTraceManager
    from mlflow.tracing.utils.truncation import set_request_response_preview
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    class TraceTaker(SpanProcessor):
        """A span processor beside MLflow's, on MLflow's tracer provider, that keeps for a call that asks for its
        trace the trace MLflow records for it (its in-memory `_Trace`, which MLflow's processor finishes and
        exports as ever) and, once the call returns, answers a copy of it. Other calls' spans cost it a context
        variable's read; it starts no span."""

        def __init__(self):
            self._live: dict[str, object] = {}   # request id → MLflow's _Trace of that call (calls in progress)
            self._providers = weakref.WeakSet()   # MLflow's tracer providers it is on (MLflow may build another)
            self._lock = threading.Lock()

        def attach(self) -> None:
            """Onto MLflow's tracer provider (built as at a traced call's first span), after its processors."""
            provider.get_or_init_tracer(__name__)
            tracers = provider.get()
            if not isinstance(tracers, TracerProvider):   # tracing disabled: nothing is recorded
                return
            with self._lock:
                if tracers not in self._providers:
                    tracers.add_span_processor(self)
                    self._providers.add(tracers)

        def on_start(self, span, parent_context=None) -> None:
            request_id = _COLLECTING.get()
            if request_id is None or span.parent is not None:
                return
            manager = InMemoryTraceManager.get_instance()   # MLflow's processor registered the trace before this
            with manager.get_trace(manager.get_mlflow_trace_id_from_otel_id(span.context.trace_id)) as live:
                if live is not None:
                    with self._lock:
                        self._live[request_id] = live

        def finish(self, request_id: str) -> None:
            """The call returned: a copy of its finished trace into `_collected` (the dicts MLflow's exporter may
            still be adding to are copied first, each copy atomic)."""
            with self._lock:
                live = self._live.pop(request_id, None)
            root = live.get_root_span() if live is not None else None
            if root is None or root.end_time_ns is None:
                return
            info = replace(live.info, trace_metadata=dict(live.info.trace_metadata), tags=dict(live.info.tags),
                           assessments=list(live.info.assessments))
            data = TraceData(spans=[span.to_immutable_span() for span in list(live.span_dict.values())])
            set_request_response_preview(info, data)
            _collected.put(request_id, Trace(info, data).to_dict())

    return TraceTaker()


def _log_failure(done: asyncio.Future) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.warning("a streamed prediction's thread failed: %s", done.exception())
