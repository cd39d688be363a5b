"""A generative model's worker (services/worker/generative.py, PredictEvents) against the router's WorkerPool on a
real in-process gRPC server, with real MLflow agents logged from code (tests/support/agent_code.py)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

import grpc
import pytest

from podium_api.v1 import worker_pb2_grpc
from services.common.errors import Unauthenticated, Unavailable
from services.router.backends import WorkerPool
from services.router.prediction_stream import PredictionStream
from services.router.results import StreamRequired
from services.worker.core import CallerCheck, Predictor
from services.worker.grpc_api import WorkerServicer
from tests.support import agent_models

TOKEN = "router-credential"
CREDENTIAL = (("authorization", f"Bearer {TOKEN}"),)
REQUEST = {"input": [{"role": "user", "content": "one two three"}], "custom_inputs": {"k": 1}}


@pytest.fixture(scope="module")
def responses_agent(tmp_path_factory):
    import mlflow

    path = tmp_path_factory.mktemp("agent") / "m"
    mlflow.pyfunc.save_model(str(path), python_model=str(agent_models.AGENT_CODE), model_config={"kind": "responses"},
                             pip_requirements=["mlflow"])
    mlflow.tracing.disable()   # the agent traces each call: nothing to export from these tests
    yield mlflow.pyfunc.load_model(str(path))
    mlflow.tracing.enable()


class _Worker:
    def __init__(self, model, queue_limit: int = 8):
        self.predictor = Predictor(model, 2, queue_limit, CallerCheck(hashlib.sha256(TOKEN.encode()).hexdigest()))
        self.server = grpc.aio.server()
        worker_pb2_grpc.add_WorkerServicer_to_server(WorkerServicer(self.predictor), self.server)
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.pool = WorkerPool(TOKEN)

    async def __aenter__(self):
        await self.server.start()
        return self

    async def __aexit__(self, *exc):
        await self.pool.close()
        await self.server.stop(grace=None)
        self.predictor.close()


async def test_events_are_what_the_model_yields_in_process(responses_agent):
    async with _Worker(responses_agent) as worker:
        body = json.dumps({**REQUEST, "stream": True}).encode()
        first, rest = await worker.pool.open_events(worker.address, body, "application/json", 10)
        events = [json.loads(first.data)] + [json.loads(e.data) async for e in rest]
        assert events == agent_models.in_process_stream(responses_agent, REQUEST)
        assert worker.pool.in_flight[worker.address] == 0


async def test_a_predict_item_asking_to_stream_is_sent_to_predict_events(responses_agent):
    async with _Worker(responses_agent) as worker:
        stream = PredictionStream(grpc.aio.insecure_channel(worker.address), CREDENTIAL, worker.address)
        with pytest.raises(StreamRequired):
            await stream.predict(json.dumps({**REQUEST, "stream": True}).encode(), "application/json", 10)
        answer = await stream.predict(json.dumps(REQUEST).encode(), "application/json", 10)
        assert (answer.http_status, answer.body.decode()) == agent_models.scoring_server_answer(responses_agent, REQUEST)
        metadata = await worker.pool.metadata(worker.address, 10)
        assert (metadata.task, metadata.is_streaming) == ("agent/v1/responses", True)


async def test_the_first_event_comes_while_the_model_still_runs(responses_agent, tmp_path):
    gate = tmp_path / "gate"
    request = {**REQUEST, "custom_inputs": {"gate": str(gate)}, "stream": True}
    async with _Worker(responses_agent) as worker:
        started = time.monotonic()
        first, rest = await worker.pool.open_events(worker.address, json.dumps(request).encode(),
                                                    "application/json", 30)
        assert json.loads(first.data)["delta"] == "echo: " and time.monotonic() - started < 5
        gate.touch()
        assert len([e async for e in rest]) == 4


async def test_leaving_early_frees_the_workers_slot(responses_agent, tmp_path):
    gate = tmp_path / "gate"
    request = json.dumps({**REQUEST, "custom_inputs": {"gate": str(gate)}, "stream": True}).encode()
    async with _Worker(responses_agent, queue_limit=1) as worker:
        first, rest = await worker.pool.open_events(worker.address, request, "application/json", 30)
        with pytest.raises(Unavailable):   # its one slot is taken while the stream runs
            await worker.pool.open_events(worker.address, request, "application/json", 30)
        await rest.aclose()
        assert worker.pool.in_flight[worker.address] == 0
        gate.touch()

        again, deadline = None, time.monotonic() + 10
        while again is None and time.monotonic() < deadline:   # the caller left: the slot comes back
            try:
                again = await worker.pool.open_events(worker.address, json.dumps({**REQUEST, "stream": True}).encode(),
                                                      "application/json", 10)
            except Unavailable:
                await asyncio.sleep(0.01)
        assert again is not None and json.loads(again[0].data)["delta"] == "echo: "
        await again[1].aclose()


async def test_a_bad_request_is_the_first_events_error(responses_agent):
    async with _Worker(responses_agent) as worker:
        first, rest = await worker.pool.open_events(worker.address, b'{"input": "not items", "stream": true}',
                                                    "application/json", 10)
        assert first.http_status == 400 and json.loads(first.data)["error_code"]
        await rest.aclose()


async def test_a_stranger_gets_no_events(responses_agent):
    async with _Worker(responses_agent) as worker:
        stranger = WorkerPool("not-the-router")
        with pytest.raises(Unauthenticated):
            await stranger.open_events(worker.address, json.dumps({**REQUEST, "stream": True}).encode(),
                                       "application/json", 10)
        await stranger.close()


async def test_concurrent_streams_each_get_their_own_events(responses_agent):
    async with _Worker(responses_agent) as worker:
        async def stream(i: int) -> list:
            request = {"input": [{"role": "user", "content": f"caller {i} here"}], "stream": True}
            first, rest = await worker.pool.open_events(worker.address, json.dumps(request).encode(),
                                                        "application/json", 30)
            return [json.loads(first.data)] + [json.loads(e.data) async for e in rest]
        answers = await asyncio.gather(*(stream(i) for i in range(6)))   # more streams than predict threads
        for i, events in enumerate(answers):
            assert events == agent_models.in_process_stream(
                responses_agent, {"input": [{"role": "user", "content": f"caller {i} here"}]})
        assert worker.pool.in_flight[worker.address] == 0
