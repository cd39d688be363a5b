"""The direct path's DataFrame is the one MLflow's parse and schema enforcement build: for random signatures
of every scalar column type and random requests (column orders, missing and extra columns, ints where floats
are expected, nulls, edge values, wrong types, indexes), either `build_frame` declines or its frame equals
MLflow's in columns, dtypes, values (bit for bit), index and block layout; and a numeric signature's matrix
is that frame's `np.asarray`."""

from __future__ import annotations

import base64
import copy
import logging
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.worker import direct_frame
from services.worker.direct_frame import Column

TYPES = sorted(direct_frame.column_types())
# MLflow logs every extra column it ignores: thousands of lines here.
logging.getLogger("mlflow.models.utils").setLevel(logging.ERROR)
# Both paths warn alike (pandas guessing a day-first date, numpy overflowing a float32): not this test's concern.
pytestmark = [pytest.mark.filterwarnings("ignore:Parsing dates in:UserWarning"),
              pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")]
STRING_DTYPE = direct_frame.str_dtype()
EDGE_INTS = [0, 1, -1, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**53 + 1, 2**63 - 1, -(2**63), 2**63,
             -(2**63) - 1, 2**64, 2**70]
EDGE_FLOATS = [0.0, -0.0, 1.0, math.nan, math.inf, -math.inf, 5e-324, 1.7976931348623157e308, 3.4028235e38,
               3.5e38, 1e-46, 0.1, 2.0**53 + 2]


def mlflow_frame(columns: list[Column], request: dict):
    """What `PyFuncModel.predict` hands the flavor after `scoring_server.invocations` parsed the request, or
    the exception MLflow raises instead."""
    from mlflow.models.utils import _enforce_schema
    from mlflow.pyfunc.scoring_server import infer_and_parse_data
    from mlflow.types import ColSpec, DataType, Schema

    schema = Schema([ColSpec(DataType[c.type], c.name, required=c.required) for c in columns])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _enforce_schema(infer_and_parse_data(copy.deepcopy(request), schema), schema)
    except Exception as exc:   # noqa: BLE001 - MLflow refusing is an outcome here
        return exc


def assert_same_frame(ours: pd.DataFrame, theirs) -> None:
    assert isinstance(theirs, pd.DataFrame), f"MLflow refused what the direct path took: {theirs!r}"
    pd.testing.assert_frame_equal(ours, theirs, check_exact=True, check_column_type=True, check_index_type=True,
                                  check_flags=True)
    for name in ours.columns:
        mine, its = ours[name].to_numpy(), theirs[name].to_numpy()
        assert mine.dtype == its.dtype
        if mine.dtype.kind in "biufM":
            assert mine.tobytes() == its.tobytes(), name     # -0.0, NaN and rounding, bit for bit
        else:
            assert [type(v) for v in mine] == [type(v) for v in its], name
    assert _layout(ours) == _layout(theirs)


def _layout(frame: pd.DataFrame) -> list:
    """The frame's blocks, by the columns they hold: what `np.asarray(frame)` and a model's conversion read."""
    out = []
    for block in frame._mgr.blocks:
        flags = getattr(block.values, "flags", None)
        out.append((type(block).__name__, str(block.dtype), list(block.mgr_locs.as_array),
                    None if flags is None else (flags.c_contiguous, flags.f_contiguous)))
    return sorted(out, key=lambda block: block[2])


# ---- strategies ----

# Strings pandas cannot store (a lone surrogate, from a "\ud800" escape) fail MLflow's whole frame.
ODD_STRINGS = st.sampled_from(["\ud800", "a\udfff", "\U0001f600", "\x00", "é"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(EDGE_INTS), st.floats(),
                    st.sampled_from(EDGE_FLOATS), st.text(max_size=6), ODD_STRINGS,
                    st.sampled_from(["1", "1.5", "true", "", "YQ=="]))
WILD = st.one_of(SCALARS, SCALARS, SCALARS, st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))
INT64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-5, 5), st.sampled_from(EDGE_INTS[:-4]))
INT32 = st.one_of(st.integers(-(2**31), 2**31 - 1), st.integers(-5, 5), st.sampled_from([0, 1, 2**31 - 1, -(2**31)]))
FLOATS = st.one_of(st.floats(), st.floats(-1e6, 1e6), st.sampled_from(EDGE_FLOATS))
DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f"]
ODD_DATE_FORMATS = ["%Y-%m-%dT%H:%M:%S+02:00", "%d/%m/%Y", "%Y-%m-%dT%H:%M:%SZ"]


@st.composite
def column_values(draw, kind: str, rows: int, ordinary: bool) -> list:
    """A column's JSON values. Ordinary: what its type asks for, as a client sends it (ints for a double
    column too). Otherwise also nulls, values out of range, neighbouring types and anything at all."""
    style = "typical" if ordinary else draw(st.sampled_from(["typical", "typical", "edgy", "nulls", "wild"]))
    if style == "wild":
        return draw(st.lists(WILD, min_size=rows, max_size=rows))
    edgy = style != "typical"
    if kind in ("double", "float"):
        typical = st.one_of(FLOATS, INT64) if draw(st.booleans()) else FLOATS
    elif kind == "long":
        typical = INT64
    elif kind == "integer":
        typical = INT32
    elif kind == "boolean":
        typical = st.booleans()
    elif kind == "string":
        typical = st.one_of(st.text(max_size=8), ODD_STRINGS) if edgy else st.text(max_size=8)
    elif kind == "binary":
        typical = st.binary(max_size=8).map(lambda b: base64.b64encode(b).decode())
        if edgy:
            typical = st.one_of(typical, st.sampled_from(["YQ", "Y Q = =", "@@", "YQ==\n", "\u00e9"]))
    else:
        date_format = draw(st.sampled_from(DATE_FORMATS + (ODD_DATE_FORMATS if edgy else [])))
        typical = st.datetimes(min_value=pd.Timestamp("1700-01-01").to_pydatetime(),
                               max_value=pd.Timestamp("2250-01-01").to_pydatetime()).map(
            lambda d: d.strftime(date_format))
    if edgy and kind in ("long", "integer", "double", "float"):
        typical = st.one_of(typical, st.sampled_from(EDGE_INTS))
    if style == "nulls":
        typical = st.one_of(typical, st.none())
    return draw(st.lists(typical, min_size=rows, max_size=rows))


@st.composite
def signatures(draw) -> list[Column]:
    names = draw(st.lists(st.sampled_from("abcdef"), min_size=1, max_size=5, unique=True))
    return [Column(n, draw(st.sampled_from(TYPES)), draw(st.sampled_from([True, True, False]))) for n in names]


@st.composite
def requests(draw, columns: list[Column], ordinary: bool) -> dict:
    """A dataframe_split or dataframe_records request for these columns, in any order, with extra columns of
    JSON scalars. Otherwise also: a missing column, a short row, a record lacking a key, no rows, odd
    indexes, extra columns of anything."""
    odd = (lambda: False) if ordinary else (lambda: draw(st.integers(0, 19)) == 0)
    rows = draw(st.integers(0, 4)) if odd() else draw(st.integers(1, 4))
    sent = [c for c in columns if not odd()]
    extra = st.sampled_from(["x", "y"] if ordinary else ["x", "y", "\udc00", "é"])
    names = draw(st.permutations([c.name for c in sent] + draw(st.lists(extra, max_size=2, unique=True))))
    kinds = {c.name: c.type for c in columns}
    plain = SCALARS.filter(lambda v: not isinstance(v, str) or not any("\ud800" <= ch <= "\udfff" for ch in v))
    values = {n: draw(column_values(kinds[n], rows, ordinary)) if n in kinds
              else draw(st.lists(plain if ordinary else WILD, min_size=rows, max_size=rows)) for n in names}
    if draw(st.booleans()):
        data = {"columns": names, "data": [[values[n][i] for n in names] for i in range(rows)]}
        index = draw(st.sampled_from(["none", "ints", "strs"] + ([] if ordinary else ["mixed", "short"])))
        if index == "ints":
            data["index"] = draw(st.lists(st.sampled_from([0, 1, 7, -3, 2**40]), min_size=rows, max_size=rows))
        elif index == "strs":
            labels = st.text(max_size=3) if ordinary else st.one_of(st.text(max_size=3), ODD_STRINGS)
            data["index"] = draw(st.lists(labels, min_size=rows, max_size=rows))
        elif index == "mixed":
            data["index"] = draw(st.lists(WILD, min_size=rows, max_size=rows))
        elif index == "short" and rows:
            data["index"] = list(range(rows - 1))
        if rows and odd():
            data["data"][-1] = data["data"][-1][:-1]
        return {"dataframe_split": data}
    records = [{n: values[n][i] for n in names} for i in range(rows)]
    for record in records:
        if record and odd():
            del record[draw(st.sampled_from(sorted(record)))]
    return {"dataframe_records": records}


@st.composite
def cases(draw, ordinary: bool = False):
    columns = draw(signatures())
    return columns, draw(requests(columns, ordinary))


# ---- properties ----

def _has_nan(value) -> bool:   # NaN != NaN: a request holding one compares unequal to its copy
    return "nan" in repr(value)


def _frame(columns, request):
    form, data = next(iter(request.items()))
    before = copy.deepcopy(request)
    frame = direct_frame.build_frame(columns, form, data, STRING_DTYPE)
    assert request == before or _has_nan(before), "the request must be left as it came"
    return frame


def test_frames_are_mlflows_for_any_request():
    taken = []

    @settings(max_examples=400, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(cases())
    def check(case):
        columns, request = case
        ours = _frame(columns, request)
        if ours is not None:
            taken.append(columns)
            assert_same_frame(ours, mlflow_frame(columns, request))

    check()
    assert len(taken) >= 20, f"the direct path took only {len(taken)} of 400 requests"


@settings(max_examples=250, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases(ordinary=True))
def test_ordinary_requests_are_taken_and_framed_as_mlflow_frames_them(case):
    columns, request = case
    ours = _frame(columns, request)
    assert ours is not None, "the direct path must take an ordinary request"
    assert_same_frame(ours, mlflow_frame(columns, request))


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_numeric_matrix_is_the_frames_values(data):
    columns = [Column(n, "double", True) for n in data.draw(st.lists(st.sampled_from("abcd"), min_size=1,
                                                                      max_size=4, unique=True))]
    request = data.draw(requests(columns, ordinary=data.draw(st.booleans())))
    form, data = next(iter(request.items()))
    matrix = direct_frame.build_matrix(columns, form, data)
    frame = direct_frame.build_frame(columns, form, data, STRING_DTYPE)
    assert (matrix is None) == (frame is None)
    if matrix is not None:
        values = np.asarray(frame)
        assert matrix.dtype == values.dtype == np.float64 and matrix.shape == values.shape
        assert matrix.tobytes(order="A") == values.tobytes(order="A")
        assert (matrix.flags.c_contiguous, matrix.flags.f_contiguous) == \
            (values.flags.c_contiguous, values.flags.f_contiguous)


@pytest.mark.parametrize("kind,values", [
    ("double", [1, 2.5, None]), ("double", [2**53 + 1, 3]), ("float", [2**53 + 1, 16777217]),
    ("float", [0.1, math.nan]), ("long", [-(2**63), 2**63 - 1]), ("integer", [-(2**31), 2**31 - 1]),
    ("boolean", [True, False]), ("string", ["a", None, ""]), ("binary", ["aGVsbG8=", ""]),
    ("datetime", ["2020-01-01", "2024-02-29"]),
    ("datetime", ["2020-01-01T10:00:00.123456789", "1999-12-31T23:59:59.5"]), ("datetime", ["2020-01-01", None]),
])
def test_values_the_direct_path_takes(kind, values):
    columns = [Column("v", kind, True)]
    for request in ({"dataframe_split": {"columns": ["v"], "data": [[v] for v in values]}},
                    {"dataframe_split": {"columns": ["v"], "data": [[v] for v in values],
                                         "index": list(range(10, 10 + len(values)))}},
                    {"dataframe_records": [{"v": v, "extra": "ignored"} for v in values]}):
        form, data = next(iter(request.items()))
        ours = direct_frame.build_frame(columns, form, data, STRING_DTYPE)
        assert ours is not None, request
        assert_same_frame(ours, mlflow_frame(columns, request))


@pytest.mark.parametrize("kind,values", [
    ("double", [True]), ("double", ["1.5"]), ("double", [2**63]), ("long", [1.0]), ("long", [None]),
    ("long", [2**63]), ("integer", [2**31]), ("boolean", [1]), ("boolean", [None]), ("string", [1]),
    ("string", [None]), ("binary", ["YQ="]), ("binary", [None]), ("datetime", ["2020-01-01T00:00:00Z"]),
    ("datetime", ["2020-01-01", "01/02/2020"]), ("datetime", [0]), ("double", [[1.0]]),
])
def test_values_left_to_mlflow(kind, values):
    """MLflow converts some of these (a float truncated into a long, 1 into True, ...) and refuses others:
    either way its own path says what happens."""
    columns = [Column("v", kind, True)]
    assert direct_frame.build_frame(columns, "dataframe_split",
                                    {"columns": ["v"], "data": [[v] for v in values]}, STRING_DTYPE) is None


def test_missing_optional_columns_are_left_out_as_mlflow_leaves_them():
    columns = [Column("a", "double", True), Column("b", "string", False)]
    for request in ({"dataframe_split": {"columns": ["a"], "data": [[1.0]]}},
                    {"dataframe_records": [{"a": 1.0}, {"a": 2}]},
                    {"dataframe_records": [{"a": 1.0, "b": "x"}, {"a": 2.0}]}):
        form, data = next(iter(request.items()))
        ours = direct_frame.build_frame(columns, form, data, STRING_DTYPE)
        assert ours is not None
        assert_same_frame(ours, mlflow_frame(columns, request))
    assert direct_frame.build_frame(columns, "dataframe_records", [{"b": "x"}], STRING_DTYPE) is None


TEXT = [Column(None, "string", True)]   # a Hugging Face text model's signature: one unnamed string column


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.one_of(st.lists(st.one_of(st.text(max_size=8), ODD_STRINGS, st.sampled_from(["a\x00", "\x00b", "None"])),
                          max_size=4),
                 st.lists(WILD, max_size=3), WILD))
def test_a_text_models_inputs_are_framed_as_mlflow_frames_them(inputs):
    ours = _frame(TEXT, {"inputs": inputs})
    if ours is not None:
        assert_same_frame(ours, mlflow_frame(TEXT, {"inputs": inputs}))


def test_ordinary_text_inputs_are_taken():
    for inputs in (["some text"], ["é", "日本語", ""], ["a", "b", "c"]):
        ours = _frame(TEXT, {"inputs": inputs})
        assert ours is not None
        assert_same_frame(ours, mlflow_frame(TEXT, {"inputs": inputs}))
    for declined in ([], ["a\x00"], ["a", None], [1], "text", [["a"]]):   # MLflow's parse changes or refuses these
        assert _frame(TEXT, {"inputs": declined}) is None
    assert _frame([Column(None, "double", True)], {"inputs": [1.5]}) is None
