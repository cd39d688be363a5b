"""A stream's first step (services/worker/core.py, generative.py) runs on the event loop only where the replica
is otherwise idle and that step is typically fast; every step runs in one context, whichever thread runs it;
the events are the same either way; a streaming model's predict threads run at a lower priority."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading

import pytest

from services.worker import core
from services.worker.core import CallerCheck, Predictor
from services.worker.generative import STREAM_NICENESS

TOKEN = "router-credential"
# Far above these models' first steps, however busy the machine: whether a step runs inline is then decided by
# what these tests do, not by the machine's load; the slow model sleeps three times as long.
THRESHOLD_MS = 200.0


@pytest.fixture(autouse=True)
def threshold(monkeypatch):
    monkeypatch.setattr(core, "INLINE_FIRST_MAX_MS", THRESHOLD_MS)


@pytest.fixture(scope="module")
def thread_model(tmp_path_factory):
    """Yields, per word of its prompt, the thread that ran that step; its first word, when a number, is how many
    ms its first step sleeps. A context variable is set before its first yield and reset after its last."""
    import mlflow

    class ThreadNames(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return {"text": "no stream"}

        def predict_stream(self, context, model_input, params=None):
            import contextvars
            import os
            import threading
            import time

            words = str(model_input.get("prompt", "")).split()
            variable = contextvars.ContextVar("spans_yields")
            token = variable.set("set")
            if words and words[0].replace(".", "").isdigit():
                time.sleep(float(words[0]) / 1000)
            for word in words:
                yield {"word": word, "thread": threading.current_thread().name, "variable": variable.get(),
                       "niceness": os.getpriority(os.PRIO_PROCESS, threading.get_native_id())}
            variable.reset(token)   # raises ValueError where a later step runs in another context

    path = tmp_path_factory.mktemp("threads") / "m"
    mlflow.pyfunc.save_model(str(path), python_model=ThreadNames(), pip_requirements=["mlflow"])
    return mlflow.pyfunc.load_model(str(path))


def _predictor(model) -> Predictor:
    return Predictor(model, 2, 8, CallerCheck(hashlib.sha256(TOKEN.encode()).hexdigest()))


async def _events(predictor: Predictor, prompt: str) -> list[dict]:
    body = json.dumps({"prompt": prompt, "stream": True}).encode()
    return [json.loads(event.data) async for event in predictor.predict_events(TOKEN, body, "application/json")]


def _threads(events: list[dict]) -> list[str]:
    return [e["thread"] for e in events]


async def test_a_fast_first_step_runs_on_the_loop_once_it_is_known_to_be_fast(thread_model):
    predictor = _predictor(thread_model)
    loop_thread = threading.current_thread().name
    try:
        first = await _events(predictor, "a b c")   # nothing known yet: a predict thread
        second = await _events(predictor, "a b c")
    finally:
        predictor.close()
    assert loop_thread not in _threads(first)
    assert _threads(second)[0] == loop_thread and loop_thread not in _threads(second)[1:]
    assert [e["word"] for e in first] == [e["word"] for e in second] == ["a", "b", "c"]
    assert all(e["variable"] == "set" for e in first + second)   # the model's context spans its yields
    # A streaming model's predict threads yield the CPU to the work that delivers its events.
    ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert {e["niceness"] for e in first + second[1:]} == {min(ours + STREAM_NICENESS, 19)}
    assert second[0]["niceness"] == ours


async def test_a_slow_first_step_never_runs_on_the_loop(thread_model):
    predictor = _predictor(thread_model)
    loop_thread = threading.current_thread().name
    slow = f"{THRESHOLD_MS * 3:g} x"
    try:
        runs = [await _events(predictor, slow) for _ in range(3)]
        assert all(loop_thread not in _threads(events) for events in runs)
        # Fast again: one slow step counted at once, fast ones bring the typical time down slowly.
        fast = [await _events(predictor, "a b") for _ in range(40)]
    finally:
        predictor.close()
    assert loop_thread not in _threads(fast[0])
    assert _threads(fast[-1])[0] == loop_thread


async def test_a_stream_while_another_runs_starts_in_a_predict_thread(thread_model):
    predictor = _predictor(thread_model)
    loop_thread = threading.current_thread().name
    try:
        await _events(predictor, "warm up")
        body = json.dumps({"prompt": "one two three", "stream": True}).encode()
        open_stream = predictor.predict_events(TOKEN, body, "application/json")
        first_event = json.loads((await open_stream.__anext__()).data)   # alone: on the loop
        concurrent = await _events(predictor, "a b")
        await open_stream.aclose()
    finally:
        predictor.close()
    assert first_event["thread"] == loop_thread
    assert loop_thread not in _threads(concurrent)


async def test_leaving_after_an_inline_first_event_closes_the_model(thread_model):
    predictor = _predictor(thread_model)
    try:
        await _events(predictor, "warm up")
        body = json.dumps({"prompt": "one two three", "stream": True}).encode()
        stream = predictor.predict_events(TOKEN, body, "application/json")
        await stream.__anext__()
        await stream.aclose()
        assert predictor._streams == 0
        assert [e["word"] for e in await _events(predictor, "again")] == ["again"]
    finally:
        predictor.close()
    await asyncio.sleep(0)
