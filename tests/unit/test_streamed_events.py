"""A streaming model's events over the replica's PredictStream (EVENTS items), router side against a real worker
servicer on a real gRPC server: the router holds at most its credit of events a slow caller has not taken, the
events arrive whole and in order, a worker that dies fails the rest of the stream, and a worker from before
EVENTS items is asked with a PredictEvents call instead."""

from __future__ import annotations

import asyncio
import json

import pandas as pd
import pytest
from mlflow.pyfunc import PythonModel

from podium_api.v1 import worker_pb2
from services.common.errors import ReplicaUnreachable, Unavailable
from services.router.backends import WorkerPool
from services.router.prediction_stream import EVENT_CREDIT, PredictionStream, StreamedEvents
from services.worker.grpc_api import WorkerServicer
from tests.support.stack import wait_for_async
from tests.unit.test_prediction_stream import CREDENTIAL, TOKEN, _Worker
EVENTS = 5 * EVENT_CREDIT


class Counter(PythonModel):
    """Streams `{"n": i}` for i below the request's `count`, as fast as it is asked."""

    def predict(self, context, model_input, params=None):
        return [_count(model_input)]

    def predict_stream(self, context, model_input, params=None):
        for i in range(_count(model_input)):
            yield {"n": i}


def _count(model_input) -> int:
    count = model_input["count"]   # a column (predict) or the value itself (predict_stream's dict)
    return int(count.iloc[0] if hasattr(count, "iloc") else count)


@pytest.fixture(scope="module")
def counter(tmp_path_factory):
    import mlflow
    from mlflow.models import infer_signature

    path = tmp_path_factory.mktemp("counter") / "m"
    frame = pd.DataFrame({"count": [3]})
    mlflow.pyfunc.save_model(str(path), python_model=Counter(), signature=infer_signature(frame, [3]),
                             pip_requirements=["pandas"])
    return mlflow.pyfunc.load_model(str(path))


class _BeforeEvents(WorkerServicer):
    """A worker from before EVENTS items: it reads one as the PREDICT it then was (method 0)."""

    async def PredictStream(self, request_iterator, context):
        async def as_predict():
            async for frame in request_iterator:
                for item in frame.items:
                    if item.method == worker_pb2.PredictItem.EVENTS:
                        item.method = worker_pb2.PredictItem.PREDICT
                yield frame
        async for reply in super().PredictStream(as_predict(), context):
            yield reply


def _body(count: int) -> bytes:
    return json.dumps({"dataframe_records": [{"count": count}], "stream": True}).encode()


async def test_a_slow_caller_holds_the_router_to_its_credit(counter):
    async with _Worker(counter) as worker:
        stream = PredictionStream(worker.channel, CREDENTIAL, worker.address)
        first, rest = await stream.open_events(_body(EVENTS), "application/json", 10)
        assert isinstance(rest, StreamedEvents)
        held = lambda: rest._replies.qsize()   # noqa: E731 - what the router holds for its caller
        await wait_for_async(lambda: held() >= EVENT_CREDIT - 1, what="the worker to send its credit's worth")
        await asyncio.sleep(0.2)   # the model could run on: it waits for credit
        assert held() == EVENT_CREDIT - 1   # the first was taken: credit for 31 more
        events = [json.loads(first.data)]
        async for event in rest:
            events.append(json.loads(event.data))
            assert held() <= EVENT_CREDIT
        assert events == [{"n": i} for i in range(EVENTS)]
        again, more = await stream.open_events(_body(2), "application/json", 10)   # the stream stays open
        assert [json.loads(again.data)] + [json.loads(e.data) async for e in more] == [{"n": 0}, {"n": 1}]


async def test_concurrent_streams_and_predictions_share_the_stream(counter):
    async with _Worker(counter) as worker:
        stream = PredictionStream(worker.channel, CREDENTIAL, worker.address)

        async def events(count: int) -> list:
            first, rest = await stream.open_events(_body(count), "application/json", 10)
            return [json.loads(first.data)] + [json.loads(e.data) async for e in rest]

        got = await asyncio.gather(*(events(3 + i) for i in range(6)),
                                   stream.predict(b'{"dataframe_records": [{"count": 4}]}', "application/json", 10))
        assert got[:6] == [[{"n": i} for i in range(3 + k)] for k in range(6)]
        assert json.loads(got[6].body) == {"predictions": [4]}


async def test_a_caller_that_leaves_stops_the_model_and_frees_its_slot(counter):
    async with _Worker(counter, queue_limit=1) as worker:
        stream = PredictionStream(worker.channel, CREDENTIAL, worker.address)
        first, rest = await stream.open_events(_body(EVENTS), "application/json", 10)
        with pytest.raises(Unavailable):   # the replica's one slot is the stream's while it runs
            await stream.open_events(_body(1), "application/json", 10)
        await rest.aclose()   # the model waits for credit: only the cancel ends it

        deadline = asyncio.get_running_loop().time() + 10
        while True:
            try:
                again, more = await stream.open_events(_body(1), "application/json", 10)
                break
            except Unavailable:
                assert asyncio.get_running_loop().time() < deadline, "the slot never came back"
                await asyncio.sleep(0.01)
        assert [json.loads(again.data)] + [json.loads(e.data) async for e in more] == [{"n": 0}]


async def test_a_worker_that_dies_fails_the_rest_of_its_streams(counter):
    async with _Worker(counter) as worker:
        stream = PredictionStream(worker.channel, CREDENTIAL, worker.address)
        first, rest = await stream.open_events(_body(EVENTS), "application/json", 10)
        await wait_for_async(lambda: rest._replies.qsize() >= EVENT_CREDIT - 1, what="the first events")
        await worker.server.stop(grace=None)
        with pytest.raises(ReplicaUnreachable):
            async for _ in rest:
                pass


async def test_a_worker_from_before_events_items_streams_over_its_own_call(counter):
    async with _Worker(counter, servicer=_BeforeEvents) as worker:
        pool = WorkerPool(TOKEN)
        try:
            first, rest = await pool.open_events(worker.address, _body(4), "application/json", 10)
            assert not isinstance(rest, StreamedEvents)   # a PredictEvents call's events
            assert [json.loads(first.data)] + [json.loads(e.data) async for e in rest] == \
                [{"n": i} for i in range(4)]
            assert pool.in_flight[worker.address] == 0
        finally:
            await pool.close()
