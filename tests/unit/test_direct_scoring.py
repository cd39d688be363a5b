"""The worker's direct path: every answer it gives is byte for byte the one MLflow's scoring server gives for
the same request, on a zoo of flavors (scikit-learn numeric and mixed-type, XGBoost, LightGBM, PyTorch,
custom pyfunc models with every column type and with params) and on random requests; it takes the ordinary
requests it claims to take; a merged batch's prediction is pyfunc's; and it leaves everything else to
MLflow. (tests/unit/test_direct_parse.py checks the DataFrame itself against MLflow's.)"""

from __future__ import annotations

import hashlib
import json
import logging
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.pyfunc import PythonModel

from services.worker import batch_merge
from services.worker.core import CallerCheck, Predictor
from services.worker.direct_frame import Column
from services.worker.direct_scoring import DirectScorer, is_plain_json
from tests.unit.test_direct_parse import requests as random_requests

COLUMNS = ["a", "b", "c", "d"]
TOKEN = "router-credential"
logging.getLogger("mlflow.models.utils").setLevel(logging.ERROR)   # every extra column ignored, logged
pytestmark = [pytest.mark.filterwarnings("ignore:Parsing dates in:UserWarning"),
              pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")]


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


def _mlflow_answer(model, body: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    try:
        result = scoring_server.invocations(body, content_type, model, model.metadata.get_input_schema())
    except MlflowException as exc:
        return exc.get_http_status_code(), b""
    except Exception:   # noqa: BLE001 - e.g. an answer NumpyEncoder cannot write: the worker says 400
        return 400, b""
    return result.status, result.response.encode()


# ---- the numeric scikit-learn models (handed the float matrix) ----

@pytest.fixture(scope="module")
def direct_models(tmp_path_factory) -> dict:
    """Numeric scikit-learn models: a classifier, a regressor fitted on numpy, a pipeline, an ensemble and
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


def _float_rows(count: int, seed: int) -> list[list[float]]:
    """Rows with awkward floats too: huge, tiny, negative zero, integral floats."""
    rng = np.random.default_rng(seed)
    rows = (rng.normal(size=(count, 4)) * rng.choice([1e-30, 1e-5, 1.0, 1e5, 1e30], size=(count, 4))).tolist()
    rows[0][0], rows[-1][-1] = -0.0, 3.0
    return rows


def _taken_bodies(seed: int) -> list[bytes]:
    rows = _float_rows(1 + seed % 7, seed)
    shuffled = ["c", "a", "d", "b"]
    as_ints = [[int(v) if abs(v) < 1e15 else v for v in row] for row in rows]
    return [json.dumps(b).encode() for b in (
        {"dataframe_split": {"columns": COLUMNS, "data": rows}},
        {"dataframe_split": {"columns": shuffled, "data": [[r[COLUMNS.index(c)] for c in shuffled] for r in rows]}},
        {"dataframe_split": {"columns": COLUMNS, "data": as_ints, "index": list(range(5, 5 + len(rows)))}},
        {"dataframe_records": [dict(zip(COLUMNS, r)) for r in rows]},
        {"dataframe_records": [dict(zip(reversed(COLUMNS), reversed(r)), e="extra") for r in rows]},
        {"dataframe_records": [dict(zip(COLUMNS, r)) for r in rows], "params": {"ignored": 1}},
    )]


@pytest.mark.parametrize("name", ["classifier", "regressor", "pipeline", "forest", "probabilities"])
def test_direct_answers_are_mlflows_byte_for_byte(direct_models, name):
    model = direct_models[name]
    scorer = DirectScorer.for_model(model)
    assert scorer is not None and scorer._takes_matrix, f"the direct path should take the {name}"
    answered = 0
    for seed in range(12):
        for body in _taken_bodies(seed):
            direct, expected = scorer.answer_body(body), _mlflow_answer(model, body)
            if direct is None:   # the model refused the matrix (a forest's float32 overflows): so does MLflow
                assert expected[0] != 200, body
            else:
                answered += 1
                assert (200, direct) == expected
    assert answered >= 36


@pytest.mark.parametrize("body", [
    {"dataframe_split": {"columns": COLUMNS, "data": [[True, 2.0, 3.0, 4.0]]}},       # MLflow: True -> 1.0
    {"dataframe_split": {"columns": COLUMNS, "data": [["1.0", 2.0, 3.0, 4.0]]}},      # MLflow: "1.0" -> 1.0
    {"dataframe_split": {"columns": COLUMNS, "data": [[2**63, 2.0, 3.0, 4.0]]}},
    {"dataframe_split": {"columns": COLUMNS, "data": [[1.0, 2.0, 3.0]]}},
    {"dataframe_split": {"columns": COLUMNS[:3], "data": [[1.0, 2.0, 3.0]]}},
    {"dataframe_split": {"columns": ["a", "a", "c", "d"], "data": [[1.0, 2.0, 3.0, 4.0]]}},
    {"dataframe_split": {"columns": COLUMNS, "data": [[1.0, 2.0, 3.0, 4.0]], "index": [[7]]}},
    {"dataframe_split": {"columns": COLUMNS, "data": []}},
    {"dataframe_split": {"data": [[1.0, 2.0, 3.0, 4.0]]}},
    {"dataframe_records": [{"a": 1.0, "b": 2.0, "c": 3.0}]},
    {"dataframe_records": [{"a": 1.0, "b": 2.0, "c": 3.0, "d": [4.0]}]},
    {"dataframe_records": [{"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": [5.0]}]},
    {"dataframe_records": []},
    {"inputs": [[1.0, 2.0, 3.0, 4.0]]},
    {"instances": [{"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}]},
    {"dataframe_records": [{"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}], "prompt": "x"},
    {"dataframe_records": [{"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}], "inputs": [[1.0, 2.0, 3.0, 4.0]]},
    {"dataframe_split": {"columns": COLUMNS, "data": [[None, 2.0, 3.0, 4.0]]}},       # the model refuses NaN
    [1.0, 2.0, 3.0, 4.0],
])
def test_what_the_direct_path_leaves_to_mlflow(direct_models, body):
    assert DirectScorer.for_model(direct_models["classifier"]).answer_body(json.dumps(body).encode()) is None


def test_bodies_are_decoded_as_mlflow_decodes_them(direct_models, zoo):
    """MLflow decodes with the standard library's json (NaN, UTF-16, integers of any size): so does the
    direct path; where the model refuses a NaN, or pandas a lone surrogate, MLflow's error answers."""
    classifier, echo = DirectScorer.for_model(direct_models["classifier"]), DirectScorer.for_model(zoo["echo"])
    nan = b'{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[NaN, 1.0, 2.0, 3.0]]}}'
    assert classifier.answer_body(nan) is None and _mlflow_answer(direct_models["classifier"], nan)[0] == 400
    for body in (b'{"dataframe_records": [{"d": NaN, "f": -Infinity, "l": 123456789012345678, "s": "x"}]}',
                 '{"dataframe_records": [{"d": 1, "f": 2, "l": 3, "s": "\u00e9"}]}'.encode("utf-16"),
                 b'{"dataframe_records": [{"d": 1, "f": 2, "l": 3, "s": "\\ud83d\\ude00"}]}'):
        direct = echo.answer_body(body)
        assert direct is not None and (200, direct) == _mlflow_answer(zoo["echo"], body)
    for body in (b'{"dataframe_records": [{"d": 1.5, "f": 2, "l": 3, "s": "\\ud800"}]}',
                 b'{"dataframe_records": [{"d": 1.5, "f": 2, "l": 3, "s": "x", "extra": "\\udfff"}]}'):
        assert echo.answer_body(body) is None and _mlflow_answer(zoo["echo"], body)[0] == 400
    assert classifier.answer_body(b"{not json") is None
    assert classifier.answer_body(b'{"dataframe_records": [{"a": 1.0}]} trailing') is None


# ---- the zoo: every flavor handed the DataFrame MLflow would build ----

class Echo(PythonModel):
    """Answers its input frame: any difference in columns, dtypes or values shows in the answer."""

    def predict(self, context, model_input, params=None):
        return model_input


class WithParams(PythonModel):
    def predict(self, context, model_input, params=None):
        return pd.DataFrame({"scaled": model_input["x"] * params["scale"], "n": model_input["n"] + 1,
                             "label": [params["label"]] * len(model_input)})


class SetAnswer(PythonModel):
    def predict(self, context, model_input, params=None):
        return {1, 2}   # what json cannot write


class Hinted(PythonModel):
    """Its signature comes from the type hints: MLflow hands it the raw `inputs`."""

    def predict(self, model_input: list[str], params=None) -> list[str]:
        return model_input


def _save_python_model(path: str, python_model, signature) -> None:
    import mlflow

    mlflow.pyfunc.save_model(path, python_model=python_model, pip_requirements=["mlflow"], signature=signature)


ECHO_COLUMNS = [Column("d", "double", True), Column("f", "float", True), Column("l", "long", True),
                Column("i", "integer", False), Column("b", "boolean", False), Column("s", "string", True),
                Column("y", "binary", False), Column("t", "datetime", False)]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> dict:
    """One model per flavor, with the column types it is fed in practice."""
    import lightgbm
    import mlflow
    import torch
    import xgboost
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(3)
    mixed = pd.DataFrame({"age": rng.integers(18, 90, 120), "income": rng.normal(5e4, 1e4, 120),
                          "city": rng.choice(["paris", "rome", "oslo"], 120), "member": rng.choice([True, False], 120)})
    labels = ((mixed.age > 40) ^ mixed.member).astype(int)
    numeric = mixed[["age", "income"]]
    target = mixed.age * 0.37 + mixed.income / 1e4
    path = lambda name: str(tmp_path_factory.mktemp(name) / "model")   # noqa: E731
    load = mlflow.pyfunc.load_model

    pipeline = make_pipeline(ColumnTransformer([("num", StandardScaler(), ["age", "income"]),
                                                ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                                                ("flag", "passthrough", ["member"])]),
                             LogisticRegression()).fit(mixed, labels)
    p = path("mixed")
    mlflow.sklearn.save_model(pipeline, p, signature=infer_signature(mixed, pipeline.predict_proba(mixed)),
                              pyfunc_predict_fn="predict_proba", pip_requirements=["scikit-learn"])
    models = {"mixed": load(p)}

    booster = xgboost.XGBRegressor(n_estimators=8, max_depth=3, n_jobs=1).fit(numeric, target)
    p = path("xgb")
    mlflow.xgboost.save_model(booster, p, signature=infer_signature(numeric, booster.predict(numeric)),
                              pip_requirements=["xgboost"])
    models["xgboost"] = load(p)

    light = lightgbm.LGBMRegressor(n_estimators=8, num_leaves=7, n_jobs=1, verbose=-1).fit(numeric, target)
    p = path("lgb")
    mlflow.lightgbm.save_model(light, p, signature=infer_signature(numeric, light.predict(numeric)),
                               pip_requirements=["lightgbm"])
    models["lightgbm"] = load(p)

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh())
    p = path("torch")
    mlflow.pytorch.save_model(net, p, pip_requirements=["torch"], serialization_format="pickle",
                              signature=ModelSignature(Schema([ColSpec(DataType.float, n) for n in ("u", "v", "w")])))
    models["pytorch"] = load(p)

    p = path("echo")
    _save_python_model(p, Echo(), ModelSignature(
        Schema([ColSpec(DataType[c.type], c.name, required=c.required) for c in ECHO_COLUMNS])))
    models["echo"] = load(p)
    p = path("params")
    _save_python_model(p, WithParams(), ModelSignature(
        Schema([ColSpec(DataType.double, "x"), ColSpec(DataType.long, "n")]),
        params=ParamSchema([ParamSpec("scale", DataType.double, 1.0), ParamSpec("label", DataType.string, "z")])))
    models["params"] = load(p)
    return models


ORDINARY_BODIES = {
    "mixed": [
        {"dataframe_split": {"columns": ["age", "income", "city", "member"], "data": [[42, 51000.5, "rome", True]]}},
        {"dataframe_split": {"columns": ["member", "city", "age", "income"],
                             "data": [[False, "oslo", 61, 48000], [True, "lima", 20, 9.5e4]], "index": [3, 4]}},
        {"dataframe_records": [{"income": 1e5, "age": 33, "city": "paris", "member": False, "note": "x"}]},
    ],
    "xgboost": [
        {"dataframe_split": {"columns": ["age", "income"], "data": [[42, 51000.5], [18, 3e4]]}},
        {"dataframe_records": [{"age": 70, "income": 61000}, {"income": -1.5, "age": 0}]},
    ],
    "lightgbm": [
        {"dataframe_split": {"columns": ["income", "age"], "data": [[51000.5, 42]], "index": ["row"]}},
        {"dataframe_records": [{"age": 70, "income": None}]},
    ],
    "pytorch": [
        {"dataframe_split": {"columns": ["u", "v", "w"], "data": [[0.1, -2, 3.25], [1e30, 0.0, -0.0]]}},
        {"dataframe_records": [{"w": 1, "v": 2, "u": 3}]},
    ],
    "echo": [
        {"dataframe_split": {"columns": ["d", "f", "l", "i", "b", "s", "y", "t"],
                             "data": [[0.1, 0.1, 2**62, -7, True, "é", "aGk=", "2024-02-29 12:00:00"],
                                      [None, 16777217, -1, 2**31 - 1, False, None, "", "1999-12-31 23:59:59"]]}},
        {"dataframe_records": [{"s": "only the required", "l": 1, "f": 1e-45, "d": -0.0}]},
        {"dataframe_records": [{"d": 1, "f": 2, "l": 3, "s": "x", "t": "2020-01-01"},
                               {"d": 1, "f": 2, "l": 3, "s": "y"}]},
    ],
    "params": [
        {"dataframe_split": {"columns": ["x", "n"], "data": [[1.5, 2]]}, "params": {"scale": 3, "label": "q"}},
        {"dataframe_records": [{"x": 1.5, "n": 2}], "params": {"scale": 0.5}},
        {"dataframe_records": [{"x": 1.5, "n": 2}]},
        {"dataframe_records": [{"x": 1.5, "n": 2}], "params": {"unknown": 1}},
    ],
}


ZOO = sorted(ORDINARY_BODIES)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_answers_are_mlflows_byte_for_byte(zoo, name):
    model = zoo[name]
    scorer = DirectScorer.for_model(model)
    assert scorer is not None, f"the direct path should take the {name} model"
    for request in ORDINARY_BODIES[name]:
        body = json.dumps(request).encode()
        direct = scorer.answer_body(body)
        assert direct is not None, f"the direct path should take {request}"
        assert (200, direct) == _mlflow_answer(model, body)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_random_requests_get_mlflows_answer_or_go_to_mlflow(zoo, name):
    """Random requests (test_direct_parse's: every type's edge values, nulls, wrong types, missing and extra
    columns, column orders, indexes): the direct answer, where there is one, is MLflow's to the byte."""
    model = zoo[name]
    columns = [Column(spec.name, spec.type.name, spec.required) for spec in model.metadata.get_input_schema().inputs]
    scorer = DirectScorer.for_model(model)
    answered = []

    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.booleans().flatmap(lambda ordinary: random_requests(columns, ordinary)))
    def check(request):
        body = json.dumps(request).encode()
        direct = scorer.answer_body(body)
        if direct is not None:
            answered.append(body)
            assert (200, direct) == _mlflow_answer(model, body)

    check()
    assert len(answered) >= 3, f"the direct path answered only {len(answered)} of 40"


def _parts(requests: list[dict]) -> list[batch_merge.JsonPart]:
    return [batch_merge.json_part(json.dumps(r).encode(), "application/json") for r in requests]


@pytest.mark.parametrize("name", ZOO)
def test_a_merged_batchs_prediction_is_pyfuncs(zoo, name):
    """What the batching code asks for: the raw prediction for merged requests, as pyfunc predict gives it
    for the DataFrame MLflow parses from the same merged request."""
    from mlflow.pyfunc import scoring_server

    model = zoo[name]
    scorer = DirectScorer.for_model(model)
    by_key: dict = {}
    for part in _parts(ORDINARY_BODIES[name] * 3):
        if part is not None:
            by_key.setdefault(part.key, []).append(part)
    assert any(len(parts) > 1 for parts in by_key.values())
    for parts in by_key.values():
        merged = batch_merge.merge_json(parts)
        ours = scorer.prediction(merged)
        assert ours is not None
        parsed = scoring_server._parse_json_data(json.dumps(merged), model.metadata, model.metadata.get_input_schema())
        theirs = model.predict(parsed.data, params=parsed.params)
        assert type(ours) is type(theirs)
        assert scorer.encode(ours) == scorer.encode(theirs)
        assert batch_merge.split_rows(ours, [p.rows for p in parts]) is not None


def test_a_merged_numeric_batch_is_pyfuncs(direct_models):
    from mlflow.pyfunc import scoring_server

    for model in direct_models.values():
        scorer = DirectScorer.for_model(model)
        merged = batch_merge.merge_json(_parts([{"dataframe_split": {"columns": COLUMNS, "data": rows}}
                                             for rows in (_float_rows(3, 1), _float_rows(2, 2))]))
        parsed = scoring_server._parse_json_data(json.dumps(merged), model.metadata, model.metadata.get_input_schema())
        ours, theirs = scorer.prediction(merged), model.predict(parsed.data)
        assert ours is not None and scorer.encode(ours) == scorer.encode(theirs)


def test_frame_is_what_pyfunc_hands_the_flavor(zoo):
    from mlflow.models.utils import _enforce_schema
    from mlflow.pyfunc import scoring_server

    model = zoo["params"]
    request = ORDINARY_BODIES["params"][0]
    frame, params = DirectScorer.for_model(model).frame(request)
    parsed = scoring_server._parse_json_data(json.dumps(request), model.metadata, model.metadata.get_input_schema())
    pd.testing.assert_frame_equal(frame, _enforce_schema(parsed.data, model.metadata.get_input_schema()))
    assert params == {"scale": 3.0, "label": "q"}


# ---- what gets no direct path ----

def test_models_only_mlflow_scores_exactly_get_no_direct_path(tmp_path_factory, zoo):
    """No signature, an array column, a signature from type hints (tensor signatures: test_direct_tensor.py)."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import Array
    from sklearn.linear_model import LogisticRegression

    frame = _frame(seed=9)
    labels = (frame.a > 0).astype(int)
    plain = LogisticRegression().fit(frame, labels)
    unsigned = tmp_path_factory.mktemp("unsigned") / "model"
    mlflow.sklearn.save_model(plain, str(unsigned), pip_requirements=["scikit-learn"])
    nested = tmp_path_factory.mktemp("nested") / "model"
    _save_python_model(str(nested), Echo(), ModelSignature(
        Schema([ColSpec(Array(DataType.double), "v"), ColSpec(DataType.double, "w")])))
    hinted = tmp_path_factory.mktemp("hinted") / "model"
    _save_python_model(str(hinted), Hinted(), None)
    for path in (unsigned, nested, hinted):
        assert DirectScorer.for_model(mlflow.pyfunc.load_model(str(path))) is None, path

    # A ColumnTransformer picks columns by name: it gets the DataFrame, never the bare matrix.
    assert DirectScorer.for_model(zoo["mixed"])._takes_matrix is False


def test_an_answer_mlflow_cannot_write_goes_to_mlflow(tmp_path_factory):
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema

    path = tmp_path_factory.mktemp("odd") / "model"
    _save_python_model(str(path), SetAnswer(), ModelSignature(Schema([ColSpec(DataType.double, "x")])))
    model = mlflow.pyfunc.load_model(str(path))
    body = b'{"dataframe_records": [{"x": 1.0}]}'
    assert DirectScorer.for_model(model).answer_body(body) is None
    assert _mlflow_answer(model, body)[0] == 400


def test_content_types_read_as_mlflow_reads_them():
    assert is_plain_json("application/json")
    assert is_plain_json("application/json; charset=UTF-8")
    assert not is_plain_json("application/json; charset=latin-1")
    assert not is_plain_json("application/json; format=pandas-split")
    assert not is_plain_json("Application/JSON")
    assert not is_plain_json("text/csv")


def test_predictor_answers_directly_and_through_mlflow_alike(direct_models):
    """The worker's own scoring: a direct answer is MLflow's, and MLflow's error stays MLflow's."""
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


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    """A transformers text classifier: its signature is one unnamed string column, its requests `inputs`."""
    import mlflow
    import transformers

    from tests.support.flavors import text_classifier

    workdir = tmp_path_factory.mktemp("text")
    mlflow.transformers.save_model(text_classifier(workdir), str(workdir / "model"),
                                   pip_requirements=[f"transformers=={transformers.__version__}"])
    return mlflow.pyfunc.load_model(str(workdir / "model"))


def test_a_text_models_inputs_get_mlflows_answer_byte_for_byte(text_model):
    scorer = DirectScorer.for_model(text_model)
    assert scorer is not None, "the direct path should take a text model's `inputs`"
    for inputs in (["good movie"], ["the movie is awful", "great", ""], ["é 日本 \U0001f600"]):
        body = json.dumps({"inputs": inputs}).encode()
        direct = scorer.answer_body(body)
        assert direct is not None, f"the direct path should take {inputs}"
        assert (200, direct) == _mlflow_answer(text_model, body)
    for declined in ({"inputs": ["good", None]}, {"inputs": "good"}, {"inputs": ["a\x00"]}, {"instances": ["good"]},
                     {"dataframe_split": {"columns": [0], "data": [["good"]]}}):
        assert scorer.answer_body(json.dumps(declined).encode()) is None, declined
