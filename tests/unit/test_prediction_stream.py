"""PredictStream, router side against a real worker servicer on a real gRPC server, with real MLflow models:
concurrent requests share frames and each gets what the worker's Predictor answers alone; deadlines, worker
errors, a stranger's credential, a draining worker and a dead one each end a request the way the router
expects."""

from __future__ import annotations

import asyncio
import hashlib
import json

import grpc
import numpy as np
import pandas as pd
import pytest

from podium_api.v1 import worker_pb2, worker_pb2_grpc
from services.common.errors import DeadlineExceeded, InvalidParameter, ReplicaUnreachable, Unauthenticated, \
    Unavailable
from services.router.backends import WorkerPool
from services.router.prediction_stream import PredictionStream
from services.worker.core import CallerCheck, Predictor
from services.worker.grpc_api import WorkerServicer
from services.common.infer_messages import decode_infer_request, encode_infer_reply
from services.worker.prediction_stream import StreamDrain
from tests.support.slow_model import SlowDoubler
from tests.support.stack import wait_for_async

TOKEN = "router-credential"
CREDENTIAL = (("authorization", f"Bearer {TOKEN}"),)
COLUMNS = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def sklearn_model(tmp_path_factory):
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    frame = pd.DataFrame(np.random.default_rng(2).normal(size=(40, 4)), columns=COLUMNS)
    model = LinearRegression().fit(frame, frame.a * 2 - frame.c)
    path = tmp_path_factory.mktemp("lr") / "m"
    mlflow.sklearn.save_model(model, str(path), signature=infer_signature(frame, model.predict(frame)),
                              pip_requirements=["scikit-learn"])
    return mlflow.pyfunc.load_model(str(path))


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory):
    import mlflow
    from mlflow.models import infer_signature

    frame = pd.DataFrame({"x": [1.0, 2.0]})
    path = tmp_path_factory.mktemp("slow") / "m"
    mlflow.pyfunc.save_model(str(path), python_model=SlowDoubler(0.3), signature=infer_signature(frame, frame * 2),
                             pip_requirements=["pandas"])
    return mlflow.pyfunc.load_model(str(path))


class _CountingServicer(WorkerServicer):
    """Counts the streams opened and the request frames the worker reads (to see that requests shared them)."""

    frames = 0
    streams = 0

    async def PredictStream(self, request_iterator, context):
        type(self).streams += 1

        async def counted():
            async for frame in request_iterator:
                type(self).frames += 1
                yield frame
        async for reply in super().PredictStream(counted(), context):
            yield reply


class _Worker:
    """A worker servicer (by default one counting its streams and frames) on a real gRPC server."""

    def __init__(self, model, queue_limit: int = 64, servicer: type[WorkerServicer] | None = None):
        self.predictor = Predictor(model, 2, queue_limit, CallerCheck(hashlib.sha256(TOKEN.encode()).hexdigest()))
        self.drain = StreamDrain()
        self.server = grpc.aio.server()
        _CountingServicer.frames = _CountingServicer.streams = 0
        worker_pb2_grpc.add_WorkerServicer_to_server((servicer or _CountingServicer)(self.predictor, self.drain),
                                                     self.server)
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.channel = grpc.aio.insecure_channel(self.address)

    async def __aenter__(self):
        await self.server.start()
        return self

    async def __aexit__(self, *exc):
        await self.channel.close()
        await self.server.stop(grace=None)
        self.predictor.close()


def _rows_body(seed: int) -> bytes:
    rows = np.random.default_rng(seed).normal(size=(1 + seed % 3, 4)).tolist()
    return json.dumps({"dataframe_split": {"columns": COLUMNS, "data": rows}}).encode()


async def test_concurrent_requests_share_frames_and_get_their_own_answers(sklearn_model):
    async with _Worker(sklearn_model) as worker:
        stream = PredictionStream(worker.channel, CREDENTIAL, worker.address)
        bodies = [_rows_body(i) for i in range(60)] + [b'{"dataframe_split": {"columns": ["a"], "data": [[1]]}}']
        streamed = await asyncio.gather(*(stream.predict(b, "application/json", 10) for b in bodies))
        for body, answer in zip(bodies, streamed):
            expected = await worker.predictor.predict(TOKEN, body, "application/json")   # scored alone
            assert (answer.http_status, answer.body, answer.content_type) == \
                (expected.http_status, expected.body, expected.content_type)
            assert answer.model_ms is not None and answer.model_ms > 0
        assert streamed[-1].http_status == 400       # a bad request is the worker's answer, not a broken stream
        assert _CountingServicer.frames < len(bodies) / 2, "requests queued together should share frames"
        again = await stream.predict(bodies[0], "application/json", 10)   # the stream stays open for more
        assert again.body == streamed[0].body


async def test_deadline_ends_one_request_and_not_the_stream(slow_model):
    async with _Worker(slow_model) as worker:
        stream = PredictionStream(worker.channel, CREDENTIAL, worker.address)
        body = json.dumps({"dataframe_records": [{"x": 1.5}]}).encode()
        with pytest.raises(DeadlineExceeded):
            await stream.predict(body, "application/json", 0.05)
        answer = await stream.predict(body, "application/json", 5)
        assert json.loads(answer.body) == {"predictions": [{"x": 3.0}]}


async def test_a_full_worker_queue_is_that_requests_error(slow_model):
    async with _Worker(slow_model, queue_limit=1) as worker:
        stream = PredictionStream(worker.channel, CREDENTIAL, worker.address)
        body = json.dumps({"dataframe_records": [{"x": 1.0}]}).encode()
        results = await asyncio.gather(*(stream.predict(body, "application/json", 5) for _ in range(3)),
                                       return_exceptions=True)
        assert sum(1 for r in results if isinstance(r, Unavailable)) == 2
        assert sum(1 for r in results if not isinstance(r, Exception) and r.http_status == 200) == 1


async def test_a_stranger_is_refused(sklearn_model):
    async with _Worker(sklearn_model) as worker:
        stream = PredictionStream(worker.channel, (("authorization", "Bearer nope"),), worker.address)
        with pytest.raises(Unauthenticated):
            await stream.predict(_rows_body(1), "application/json", 5)


async def test_a_draining_worker_finishes_what_it_started_and_turns_the_rest_away(slow_model):
    async with _Worker(slow_model) as worker:
        stream = PredictionStream(worker.channel, CREDENTIAL, worker.address)
        body = json.dumps({"dataframe_records": [{"x": 2.0}]}).encode()
        started = asyncio.ensure_future(stream.predict(body, "application/json", 5))
        await wait_for_async(lambda: _CountingServicer.frames, what="the worker to take the request")
        worker.drain.event.set()
        with pytest.raises(ReplicaUnreachable) as refused:
            await stream.predict(body, "application/json", 5)
        assert not refused.value.may_have_run   # never started: the router may send it elsewhere freely
        assert json.loads((await started).body) == {"predictions": [{"x": 4.0}]}


async def test_a_worker_that_dies_fails_its_requests_as_may_have_run(slow_model):
    async with _Worker(slow_model) as worker:
        stream = PredictionStream(worker.channel, CREDENTIAL, worker.address)
        body = json.dumps({"dataframe_records": [{"x": 2.0}]}).encode()
        running = asyncio.ensure_future(stream.predict(body, "application/json", 5))
        await wait_for_async(lambda: _CountingServicer.frames, what="the worker to take the request")
        await worker.server.stop(grace=None)
        with pytest.raises(ReplicaUnreachable) as failed:
            await running
        assert failed.value.may_have_run


async def test_an_unreachable_replica_never_had_the_request():
    channel = grpc.aio.insecure_channel("127.0.0.1:1")
    try:
        stream = PredictionStream(channel, CREDENTIAL, "127.0.0.1:1")
        with pytest.raises(ReplicaUnreachable) as failed:
            await stream.predict(b"{}", "application/json", 5)
        assert not failed.value.may_have_run
    finally:
        await channel.close()


async def test_the_pool_sends_predict_and_infer_over_one_stream_per_replica(sklearn_model):
    async with _Worker(sklearn_model) as worker:
        pool = WorkerPool(worker_token=TOKEN)
        try:
            bodies = [_rows_body(i) for i in range(8)]
            answers = await asyncio.gather(*(pool.predict(worker.address, b, "application/json", 10) for b in bodies),
                                           pool.infer(worker.address, _infer_body(2), 10))
            for body, answer in zip(bodies, answers):
                assert (answer.http_status, answer.body) == \
                    (200, (await worker.predictor.predict(TOKEN, body, "application/json")).body)
            assert answers[-1].content_type == "application/x-protobuf"
            assert pool.in_flight[worker.address] == 0
            assert _CountingServicer.streams == 1      # one stream carried them all
            metadata = await pool.metadata(worker.address, 10)
            assert [t.name for t in metadata.inputs] == COLUMNS
        finally:
            pool.keep_only(set())
        with pytest.raises(ReplicaUnreachable) as failed:   # nothing listens there: it never left the router
            await WorkerPool(worker_token=TOKEN).metadata("127.0.0.1:1", 5)
        assert not failed.value.may_have_run


def _infer_body(seed: int, datatype: str = "FP64") -> bytes:
    columns = np.random.default_rng(seed).normal(size=(4, 1 + seed % 3))
    return worker_pb2.InferRequest(inputs=[
        worker_pb2.Tensor(name=name, datatype=datatype, shape=[len(values)], raw=values.astype("<f8").tobytes())
        for name, values in zip(COLUMNS, columns)]).SerializeToString()


async def test_infer_items_get_what_the_predictor_answers(sklearn_model):
    async with _Worker(sklearn_model) as worker:
        stream = PredictionStream(worker.channel, CREDENTIAL, worker.address)
        bodies = [_infer_body(i) for i in range(12)]
        infer = worker_pb2.PredictItem.INFER
        streamed = await asyncio.gather(*(stream.predict(b, "", 10, method=infer) for b in bodies),
                                        stream.predict(_rows_body(3), "application/json", 10))   # mixed in a frame
        for body, answer in zip(bodies, streamed):
            assert (answer.http_status, answer.content_type) == (200, "application/x-protobuf")
            alone = await worker.predictor.infer(TOKEN, *decode_infer_request(body))
            assert answer.body == encode_infer_reply(alone)
            [output] = worker_pb2.InferReply.FromString(answer.body).outputs
            assert output.shape == [worker_pb2.InferRequest.FromString(body).inputs[0].shape[0]]
        assert json.loads(streamed[-1].body)["predictions"]              # the Predict item beside them
        with pytest.raises(InvalidParameter):                           # the worker's error for that item
            await stream.predict(_infer_body(1, datatype="FP16"), "", 10, method=infer)
        with pytest.raises(InvalidParameter):
            await stream.predict(b"\xff\xff not a message", "", 10, method=infer)
