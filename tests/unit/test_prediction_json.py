"""services/worker/prediction_json.py writes what MLflow's `predictions_to_json` writes, byte for byte, for
random predictions of every shape a model returns (DataFrames and Series of numbers, booleans, strings,
objects, nulls, odd names, types it leaves to MLflow; arrays, lists, dicts), and fails where MLflow fails."""

from __future__ import annotations

import datetime
import io
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.worker import prediction_json

FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.1, -0.0, 5e-324, 1e300, 2.0**53 + 1])
TEXT = st.text(max_size=6) | st.sampled_from(["é", "日本", "\u2028", "\"quote\"", "back\\slash"])
OBJECTS = st.one_of(TEXT, st.none(), st.just(math.nan), st.integers(-(2**70), 2**70), FLOATS, st.booleans(),
                    st.sampled_from([np.float32(0.1), np.int64(7), np.bool_(True), b"\x00bytes",
                                     pd.Timestamp("2024-01-02 03:04:05"), datetime.date(2024, 5, 6), [1, "a"],
                                     {"k": 1}, np.array([1.5, 2.5]), pd.NA, pd.NaT, object()]))


def _column(kind: str, values: list):
    if kind == "float64":
        return np.array(values, dtype=np.float64)
    if kind == "float32":
        return np.array(values, dtype=np.float64).astype(np.float32)
    if kind in ("int64", "int32", "uint8"):
        return np.array(values, dtype=np.int64).astype(kind)
    if kind == "bool":
        return np.array(values, dtype=bool)
    if kind == "str":
        return pd.array(values, dtype=pd.StringDtype(na_value=np.nan))
    if kind == "string[python]":
        return pd.array(values, dtype=pd.StringDtype("python"))
    if kind == "Int64":
        return pd.array(values, dtype="Int64")
    if kind == "category":
        return pd.Categorical(values)
    if kind == "datetime":
        return pd.to_datetime(values, unit="s")
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _values(kind: str, rows: int):
    element = {"float64": FLOATS, "float32": st.floats(width=32, allow_nan=True),
               "int64": st.integers(-(2**63), 2**63 - 1), "int32": st.integers(-(2**31), 2**31 - 1),
               "uint8": st.integers(0, 255), "bool": st.booleans(), "str": st.one_of(TEXT, st.none()),
               "string[python]": st.one_of(TEXT, st.none()), "Int64": st.one_of(st.integers(-5, 5), st.none()),
               "category": st.sampled_from(["a", "b"]), "datetime": st.integers(0, 2**31),
               "object": OBJECTS}[kind]
    return st.lists(element, min_size=rows, max_size=rows)


KINDS = ["float64", "float32", "int64", "int32", "uint8", "bool", "str", "string[python]", "object", "Int64",
         "category", "datetime"]
NAMES = st.one_of(st.text(max_size=4), st.integers(-3, 3), st.sampled_from([("a", "b"), 1.5, None]))


@st.composite
def predictions(draw):
    rows = draw(st.integers(0, 4))
    shape = draw(st.sampled_from(["frame", "frame", "frame", "series", "array", "list"]))
    if shape == "frame":
        width = draw(st.integers(0, 4))
        kinds = [draw(st.sampled_from(KINDS)) for _ in range(width)]
        names = draw(st.lists(NAMES, min_size=width, max_size=width))
        arrays = [_column(kind, draw(_values(kind, rows))) for kind in kinds]
        frame = pd.concat([pd.Series(a) for a in arrays], axis=1) if arrays else pd.DataFrame(index=range(rows))
        if width:
            frame.columns = names if not any(isinstance(n, tuple) for n in names) else pd.Index(names)
        return frame
    kind = draw(st.sampled_from(KINDS))
    values = _column(kind, draw(_values(kind, rows)))
    if shape == "series":
        return pd.Series(values, name=draw(NAMES))
    if shape == "array" and kind in ("float64", "int64", "bool", "object"):
        return np.asarray(values)
    return list(values)


def mlflows_bytes(prediction):
    from mlflow.pyfunc.scoring_server import predictions_to_json

    out = io.StringIO()
    predictions_to_json(prediction, out)
    return out.getvalue().encode()


def ours(prediction):
    out = io.StringIO()
    prediction_json.predictions_to_json(prediction, out)
    text = out.getvalue().encode()
    assert prediction_json.predictions_json(prediction_json.jsonable(prediction)) == text
    return text


@settings(max_examples=600, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(predictions())
def test_the_bytes_are_mlflows_or_both_fail(prediction):
    try:
        expected = mlflows_bytes(prediction)
    except Exception:   # noqa: BLE001 - MLflow failing (then so must the fast path) is an outcome here
        with pytest.raises(Exception):
            ours(prediction)
        return
    assert ours(prediction) == expected


def test_common_answers_take_the_fast_conversion():
    frame = pd.DataFrame({"score": [1.5, math.nan], "label": pd.array(["a", None], dtype=pd.StringDtype(
        na_value=np.nan)), "n": np.array([1, 2]), "ok": [True, False], "o": np.array(["x", None], dtype=object)})
    assert prediction_json._frame_records(frame) is not None
    assert prediction_json._series_records(pd.Series([1.0, 2.0], name="p")) is not None
    assert ours(frame) == mlflows_bytes(frame)


def test_types_left_to_mlflow_are_not_converted_here():
    assert prediction_json._frame_records(pd.DataFrame({"d": pd.to_datetime([0], unit="s")})) is None
    assert prediction_json._frame_records(pd.DataFrame({"c": pd.Categorical(["a"])})) is None
    assert prediction_json._frame_records(pd.DataFrame([[1, 2]], columns=["a", "a"])) is None
    assert prediction_json._series_records(pd.Series([1], name=("a", "b"))) is None


class Labels:
    """A python_model answering a DataFrame of strings and floats, whatever shape it is asked in."""

    def predict(self, context, model_input, params=None):
        rows = len(model_input)
        return pd.DataFrame({"label": pd.array(["yes"] * rows, dtype=pd.StringDtype(na_value=np.nan)),
                             "score": np.linspace(0.1, 0.9, rows)})


def test_mlflows_invocations_answer_the_same_with_it(tmp_path, monkeypatch):
    import mlflow
    from mlflow.pyfunc import scoring_server

    class Model(mlflow.pyfunc.PythonModel, Labels):
        pass

    mlflow.pyfunc.save_model(tmp_path / "m", python_model=Model())
    model = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    bodies = [b'{"inputs": [1, 2, 3]}', b'{"dataframe_split": {"columns": ["a"], "data": [[1], [2]]}}',
              b'{"instances": [{"a": 1}]}']
    expected = [scoring_server.invocations(b, "application/json", model, None).response for b in bodies]
    monkeypatch.setattr(scoring_server, "predictions_to_json", scoring_server.predictions_to_json)  # restored after
    prediction_json.use_in_scoring_server()
    assert scoring_server.predictions_to_json is prediction_json.predictions_to_json
    assert [scoring_server.invocations(b, "application/json", model, None).response for b in bodies] == expected
    with pytest.raises(Exception, match="predictions"):
        prediction_json.predictions_to_json([1], io.StringIO(), {"predictions": 1})
