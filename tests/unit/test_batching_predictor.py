"""The worker's Predictor with batching on, in-process, with real MLflow models: concurrent requests get
byte for byte the answers they get unbatched, in every input format; what must not merge does not; a bad
request inside a batch fails alone, with its unbatched error."""

from __future__ import annotations

import asyncio
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from services.common.tensors import raw_from_array
from services.worker.core import CallerCheck, Predictor
from tests.support.batch_model import rows_per_call, save_row_recorder

TOKEN = "router-credential"
CALLERS = CallerCheck(hashlib.sha256(TOKEN.encode()).hexdigest())
JSON = "application/json"
COLUMNS = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def sklearn_pyfunc(tmp_path_factory):
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(60, 4)), columns=COLUMNS)
    labels = (frame.a + frame.b > 0).astype(int) + (frame.c > 0.5).astype(int)
    model = LogisticRegression(max_iter=300).fit(frame, labels)
    path = tmp_path_factory.mktemp("sklearn") / "model"
    mlflow.sklearn.save_model(model, str(path), signature=infer_signature(frame, model.predict(frame)))
    return mlflow.pyfunc.load_model(str(path)), frame


@pytest.fixture
def recorder(tmp_path):
    import mlflow

    log_path = str(tmp_path / "rows.log")
    save_row_recorder(str(tmp_path / "model"), log_path)
    return mlflow.pyfunc.load_model(str(tmp_path / "model")), log_path


def _bodies(frame: pd.DataFrame) -> list[bytes]:
    """Requests of 1-3 rows in each MLflow JSON format."""
    bodies = []
    for start, rows in ((0, 1), (1, 2), (3, 1), (4, 3), (7, 1), (8, 2)):
        part = frame.iloc[start:start + rows]
        records = part.to_dict(orient="records")
        bodies += [
            {"dataframe_split": part.to_dict(orient="split")},
            {"dataframe_split": {"columns": COLUMNS, "data": part.values.tolist()}},
            {"dataframe_records": records},
            {"instances": records},
            {"inputs": {c: part[c].tolist() for c in COLUMNS}},
        ]
    return [json.dumps(b).encode() for b in bodies]


async def test_concurrent_json_requests_get_their_unbatched_answers(sklearn_pyfunc):
    model, frame = sklearn_pyfunc
    batched = Predictor(model, 2, 256, CALLERS, max_batch_size=8, max_batch_wait_ms=20)
    alone = Predictor(model, 2, 256, CALLERS, max_batch_size=1)
    bodies = _bodies(frame)
    calls_before, requests_before = _batch_metric("count"), _batch_metric("sum")
    answers = await asyncio.gather(*(batched.predict(TOKEN, body, JSON) for body in bodies))
    stats = batched.batch_stats
    # podium_worker_batch_size: one observation per model call, of the requests it scored
    assert (_batch_metric("count") - calls_before, _batch_metric("sum") - requests_before) == \
        (stats.batches, len(bodies))
    expected = [await alone.predict(TOKEN, body, JSON) for body in bodies]
    assert [a.http_status for a in answers] == [200] * len(bodies)
    assert answers == expected            # status, content type and body, byte for byte
    assert stats.requests == len(bodies) and stats.batches < len(bodies) and stats.largest_rows > 1
    assert stats.largest_rows <= 8 and stats.fallbacks == 0
    assert alone.batch_stats is None


def _batch_metric(which: str) -> float:
    from services.worker.metrics import REGISTRY

    return REGISTRY.get_sample_value(f"podium_worker_batch_size_{which}") or 0.0


async def test_concurrent_infer_requests_get_their_unbatched_tensors(sklearn_pyfunc):
    model, frame = sklearn_pyfunc
    batched = Predictor(model, 2, 256, CALLERS, max_batch_size=8, max_batch_wait_ms=20)
    alone = Predictor(model, 2, 256, CALLERS, max_batch_size=1)
    requests = [[raw_from_array(c, frame[c].to_numpy()[start:start + rows]) for c in COLUMNS]
                for start, rows in ((0, 1), (1, 3), (4, 1), (5, 2), (7, 1), (8, 1))]
    answers = await asyncio.gather(*(batched.infer(TOKEN, inputs, [], {}) for inputs in requests))
    assert list(answers) == [await alone.infer(TOKEN, inputs, [], {}) for inputs in requests]
    assert answers[1][0].shape == (3,)
    assert batched.batch_stats.largest_rows > 1 and batched.batch_stats.fallbacks == 0


async def test_a_bad_request_in_a_batch_fails_alone_with_its_unbatched_error(sklearn_pyfunc):
    model, frame = sklearn_pyfunc
    batched = Predictor(model, 2, 256, CALLERS, max_batch_size=8, max_batch_wait_ms=50)
    alone = Predictor(model, 2, 256, CALLERS, max_batch_size=1)
    good = [json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [row]}}).encode()
            for row in frame.values[:5].tolist()]
    # NaN parses as a float like its neighbours' values, so it merges; scikit-learn then refuses the batch.
    bad = b'{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[NaN, 1.0, 2.0, 3.0]]}}'
    bodies = good[:2] + [bad] + good[2:]
    answers = await asyncio.gather(*(batched.predict(TOKEN, body, JSON) for body in bodies))
    expected = [await alone.predict(TOKEN, body, JSON) for body in bodies]
    assert answers == expected
    assert [a.http_status for a in answers] == [200, 200, 400, 200, 200, 200]
    assert json.loads(answers[2].body)["error_code"] == "BAD_REQUEST"
    assert batched.batch_stats.fallbacks == 1


async def test_a_bad_infer_request_in_a_batch_fails_alone(sklearn_pyfunc):
    model, frame = sklearn_pyfunc
    batched = Predictor(model, 2, 256, CALLERS, max_batch_size=8, max_batch_wait_ms=50)
    good = [raw_from_array(c, frame[c].to_numpy()[:1]) for c in COLUMNS]
    bad = [raw_from_array(c, np.array([np.nan]) if c == "a" else frame[c].to_numpy()[:1]) for c in COLUMNS]
    answers = await asyncio.gather(*(batched.infer(TOKEN, inputs, [], {}) for inputs in (good, bad, good)),
                                   return_exceptions=True)
    assert answers[0] == answers[2] == await Predictor(model, 1, 8, CALLERS).infer(TOKEN, good, [], {})
    with pytest.raises(Exception) as alone_error:
        await Predictor(model, 1, 8, CALLERS).infer(TOKEN, bad, [], {})
    assert type(answers[1]) is type(alone_error.value) and answers[1].message == alone_error.value.message


async def test_requests_with_other_params_or_columns_are_not_merged(recorder):
    model, log_path = recorder
    batched = Predictor(model, 2, 256, CALLERS, max_batch_size=8, max_batch_wait_ms=100)

    def split(x, params=None, columns=("x",)):
        body = {"dataframe_split": {"columns": list(columns), "data": [[x] * len(columns)]}}
        return json.dumps({**body, "params": params} if params is not None else body).encode()

    bodies = [split(1.0), split(2.0, {"scale": 3.0}), split(3.0), split(4.0, {"scale": 3.0}),
              split(5.0, columns=("x", "y")), split(6.0, {"scale": 5.0}), split(7.0, columns=("x", "y"))]
    answers = await asyncio.gather(*(batched.predict(TOKEN, body, JSON) for body in bodies))
    assert [json.loads(a.body) for a in answers] == [
        {"predictions": [{"x": x}]} for x in (2.0, 12.0, 6.0, 24.0, 10.0, 60.0, 14.0)]
    # One call per kind of request: no params (2 rows), scale 3 (2), two columns (2), scale 5 (1).
    assert sorted(rows_per_call(log_path)) == [1, 2, 2, 2]


async def test_a_model_whose_answer_is_not_per_row_is_scored_request_by_request(tmp_path):
    import mlflow

    class Total(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return float(model_input["x"].sum())      # one number for the whole input

    mlflow.pyfunc.save_model(str(tmp_path / "total"), python_model=Total())
    model = mlflow.pyfunc.load_model(str(tmp_path / "total"))
    batched = Predictor(model, 2, 256, CALLERS, max_batch_size=8, max_batch_wait_ms=50)
    bodies = [json.dumps({"dataframe_records": [{"x": x}, {"x": 1.0}]}).encode() for x in (1.0, 2.0, 3.0)]
    answers = await asyncio.gather(*(batched.predict(TOKEN, body, JSON) for body in bodies))
    assert [json.loads(a.body) for a in answers] == [{"predictions": 2.0}, {"predictions": 3.0},
                                                     {"predictions": 4.0}]
    assert batched.batch_stats.fallbacks == 1


async def test_batched_requests_still_need_the_router_credential(sklearn_pyfunc):
    from services.common.errors import Unauthenticated

    batched = Predictor(sklearn_pyfunc[0], 1, 8, CALLERS, max_batch_size=8)
    with pytest.raises(Unauthenticated):
        await batched.predict("someone else", b'{"inputs": {"a": [1.0]}}', JSON)


async def test_every_output_type_splits_into_the_unbatched_answers(tmp_path):
    import mlflow
    from mlflow.models import infer_signature

    class Shapes(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            x = model_input["x"].to_numpy()
            kind = (params or {}).get("kind", "array")
            if kind == "series":
                return pd.Series(x * 2, name="y")
            if kind == "strings":
                return [f"row {v:g}" for v in x]
            if kind == "frame":
                return pd.DataFrame({"y": x * 3, "label": [f"l{v:g}" for v in x], "n": (x * 10).astype(int)})
            if kind == "matrix":
                return np.stack([x, x / 3], axis=1)
            return x * 1.5

    frame = pd.DataFrame({"x": [1.0, 2.0]})
    mlflow.pyfunc.save_model(str(tmp_path / "shapes"), python_model=Shapes(),
                             signature=infer_signature(frame, params={"kind": "array"}))
    model = mlflow.pyfunc.load_model(str(tmp_path / "shapes"))
    batched = Predictor(model, 2, 256, CALLERS, max_batch_size=16, max_batch_wait_ms=30)
    alone = Predictor(model, 2, 256, CALLERS, max_batch_size=1)
    bodies = [json.dumps({"dataframe_records": [{"x": x + i / 7} for i in range(rows)], "params": {"kind": kind}}).encode()
              for kind in ("array", "series", "strings", "frame", "matrix") for x, rows in ((1.0, 1), (2.5, 2), (4.0, 3))]
    answers = await asyncio.gather(*(batched.predict(TOKEN, body, JSON) for body in bodies))
    assert answers == [await alone.predict(TOKEN, body, JSON) for body in bodies]
    assert batched.batch_stats.batches == 5 and batched.batch_stats.fallbacks == 0   # one per output kind
