"""The DataFrame MLflow's scoring server hands a model with a column signature, built straight from a decoded
`dataframe_split` or `dataframe_records` request (or the `inputs` of a text model, `_inputs_frame`), or None
where that is not provably the same frame.

MLflow builds it in three steps: pandas infers each column's dtype from its JSON values (`pd.DataFrame(...)`),
`cast_df_types_according_to_schema` casts it to the signature's type, and `_enforce_schema` keeps the
signature's columns in the signature's order. For the values taken here each step's result is known:

- double, float: JSON ints (int64 range), floats (NaN/Infinity included) and nulls. pandas makes an all-int
  column int64 and any other mix float64 (an int becomes the nearest double, a null NaN); the cast is
  `astype` to float64/float32 from that, so an all-int float column rounds once, int64 -> float32.
- long, integer: JSON ints only (int64, resp. int32 range: MLflow wraps an int32 overflow silently).
- boolean: JSON true/false only (MLflow turns any other value into a bool by truthiness).
- string: JSON strings, and nulls next to them where pandas stores strings as its `str` dtype (nulls NaN).
- binary: JSON strings, base64-decoded by the same call MLflow makes.
- datetime: what string takes, parsed by the same `pd.to_datetime` call on the same string column (a null
  is NaT); only timezone-naive results (MLflow refuses the others).

Every other value (an int in a string column, a float in a long one, ...) is left to MLflow, which converts
or refuses it in its own words. Columns outside the signature are ignored, as MLflow ignores them, when their
values are JSON scalars; a missing optional column is left out, as MLflow leaves it out.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
_SCALARS = frozenset((str, int, float, bool, type(None)))
_NUMBERS = frozenset((int, float, type(None)))


@dataclass(frozen=True)
class Column:
    name: str | None   # None: the signature's one unnamed column
    type: str        # the MLflow DataType's name: "double", "long", "string", ...
    required: bool


def column_types() -> frozenset[str]:
    """The MLflow column types the direct path builds."""
    return frozenset(_BUILDERS)


def build_frame(columns: Sequence[Column], form: str, data: Any, string_dtype) -> pd.DataFrame | None:
    """The DataFrame MLflow's parse and schema enforcement make of `{form: data}`, or None (pure).

    `string_dtype`: the dtype pandas gives a column of strings (`str_dtype()`).
    """
    if form == "inputs":
        return _inputs_frame(columns, data, string_dtype)
    cells = _cells(columns, form, data)
    if cells is None:
        return None
    values, index = cells
    arrays = {}
    for column in columns:
        if column.name not in values:
            if column.required:
                return None
            continue
        array = _BUILDERS[column.type](values[column.name], string_dtype, index, column.name)
        if array is None:
            return None
        arrays[column.name] = array
    if not arrays:
        return None
    return _frame(arrays, index)


def _inputs_frame(columns: Sequence[Column], data: Any, string_dtype) -> pd.DataFrame | None:
    """For a signature of one unnamed string column (a Hugging Face text model's), the frame MLflow makes of
    `{"inputs": [text, ...]}`: its parse makes the list a numpy unicode array (`np.array(data, str)`, which
    drops a trailing NUL and writes a null or a number as text) and its enforcement a column of strings named
    0. Only lists of strings without NUL are taken."""
    if len(columns) != 1 or columns[0].name is not None or columns[0].type != "string":
        return None
    if not isinstance(data, list) or not data or not all(type(v) is str and "\x00" not in v for v in data):
        return None
    strings = _strings(data, string_dtype)
    return None if strings is None else _frame({0: strings}, pd.RangeIndex(len(data)))


def build_matrix(columns: Sequence[Column], form: str, data: Any) -> np.ndarray | None:
    """For a signature of required double columns: `np.asarray` of the frame build_frame makes (its values,
    column-major as a DataFrame's float block is), or None (pure)."""
    if not all(c.type == "double" and c.required for c in columns):
        return None
    cells = _cells(columns, form, data)
    if cells is None or len(cells[0]) != len(columns):
        return None
    arrays = [_floats(cells[0][c.name], np.float64) for c in columns]
    if any(a is None for a in arrays):
        return None
    return np.array(arrays).T


def _frame(arrays: dict[Hashable, Any], index: pd.Index) -> pd.DataFrame:
    """`pd.DataFrame(arrays, index=index)`, the constructor MLflow's enforcement ends with (the same blocks,
    the same layout), without its per-call costs: inferring the column Index from the names (a third of a
    one-row request's frame, for string names) and checking columns built here to be what it keeps."""
    if _FROM_ARRAYS is None:   # another pandas: the public constructor (DirectScorer checks the result at load)
        return pd.DataFrame(arrays, index=index)
    # A copy per frame: a model may rename its frame's columns Index in place.
    columns = _column_index(tuple(arrays)).copy()
    return _FROM_ARRAYS(list(arrays.values()), columns=columns, index=index, verify_integrity=False)


_FROM_ARRAYS = getattr(pd.DataFrame, "_from_arrays", None)


@functools.lru_cache(maxsize=256)
def _column_index(names: tuple[Hashable, ...]) -> pd.Index:
    return pd.Index(list(names))


def str_dtype():
    """The dtype pandas infers for a column of strings: `str` from pandas 3, object before."""
    return pd.DataFrame([["x"]]).dtypes.iloc[0]


# ---- cells: each signature column's JSON values, and the frame's index ----

def _cells(columns: Sequence[Column], form: str, data: Any) -> tuple[dict[str, list], pd.Index] | None:
    if form == "dataframe_split":
        return _split_cells(columns, data)
    if form == "dataframe_records":
        return _record_cells(columns, data)
    return None


def _split_cells(columns: Sequence[Column], data: Any) -> tuple[dict[str, list], pd.Index] | None:
    if not isinstance(data, dict) or not {"columns", "data"} <= set(data) <= {"columns", "data", "index"}:
        return None
    names, rows = data["columns"], data["data"]
    if not isinstance(names, list) or not isinstance(rows, list) or not rows or not names:
        return None
    width = len(names)
    if not all(type(n) is str for n in names) or not _plain_scalars(names) or len(set(names)) != width:
        return None
    # pandas pads a short row with NaN and refuses a long one: only full rows are taken.
    if not all(type(row) is list and len(row) == width for row in rows):
        return None
    index = _index(data["index"], len(rows)) if "index" in data else pd.RangeIndex(len(rows))
    if index is None:
        return None
    wanted = {c.name for c in columns}
    values = {}
    for position, name in enumerate(names):
        column = [row[position] for row in rows]
        if name in wanted:
            values[name] = column
        elif not _plain_scalars(column):
            return None
    return values, index


def _record_cells(columns: Sequence[Column], records: Any) -> tuple[dict[str, list], pd.Index] | None:
    if not isinstance(records, list) or not records or not all(type(r) is dict for r in records):
        return None
    values = {}
    for column in columns:
        name = column.name
        if any(name in r for r in records):
            # A key a record lacks is NaN to pandas; a null is None: the builders treat both as a null.
            values[name] = [r.get(name) for r in records]
    wanted = {c.name for c in columns}
    for record in records:
        extra = [k for k in record if k not in wanted]
        if extra and not (_plain_scalars(extra) and _plain_scalars(record[k] for k in extra)):
            return None
    return values, pd.RangeIndex(len(records))


def _index(labels: Any, length: int) -> pd.Index | None:
    """The index pandas makes of a split request's labels (`Index(labels)`): int64 or string labels only."""
    if not isinstance(labels, list) or len(labels) != length:
        return None
    kinds = {type(label) for label in labels}
    if kinds == {int} and _in_range(labels, _INT64_MIN, _INT64_MAX):
        return pd.Index(labels)
    if kinds == {str} and _plain_scalars(labels):
        return pd.Index(labels)
    return None


def _plain_scalars(values) -> bool:
    """Whether these are JSON scalars pandas stores without failing: a string of the column's (or a column
    name, or an index label) must encode to UTF-8, as pandas' Arrow-backed strings need (a lone surrogate
    from a `\\ud800` escape fails the whole frame)."""
    for value in values:
        kind = type(value)
        if kind is str:
            if not value.isascii() and not _encodes(value):
                return False
        elif kind not in _SCALARS:
            return False
    return True


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _in_range(values, low: int, high: int) -> bool:
    return all(low <= v <= high for v in values)


# ---- one builder per column type: (values, string dtype, index, name) -> the enforced column, or None ----

def _floats(values: list, target) -> np.ndarray | None:
    kinds = {type(v) for v in values}
    if not kinds <= _NUMBERS:
        return None
    if int in kinds and not _in_range((v for v in values if type(v) is int), _INT64_MIN, _INT64_MAX):
        return None
    if kinds == {int}:
        # pandas makes it int64 and MLflow's cast goes from there: int64 -> float32 rounds once.
        return np.array(values, dtype=np.int64).astype(target)
    floats = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return floats if target is np.float64 else floats.astype(target)


def _double(values, string_dtype, index, name):
    return _floats(values, np.float64)


def _float(values, string_dtype, index, name):
    return _floats(values, np.float32)


def _long(values, string_dtype, index, name):
    if not all(type(v) is int for v in values) or not _in_range(values, _INT64_MIN, _INT64_MAX):
        return None
    return np.array(values, dtype=np.int64)


def _integer(values, string_dtype, index, name):
    if not all(type(v) is int for v in values) or not _in_range(values, _INT32_MIN, _INT32_MAX):
        return None
    return np.array(values, dtype=np.int64).astype(np.int32)


def _boolean(values, string_dtype, index, name):
    if not all(type(v) is bool for v in values):
        return None
    return np.array(values, dtype=bool)


def _strings(values: list, string_dtype):
    """The string column pandas infers, or None where it would not be one of strings."""
    kinds = {type(v) for v in values}
    if not _plain_scalars(values):
        return None
    if isinstance(string_dtype, pd.StringDtype) and str in kinds and kinds <= {str, type(None)}:
        return pd.array(values, dtype=string_dtype)
    if kinds == {str}:
        return _objects(values)
    return None


def _string(values, string_dtype, index, name):
    return _strings(values, string_dtype)


def _binary(values, string_dtype, index, name):
    if not all(type(v) is str for v in values):
        return None
    try:
        return _objects([base64.decodebytes(bytes(v, "utf8")) for v in values])
    except (ValueError, UnicodeError):   # binascii.Error is a ValueError; a lone surrogate cannot be UTF-8
        return None


def _datetime(values, string_dtype, index, name):
    strings = _strings(values, string_dtype)
    if strings is None:
        return None
    column = pd.Series(strings, index=index, name=name)
    try:
        # MLflow's cast, step by step (cast_df_types_according_to_schema).
        parsed = pd.to_datetime(column)
        if pd.api.types.is_datetime64_any_dtype(parsed) and getattr(parsed.dt, "unit", "ns") != "ns":
            parsed = parsed.dt.as_unit("ns")
    except Exception:   # noqa: BLE001 - unparseable or mixed formats: MLflow says so
        return None
    # Anything else (timezone-aware) MLflow's enforcement converts or refuses.
    return parsed.array if parsed.dtype == np.dtype("datetime64[ns]") else None


def _objects(values: list) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


_BUILDERS = {"double": _double, "float": _float, "long": _long, "integer": _integer, "boolean": _boolean,
             "string": _string, "binary": _binary, "datetime": _datetime}
