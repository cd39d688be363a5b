"""`databricks_options: {"return_trace": true}` on a replica whose tracking server is remote (a real `mlflow server`):
MLflow's tracing stays as it is, every traced call exported to the server as MLflow exports it, and a call that asks
for its trace also gets it in `databricks_output.trace` (services/worker/generative.py), plain and streamed. The
replica's Predictor runs in this process against a ResponsesAgent logged from code; the server is a process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
import sys

import pytest

from services.worker import generative
from services.worker.core import CallerCheck, Predictor
from tests.support import agent_models
from tests.support.stack import wait_for

pytestmark = pytest.mark.stack

TOKEN = "router-credential"
REQUEST = {"input": [{"role": "user", "content": "one two three"}]}
ASKING = {**REQUEST, "databricks_options": {"return_trace": True}}


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    """`mlflow server` on port 0, one worker; its URL as it reports it."""
    root = tmp_path_factory.mktemp("mlflow-server")
    log = root / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
             "--default-artifact-root", (root / "artifacts").as_uri(), "--host", "127.0.0.1", "--port", "0",
             "--workers", "1"], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        def url():
            if process.poll() is not None:
                raise AssertionError(f"mlflow server exited: {log.read_text()[-3000:]}")
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log.read_text())
            return found and found.group(1)
        yield wait_for(url, timeout_s=120, what="mlflow server to listen")
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def remote_replica(tracking_server, tmp_path, monkeypatch):
    """The ResponsesAgent loaded as a replica loads it, its tracing set up as a replica's is at start."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    mlflow.set_tracking_uri(tracking_server)
    mlflow.tracing.reset()   # MLflow's provider built afresh for this tracking server
    mlflow.pyfunc.save_model(str(tmp_path / "m"), python_model=str(agent_models.AGENT_CODE),
                             model_config={"kind": "responses"}, pip_requirements=["mlflow"])
    model = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    assert not generative.stop_local_trace_export()   # remote: exports stay on
    assert generative.collects_traces(model)
    predictor = Predictor(model, 2, 8, CallerCheck(hashlib.sha256(TOKEN.encode()).hexdigest()))
    yield model, predictor, mlflow.MlflowClient(tracking_server)
    predictor.close()
    generative._collected = generative._taker = None
    mlflow.tracing.reset()
    mlflow.set_tracking_uri(None)


def _server_trace(client, trace_id: str):
    def found():
        try:
            return client.get_trace(trace_id)
        except Exception:   # noqa: BLE001 - not exported yet (MLflow exports in the background)
            return None
    return wait_for(found, timeout_s=30, what=f"trace {trace_id} on the tracking server")


def test_return_trace_with_a_remote_tracking_server(remote_replica):
    from mlflow.entities import Trace

    import mlflow

    model, predictor, client = remote_replica
    status, expected = agent_models.scoring_server_answer(model, ASKING)   # MLflow's own answers, in-process
    plain_expected = agent_models.scoring_server_answer(model, REQUEST)[1]
    stream_expected = agent_models.in_process_stream(model, REQUEST)
    mlflow.flush_trace_async_logging()
    exported_before = len(client.search_traces(locations=["0"]))

    async def calls():
        asking = await predictor.predict(TOKEN, json.dumps(ASKING).encode(), "application/json")
        plain = await predictor.predict(TOKEN, json.dumps(REQUEST).encode(), "application/json")
        stream = [json.loads(e.data) async for e in predictor.predict_events(
            TOKEN, json.dumps({**ASKING, "stream": True}).encode(), "application/json")]
        return asking, plain, stream
    asking, plain, stream = asyncio.run(calls())

    body = json.loads(asking.body)
    assert asking.http_status == 200 and asking.body.startswith(expected.rstrip()[:-1].encode())
    assert {k: v for k, v in body.items() if k != "databricks_output"} == json.loads(expected)
    trace = Trace.from_dict(body["databricks_output"]["trace"])
    root = next(span for span in trace.data.spans if span.parent_id is None)
    assert root.name == "predict" and root.inputs["request"]["input"][0]["content"] == "one two three"
    assert trace.info.state.value == "OK" and trace.info.execution_duration is not None
    assert plain.body.decode() == plain_expected   # no databricks_output

    assert stream[:-1] == stream_expected
    streamed = Trace.from_dict(stream[-1]["databricks_output"]["trace"])
    assert next(s for s in streamed.data.spans if s.parent_id is None).name == "predict_stream"

    # Each trace answered is the one MLflow exported to the server, as it exports every traced call.
    for answered in (trace, streamed):
        exported = _server_trace(client, answered.info.trace_id)
        assert [s.name for s in exported.data.spans] == [s.name for s in answered.data.spans]
    assert not generative._collected   # popped when answered
    mlflow.flush_trace_async_logging()   # the plain call's trace is exported too, as MLflow exports it
    assert len(client.search_traces(locations=["0"])) == exported_before + 3
