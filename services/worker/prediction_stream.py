"""The worker's side of PredictStream: every prediction comes over one gRPC stream from the router.

A unary gRPC call costs the router about 0.33 ms of CPU and the worker as much again (measured on this
project's 2-core machine), several times what the rest of a query costs. On one stream, a frame holds
every request the router queued while its previous write was in flight, and a reply frame every answer
ready since the last: under load the per-call cost is spread over many requests (0.02 ms of router CPU per
request at 32 concurrent calls in the same measurement). A PREDICT item is scored by Predictor.predict, an
INFER item (a serialized InferRequest) by Predictor.infer, and an EVENTS item's events (a streaming model's)
come back one reply each, as the model yields them, up to the credit the router granted: the call a stream
would otherwise open costs a third of a millisecond before its first event.
"""

from __future__ import annotations

import asyncio
import logging

from podium_api.v1 import worker_pb2
from services.common import tracing
from services.common.errors import PodiumError
from services.common.infer_messages import INFER_CONTENT_TYPE, decode_infer_request, encode_infer_reply
from services.common.request_context import choose_request_id, request_id_var, traceparent_var
from services.common.framing import take_frame
from services.worker import metrics
from services.worker.core import Predictor, ScoringResult
from services.worker.generative import STREAM_REQUIRED, StreamRequired

log = logging.getLogger(__name__)

DRAINING = "REPLICA_DRAINING"


class StreamDrain:
    """Set when the worker begins to shut down: every open stream finishes what it has and ends."""

    def __init__(self):
        self.event = asyncio.Event()


async def serve_stream(predictor: Predictor, token: str, frames, drain: StreamDrain):
    """Yields reply frames for the request frames read from `frames` until the router closes its side
    (or the worker drains), then waits for the items in flight and ends."""
    ready: list[worker_pb2.PredictItemReply] = []
    wake = asyncio.Event()
    tasks: set[asyncio.Task] = set()
    streams: dict[int, tuple[asyncio.Task, _Credit]] = {}   # EVENTS items in flight, by id
    written: list[asyncio.Future] = []   # an event each, resolved once the frame holding it is written
    loop = asyncio.get_running_loop()

    def answer(reply: worker_pb2.PredictItemReply) -> None:
        ready.append(reply)
        wake.set()

    def send_event(reply: worker_pb2.PredictItemReply) -> asyncio.Future:
        answer(reply)
        done = loop.create_future()
        written.append(done)
        return done

    async def read() -> None:
        async for frame in frames:
            for item in frame.items:
                if item.method in (worker_pb2.PredictItem.CREDIT, worker_pb2.PredictItem.CANCEL):
                    task, credit = streams.get(item.id, (None, None))   # (none: the item already ended)
                    if task is not None and item.method == worker_pb2.PredictItem.CREDIT:
                        credit.grant(item.credit)
                    elif task is not None:
                        task.cancel()
                    continue
                if drain.event.is_set():   # not started: the router sends it to another replica
                    answer(worker_pb2.PredictItemReply(id=item.id, error_code=DRAINING,
                                                       message="the replica is shutting down"))
                    continue
                if item.method == worker_pb2.PredictItem.EVENTS:
                    credit = _Credit(item.credit)
                    task = loop.create_task(_stream_events(predictor, token, item, credit, send_event, answer))
                    streams[item.id] = (task, credit)
                    tasks.add(task)
                    task.add_done_callback(lambda t, key=item.id: (tasks.discard(t), streams.pop(key, None)))
                    continue
                task = loop.create_task(_score(predictor, token, item))
                tasks.add(task)
                task.add_done_callback(lambda t: (tasks.discard(t), t.cancelled() or answer(t.result())))

    # One event wakes the loop below for everything it waits on: answers, the reader's end, the drain (a
    # task per round and asyncio.wait cost more than the scoring of a small request).
    reader = loop.create_task(read())
    reader.add_done_callback(lambda _: wake.set())
    draining = loop.create_task(drain.event.wait())
    draining.add_done_callback(lambda _: wake.set())
    try:
        while True:
            await wake.wait()
            wake.clear()
            while ready:
                due = len(written)   # the events answered so far: in this frame (or, past its size, the next)
                yield worker_pb2.PredictReplyFrame(items=take_frame(ready))
                for done in written[:due]:
                    if not done.done():
                        done.set_result(None)
                del written[:due]
            if draining.done() and not reader.done():
                reader.cancel()   # read nothing more: what the router sent since gets no answer and is re-sent
            if reader.done() and not tasks and not ready:
                if not reader.cancelled() and reader.exception() is not None:
                    raise reader.exception()
                return
    finally:
        reader.cancel()
        draining.cancel()
        for task in tasks:
            task.cancel()


async def _score(predictor: Predictor, token: str, item) -> worker_pb2.PredictItemReply:
    """One item's answer: timed, traced, its failure an error code."""
    id_token = request_id_var.set(choose_request_id(item.request_id))
    parent_token = traceparent_var.set(item.traceparent)
    infer = item.method == worker_pb2.PredictItem.INFER
    name = "infer" if infer else "predict"
    try:
        with tracing.server_span(f"worker.{name}", item.traceparent), metrics.PredictionTimer(name) as timed:
            try:
                async with asyncio.timeout(item.timeout_s if item.timeout_s > 0 else None):   # no extra task
                    result = await (_infer(predictor, token, item.body) if infer else
                                    predictor.predict(token, item.body, item.content_type))
            except PodiumError as exc:
                timed.outcome = "error"
                return worker_pb2.PredictItemReply(id=item.id, error_code=exc.code, message=exc.message)
            except StreamRequired:   # not scored: the router asks PredictEvents for it
                return worker_pb2.PredictItemReply(id=item.id, error_code=STREAM_REQUIRED,
                                                   message="this request streams: ask PredictEvents")
            except TimeoutError:
                timed.outcome = "error"
                return worker_pb2.PredictItemReply(id=item.id, error_code="DEADLINE_EXCEEDED",
                                                   message="the model did not answer in time")
            except Exception:
                log.exception("unhandled error while scoring a streamed request")
                timed.outcome = "error"
                return worker_pb2.PredictItemReply(id=item.id, error_code="INTERNAL_ERROR", message="internal error")
            if result.http_status != 200:
                timed.outcome = "model_error"
        return worker_pb2.PredictItemReply(id=item.id, http_status=result.http_status, body=result.body,
                                           content_type=result.content_type, model_ms=timed.elapsed_ms)
    finally:
        request_id_var.reset(id_token)
        traceparent_var.reset(parent_token)


class _Credit:
    """How many more events an EVENTS item may send before the router grants more."""

    def __init__(self, initial: int):
        self._left = initial
        self._granted = asyncio.Event()

    def grant(self, count: int) -> None:
        self._left += count
        self._granted.set()

    async def take(self) -> None:
        while self._left <= 0:
            self._granted.clear()
            await self._granted.wait()
        self._left -= 1


async def _stream_events(predictor: Predictor, token: str, item, credit: _Credit, send_event, answer) -> None:
    """An EVENTS item's events, one reply each (`more` set), then its end; cancelled when the router cancels it
    or the stream ends, which stops the model at its next yield. The model's next step waits until an event
    is written, as a call's would: it would otherwise take the core (and the GIL) the write needs."""
    request_id_var.set(choose_request_id(item.request_id))   # this item's own task: nothing to reset
    traceparent_var.set(item.traceparent)
    events = predictor.predict_events(token, item.body, item.content_type)
    try:
        with tracing.server_span("worker.predict_events", item.traceparent):
            async for event in events:
                await credit.take()
                await send_event(worker_pb2.PredictItemReply(id=item.id, body=event.data,
                                                             http_status=event.http_status, more=True))
        answer(worker_pb2.PredictItemReply(id=item.id))
    except PodiumError as exc:
        answer(worker_pb2.PredictItemReply(id=item.id, error_code=exc.code, message=exc.message))
    except Exception:
        log.exception("unhandled error while streaming events")
        answer(worker_pb2.PredictItemReply(id=item.id, error_code="INTERNAL_ERROR", message="internal error"))
    finally:
        await events.aclose()   # the router left, or the model ended: a no-op then


async def _infer(predictor: Predictor, token: str, body: bytes) -> ScoringResult:
    outputs = await predictor.infer(token, *decode_infer_request(body))
    return ScoringResult(200, encode_infer_reply(outputs), INFER_CONTENT_TYPE)
