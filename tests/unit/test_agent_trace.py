"""`databricks_options: {"return_trace": true}`: a replica whose trace exports are off (a local tracking store)
collects the MLflow trace of the requests that ask for it, and only theirs, and answers it in
`databricks_output.trace` (services/worker/generative.py), against a real ResponsesAgent logged from code."""

from __future__ import annotations

import asyncio
import hashlib
import json

import orjson
import pytest

from services.worker import generative
from services.worker.core import CallerCheck, Predictor
from tests.support import agent_models

TOKEN = "router-credential"
REQUEST = {"input": [{"role": "user", "content": "one two three"}], "custom_inputs": {"k": 1}}
ASKING = {**REQUEST, "databricks_options": {"return_trace": True}}


@pytest.mark.parametrize("answer, want", [
    pytest.param(b'{"a": 1}', b'{"a": 1, "databricks_output": {"trace":{"x":1}}}', id="after the last member"),
    pytest.param(b'{"a": {"b": [1]}}\n', b'{"a": {"b": [1]}, "databricks_output": {"trace":{"x":1}}}',
                 id="trailing whitespace dropped"),
    pytest.param(b'{}', b'{"databricks_output": {"trace":{"x":1}}}', id="an empty object"),
    pytest.param(b'{ }', b'{"databricks_output": {"trace":{"x":1}}}', id="an empty object with a space"),
    pytest.param(b'[1, 2]', b'[1, 2]', id="a list is left as it is"),
    pytest.param(b'"text"', b'"text"', id="a string is left as it is"),
])
def test_with_databricks_output(answer, want):
    assert generative.with_databricks_output(answer, {"trace": {"x": 1}}) == want
    if want != answer:
        assert json.loads(want)["databricks_output"] == {"trace": {"x": 1}}


@pytest.mark.parametrize("body, content_type, want", [
    pytest.param(ASKING, "application/json", True, id="asks"),
    pytest.param(ASKING, "application/json; charset=utf-8", True, id="with a charset"),
    pytest.param(REQUEST, "application/json", False, id="no options"),
    pytest.param({**REQUEST, "databricks_options": {"return_trace": False}}, "application/json", False, id="false"),
    pytest.param({**REQUEST, "databricks_options": {"return_trace": "true"}}, "application/json", False,
                 id="not a boolean"),
    pytest.param({**REQUEST, "databricks_options": True}, "application/json", False, id="options not an object"),
    pytest.param(ASKING, "text/csv", False, id="not JSON"),
    pytest.param(b'{"databricks_options": ', "application/json", False, id="malformed"),
    pytest.param([{"databricks_options": {"return_trace": True}}], "application/json", False, id="a list"),
])
def test_asks_trace(body, content_type, want):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    assert generative.asks_trace(raw, content_type) is want


@pytest.fixture(scope="module")
def responses_agent(tmp_path_factory):
    import mlflow

    path = tmp_path_factory.mktemp("agent") / "m"
    mlflow.pyfunc.save_model(str(path), python_model=str(agent_models.AGENT_CODE), model_config={"kind": "responses"},
                             pip_requirements=["mlflow"])
    return mlflow.pyfunc.load_model(str(path))


@pytest.fixture
def collecting(monkeypatch):
    """A replica's tracing as `stop_local_trace_export` leaves it with a local tracking store."""
    import mlflow

    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: "sqlite:///never-opened.db")
    assert generative.stop_local_trace_export()
    yield
    generative._collected = None
    mlflow.tracing.reset()   # MLflow's own provider again, for the tests that follow


def _predictor(model) -> Predictor:
    return Predictor(model, 2, 8, CallerCheck(hashlib.sha256(TOKEN.encode()).hexdigest()))


async def test_the_trace_of_a_call_that_asks_is_in_databricks_output(responses_agent, collecting):
    from mlflow.entities import Trace

    predictor = _predictor(responses_agent)
    try:
        answer = await predictor.predict(TOKEN, json.dumps(ASKING).encode(), "application/json")
    finally:
        predictor.close()
    assert answer.http_status == 200
    body = json.loads(answer.body)
    status, expected = agent_models.scoring_server_answer(responses_agent, ASKING)
    assert {k: v for k, v in body.items() if k != "databricks_output"} == json.loads(expected)
    assert answer.body.startswith(expected.rstrip()[:-1].encode())   # the model's answer, byte for byte
    trace = Trace.from_dict(body["databricks_output"]["trace"])   # what mlflow.genai.evaluate's helper reads
    root = next(span for span in trace.data.spans if span.parent_id is None)
    assert root.name == "predict" and root.inputs["request"]["input"][0]["content"] == "one two three"
    assert "echo: one two three" in json.dumps(root.outputs)
    assert trace.info.client_request_id and trace.info.state.value == "OK"
    assert not generative._collected   # popped when answered


async def test_a_call_that_does_not_ask_is_not_traced(responses_agent, collecting, monkeypatch):
    from mlflow.tracing.processor.inference_table import InferenceTableSpanProcessor

    started = []   # every span MLflow starts in this process, whoever asked
    on_start = InferenceTableSpanProcessor.on_start
    monkeypatch.setattr(InferenceTableSpanProcessor, "on_start",
                        lambda self, span, parent_context=None: (started.append(span.name), on_start(self, span,
                                                                                                    parent_context)))
    predictor = _predictor(responses_agent)
    try:
        plain, asking = await asyncio.gather(
            predictor.predict(TOKEN, json.dumps(REQUEST).encode(), "application/json"),
            predictor.predict(TOKEN, json.dumps(ASKING).encode(), "application/json"))
        alone = await predictor.predict(TOKEN, json.dumps(REQUEST).encode(), "application/json")
    finally:
        predictor.close()
    assert plain.body.decode() == alone.body.decode() == agent_models.scoring_server_answer(responses_agent,
                                                                                             REQUEST)[1]
    assert "databricks_output" in orjson.loads(asking.body)
    assert started == ["predict"]   # the asking call's one span only, though another ran beside it


async def test_return_trace_is_ignored_where_traces_are_not_collected(responses_agent):
    predictor = _predictor(responses_agent)   # a remote tracking server: MLflow's own tracing, untouched
    try:
        answer = await predictor.predict(TOKEN, json.dumps(ASKING).encode(), "application/json")
    finally:
        predictor.close()
    assert answer.body.decode() == agent_models.scoring_server_answer(responses_agent, ASKING)[1]


async def test_a_stream_that_asks_ends_with_its_trace(responses_agent, collecting):
    from mlflow.entities import Trace

    predictor = _predictor(responses_agent)
    try:
        asking = [json.loads(e.data) async for e in predictor.predict_events(
            TOKEN, json.dumps({**ASKING, "stream": True}).encode(), "application/json")]
        plain = [json.loads(e.data) async for e in predictor.predict_events(
            TOKEN, json.dumps({**REQUEST, "stream": True}).encode(), "application/json")]
    finally:
        predictor.close()
    assert plain == asking[:-1] == agent_models.in_process_stream(responses_agent, REQUEST)
    assert list(asking[-1]) == ["databricks_output"]
    trace = Trace.from_dict(asking[-1]["databricks_output"]["trace"])
    root = next(span for span in trace.data.spans if span.parent_id is None)
    assert root.name == "predict_stream" and root.inputs["request"]["input"][0]["content"] == "one two three"
    assert not generative._collected
