"""The worker's direct path for numeric rows: every answer it gives is byte for byte the one MLflow's scoring
server gives for the same request, it takes the requests it claims to take, and it leaves every other
request and every other kind of model to MLflow."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest

from services.worker.core import CallerCheck, Predictor
from services.worker.direct_scoring import DirectScorer, is_plain_json

COLUMNS = ["a", "b", "c", "d"]
TOKEN = "router-credential"


def _frame(seed: int = 5, rows: int = 80) -> pd.DataFrame:
    return pd.DataFrame(np.random.default_rng(seed).normal(size=(rows, 4)), columns=COLUMNS)


def _save(tmp_path_factory, name: str, model, frame, prediction, **kwargs):
    import mlflow
    from mlflow.models import infer_signature

    path = tmp_path_factory.mktemp(name) / "model"
    # Requirements given: inferring them costs seconds per model and is not what this tests.
    mlflow.sklearn.save_model(model, str(path), signature=infer_signature(frame, prediction),
                              pip_requirements=["scikit-learn"], **kwargs)
    return mlflow.pyfunc.load_model(str(path))


@pytest.fixture(scope="module")
def direct_models(tmp_path_factory) -> dict:
    """Models the direct path takes: a classifier, a regressor fitted on numpy, a pipeline, an ensemble and
    a classifier answering probabilities."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame = _frame()
    labels = (frame.a + frame.b > 0).astype(int) + (frame.c > 0.5).astype(int)
    target = frame.a * 3.5 - frame.d / 7
    classifier = LogisticRegression(max_iter=300).fit(frame, labels)
    regressor = LinearRegression().fit(frame.values, target)          # no feature names: positions only
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(frame, labels)
    forest = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(frame, labels)
    return {
        "classifier": _save(tmp_path_factory, "c", classifier, frame, classifier.predict(frame)),
        "regressor": _save(tmp_path_factory, "r", regressor, frame, regressor.predict(frame.values)),
        "pipeline": _save(tmp_path_factory, "p", pipeline, frame, pipeline.predict(frame)),
        "forest": _save(tmp_path_factory, "f", forest, frame, forest.predict(frame),
                        skops_trusted_types=["sklearn.tree._tree.Tree"]),
        "probabilities": _save(tmp_path_factory, "pp", classifier, frame, classifier.predict_proba(frame),
                               pyfunc_predict_fn="predict_proba"),
    }


def _mlflow_answer(model, body: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    try:
        result = scoring_server.invocations(body, content_type, model, model.metadata.get_input_schema())
    except MlflowException as exc:
        return exc.get_http_status_code(), b""
    return result.status, result.response.encode()


def _float_rows(count: int, seed: int) -> list[list[float]]:
    """Rows with awkward floats too: huge, tiny, negative zero, integral floats."""
    rng = np.random.default_rng(seed)
    rows = (rng.normal(size=(count, 4)) * rng.choice([1e-30, 1e-5, 1.0, 1e5, 1e30], size=(count, 4))).tolist()
    rows[0][0], rows[-1][-1] = -0.0, 3.0
    return rows


def _taken_bodies(seed: int) -> list[bytes]:
    rows = _float_rows(1 + seed % 7, seed)
    shuffled = ["c", "a", "d", "b"]
    return [json.dumps(b).encode() for b in (
        {"dataframe_split": {"columns": COLUMNS, "data": rows}},
        {"dataframe_split": {"columns": shuffled, "data": [[r[COLUMNS.index(c)] for c in shuffled] for r in rows]}},
        {"dataframe_records": [dict(zip(COLUMNS, r)) for r in rows]},
        {"dataframe_records": [dict(zip(reversed(COLUMNS), reversed(r))) for r in rows]},
    )]


@pytest.mark.parametrize("name", ["classifier", "regressor", "pipeline", "forest", "probabilities"])
def test_direct_answers_are_mlflows_byte_for_byte(direct_models, name):
    model = direct_models[name]
    scorer = DirectScorer.for_model(model)
    assert scorer is not None, f"the direct path should take the {name}"
    answered = 0
    for seed in range(12):
        for body in _taken_bodies(seed):
            direct, expected = scorer.answer_body(body), _mlflow_answer(model, body)
            if direct is None:   # the model refused the matrix (a forest's float32 overflows): so does MLflow
                assert expected[0] != 200, body
            else:
                answered += 1
                assert (200, direct) == expected
    assert answered >= 24


@pytest.mark.parametrize("body", [
    {"dataframe_split": {"columns": COLUMNS, "data": [[1, 2.0, 3.0, 4.0]]}},        # an integer: MLflow decides
    {"dataframe_split": {"columns": COLUMNS, "data": [[True, 2.0, 3.0, 4.0]]}},
    {"dataframe_split": {"columns": COLUMNS, "data": [[None, 2.0, 3.0, 4.0]]}},
    {"dataframe_split": {"columns": COLUMNS, "data": [["1.0", 2.0, 3.0, 4.0]]}},
    {"dataframe_split": {"columns": COLUMNS, "data": [[1.0, 2.0, 3.0]]}},
    {"dataframe_split": {"columns": COLUMNS[:3], "data": [[1.0, 2.0, 3.0]]}},
    {"dataframe_split": {"columns": COLUMNS + ["e"], "data": [[1.0, 2.0, 3.0, 4.0, 5.0]]}},
    {"dataframe_split": {"columns": ["a", "a", "c", "d"], "data": [[1.0, 2.0, 3.0, 4.0]]}},
    {"dataframe_split": {"columns": COLUMNS, "data": [[1.0, 2.0, 3.0, 4.0]], "index": [7]}},
    {"dataframe_split": {"columns": COLUMNS, "data": []}},
    {"dataframe_records": [{"a": 1.0, "b": 2.0, "c": 3.0}]},
    {"dataframe_records": [{"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0}]},
    {"dataframe_records": [{"a": 1.0, "b": 2.0, "c": 3.0, "d": [4.0]}]},
    {"dataframe_records": []},
    {"inputs": [[1.0, 2.0, 3.0, 4.0]]},
    {"instances": [{"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}]},
    {"dataframe_split": {"columns": COLUMNS, "data": [[1.0, 2.0, 3.0, 4.0]]}, "params": {"x": 1}},
    [1.0, 2.0, 3.0, 4.0],
])
def test_what_the_direct_path_leaves_to_mlflow(direct_models, body):
    assert DirectScorer.for_model(direct_models["classifier"]).answer_body(json.dumps(body).encode()) is None


def test_bodies_only_mlflow_parses_are_left_to_it(direct_models):
    scorer = DirectScorer.for_model(direct_models["classifier"])
    nan = b'{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[NaN, 1.0, 2.0, 3.0]]}}'
    assert scorer.answer_body(nan) is None
    assert scorer.answer_body('{"dataframe_records": []}'.encode("utf-16")) is None
    assert scorer.answer_body(b"{not json") is None


def test_models_only_mlflow_scores_exactly_get_no_direct_path(tmp_path_factory):
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame = _frame(seed=9)
    labels = (frame.a > 0).astype(int)
    by_name = make_pipeline(make_column_transformer((StandardScaler(), ["a", "b"]), remainder="passthrough"),
                            LogisticRegression()).fit(frame, labels)
    ints = frame.round().astype("int64")
    on_ints = LogisticRegression().fit(ints, labels)
    assert DirectScorer.for_model(_save(tmp_path_factory, "ct", by_name, frame, by_name.predict(frame))) is None
    assert DirectScorer.for_model(_save(tmp_path_factory, "ints", on_ints, ints, on_ints.predict(ints))) is None


def test_content_types_read_as_mlflow_reads_them():
    assert is_plain_json("application/json")
    assert is_plain_json("application/json; charset=UTF-8")
    assert not is_plain_json("application/json; charset=latin-1")
    assert not is_plain_json("application/json; format=pandas-split")
    assert not is_plain_json("Application/JSON")
    assert not is_plain_json("text/csv")


def test_predictor_answers_directly_and_through_mlflow_alike(direct_models):
    """The worker's own scoring: a float request (direct) and the same rows as integers (MLflow's path) get
    the same answer when the integers are the floats' values, and MLflow's error stays MLflow's."""
    import asyncio

    model = direct_models["classifier"]
    callers = CallerCheck(hashlib.sha256(TOKEN.encode()).hexdigest())

    async def run():
        predictor = Predictor(model, threads=2, queue_limit=8, callers=callers)
        try:
            as_floats = json.dumps({"dataframe_records": [{"a": 1.0, "b": -2.0, "c": 0.5, "d": 3.0}]}).encode()
            bad = json.dumps({"dataframe_records": [{"a": "x", "b": -2.0, "c": 0.5, "d": 3.0}]}).encode()
            direct = await predictor.predict(TOKEN, as_floats, "application/json")
            refused = await predictor.predict(TOKEN, bad, "application/json")
            return direct, refused
        finally:
            predictor.close()

    direct, refused = asyncio.run(run())
    status, expected = _mlflow_answer(model, json.dumps(
        {"dataframe_records": [{"a": 1.0, "b": -2.0, "c": 0.5, "d": 3.0}]}).encode())
    assert (direct.http_status, direct.body) == (status, expected)
    assert refused.http_status == 400 and json.loads(refused.body)["error_code"] == "BAD_REQUEST"
    assert math.isfinite(json.loads(direct.body)["predictions"][0])
