"""Adaptive batching, the pure part: which requests may share one predict call, how they merge, how the
answer splits back per request, and when a batch goes. No I/O, no clock (services/worker/batch_collector.py is the
async collector around it).

Two requests merge only when the merged call cannot change what either gets alone, as far as the request
shows it: the same input format, content type, params (compared as canonical JSON), columns in the same
order, and the same JSON value kinds in each column (so pandas and numpy infer the same dtypes when the rows
are parsed together as when parsed alone). Anything else is scored alone: a CSV body, an LLM-style body, a
scalar input, NaN-free and NaN-holding columns, a malformed tensor. The model itself must be row-wise (one
output row per input row, each depending on its own row only): that is what `max_batch_size > 1` asserts,
and an output that cannot be split by rows sends the batch back to be scored request by request.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from services.common.tensors import NUMPY_DTYPES, RawTensor

JSON_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_JSON_CONTENT_TYPES = ("application/json", "application/json;charset=utf-8")
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class _Unmergeable(Exception):
    """This request is scored alone."""


@dataclass(frozen=True)
class JsonPart:
    """One JSON request that may merge with others of the same `key`."""

    key: Hashable
    form: str          # one of JSON_FORMATS ("inputs" as columns is keyed apart from "inputs" as rows)
    rows: int
    data: Any          # the decoded value under the format key
    params: dict | None
    body: bytes        # the request as sent: scored alone from it when the batch falls back
    content_type: str

    @property
    def request(self) -> dict:
        """The decoded request again: its format's value and its params (the only keys a part has)."""
        return {self.form: self.data} if self.params is None else {self.form: self.data, "params": self.params}


@dataclass(frozen=True)
class TensorPart:
    """One Open Inference Protocol request that may merge with others of the same `key`."""

    key: Hashable
    rows: int
    inputs: tuple[RawTensor, ...]
    outputs: tuple[str, ...]
    params: dict


# ---- JSON (Databricks / MLflow scoring formats) ----

def json_part(body: bytes, content_type: str, *, has_nested_columns: bool = False) -> JsonPart | None:
    """The request as a mergeable part, or None: score it alone.

    `has_nested_columns`: the model's signature has array/object columns, where an `inputs` or `instances`
    list may not be one row per element, so only the DataFrame formats merge.
    """
    if content_type.replace(" ", "").lower() not in _JSON_CONTENT_TYPES:
        return None
    try:
        request = json.loads(body)   # what MLflow's scoring server parses with: the same values, NaN included
    except (ValueError, UnicodeDecodeError, RecursionError):   # (nested too deep: MLflow answers it alone)
        return None
    if not isinstance(request, dict):
        return None
    forms = [k for k in request if k in JSON_FORMATS]
    if len(forms) != 1 or set(request) - {forms[0], "params"}:
        return None
    form, data, params = forms[0], request[forms[0]], request.get("params")
    if params is not None and not isinstance(params, dict):
        return None
    try:
        if form in ("inputs", "instances") and has_nested_columns:
            raise _Unmergeable
        shape, rows = _DATA_SHAPES[form](data)
        params_key = None if params is None else json.dumps(params, sort_keys=True)
    except (_Unmergeable, TypeError, ValueError, RecursionError):
        return None
    # Both accepted content types mean UTF-8 JSON to MLflow: they need not be told apart.
    return JsonPart((form, shape, params_key), form, rows, data, params, body, content_type)


def merge_json(parts: Sequence[JsonPart]) -> dict:
    """The request MLflow would parse for all the parts' rows at once (parts share one key)."""
    first = parts[0]
    if first.form == "dataframe_split":
        merged: Any = {k: first.data[k] for k in ("columns",) if k in first.data}
        merged["data"] = [row for p in parts for row in p.data["data"]]
        if "index" in first.data:
            merged["index"] = [label for p in parts for label in p.data["index"]]
    elif isinstance(first.data, dict):   # "inputs" as columns
        merged = {name: [v for p in parts for v in p.data[name]] for name in first.data}
    else:
        merged = [row for p in parts for row in p.data]
    request = {first.form: merged}
    if first.params is not None:
        request["params"] = first.params
    return request


def split_rows(prediction: Any, counts: Sequence[int]) -> list | None:
    """The prediction cut into each part's rows, or None when it does not have one row per input row."""
    import numpy as np
    import pandas as pd

    total = sum(counts)
    if isinstance(prediction, (pd.DataFrame, pd.Series)):
        cut = prediction.iloc
    elif isinstance(prediction, np.ndarray) and prediction.ndim > 0:
        cut = prediction
    elif isinstance(prediction, list):
        cut = prediction
    else:
        return None        # a scalar, a dict, a string: not one answer per row
    if len(prediction) != total:
        return None
    out, start = [], 0
    for count in counts:
        out.append(cut[start:start + count])
        start += count
    return out


def _split_shape(data: Any) -> tuple[Hashable, int]:
    if not isinstance(data, dict) or set(data) - {"columns", "data", "index"}:
        raise _Unmergeable
    rows = data.get("data")
    if not isinstance(rows, list) or not rows:
        raise _Unmergeable
    columns = data.get("columns")
    if columns is not None:
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise _Unmergeable
        columns = tuple(columns)
    index_kinds = None
    if "index" in data:
        index = data["index"]
        if not isinstance(index, list) or len(index) != len(rows):
            raise _Unmergeable
        index_kinds = frozenset(_kind(label) for label in index)
    return (columns, index_kinds, _row_kinds(rows)), len(rows)


def _records_shape(data: Any) -> tuple[Hashable, int]:
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) for r in data):
        raise _Unmergeable
    return _row_kinds(data), len(data)


def _instances_shape(data: Any) -> tuple[Hashable, int]:
    if not isinstance(data, list) or not data:
        raise _Unmergeable
    return _row_kinds(data), len(data)


def _inputs_shape(data: Any) -> tuple[Hashable, int]:
    if isinstance(data, list):
        return ("rows", *_instances_shape(data)[:1]), len(data)
    if not isinstance(data, dict) or not data:
        raise _Unmergeable
    lengths = {len(v) if isinstance(v, list) else -1 for v in data.values()}
    if len(lengths) != 1 or min(lengths) < 1:
        raise _Unmergeable    # a scalar input, or columns of unequal length: not rows
    return ("columns", tuple((name, frozenset(map(_kind, v))) for name, v in data.items())), lengths.pop()


_DATA_SHAPES = {"dataframe_split": _split_shape, "dataframe_records": _records_shape,
                "instances": _instances_shape, "inputs": _inputs_shape}


def _row_kinds(rows: list) -> frozenset:
    """The kinds of a request's rows; dict rows must all name the same keys in the same order (pandas takes
    the column order from the first record, so a request alone and merged must agree on it)."""
    kinds = frozenset(map(_kind, rows))
    keys = {tuple(row) for row in rows if isinstance(row, dict)}
    if len(keys) > 1:
        raise _Unmergeable
    return kinds


def _kind(value: Any) -> Hashable:
    """A JSON value's type and structure, down to list lengths: what numpy/pandas dtype inference sees."""
    kind = type(value)
    if kind is float or kind is str or kind is bool or value is None:
        return kind.__name__
    if kind is int:
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _Unmergeable   # beyond int64: the column's dtype would depend on its neighbours
        return "int"
    if kind is list:
        return ("list", tuple(map(_kind, value)))
    if kind is dict:
        return ("dict", tuple((k, _kind(v)) for k, v in value.items()))
    raise _Unmergeable


# ---- Open Inference Protocol tensors ----

def tensor_part(inputs: Sequence[RawTensor], outputs: Sequence[str], params: dict) -> TensorPart | None:
    """The request as a mergeable part, or None: score it alone (no rows, inputs of different first
    dimensions, or bytes that do not fill the shape: its own error is then reported by itself)."""
    if not inputs or not inputs[0].shape:
        return None
    rows = inputs[0].shape[0]
    if rows < 1 or any(not t.shape or t.shape[0] != rows or _element_offsets(t) is None for t in inputs):
        return None
    try:
        params_key = json.dumps(params, sort_keys=True)
    except (TypeError, ValueError):
        return None
    key = ("oip", tuple((t.name, t.datatype, t.shape[1:]) for t in inputs), tuple(outputs), params_key)
    return TensorPart(key, rows, tuple(inputs), tuple(outputs), params)


def merge_tensors(parts: Sequence[TensorPart]) -> list[RawTensor]:
    """Each input concatenated along dimension 0 (raw bytes of BYTES tensors concatenate element-wise too)."""
    rows = sum(p.rows for p in parts)
    return [RawTensor(t.name, t.datatype, (rows, *t.shape[1:]), b"".join(p.inputs[i].raw for p in parts))
            for i, t in enumerate(parts[0].inputs)]


def split_tensors(outputs: Sequence[RawTensor], counts: Sequence[int]) -> list[list[RawTensor]] | None:
    """Each output cut along dimension 0 into each part's rows, or None when an output is not one row per
    input row."""
    total = sum(counts)
    out: list[list[RawTensor]] = [[] for _ in counts]
    for tensor in outputs:
        offsets = _element_offsets(tensor)
        if not tensor.shape or tensor.shape[0] != total or offsets is None:
            return None
        per_row = math.prod(tensor.shape[1:])
        row = 0
        for i, count in enumerate(counts):
            start, end = offsets[row * per_row], offsets[(row + count) * per_row]
            out[i].append(RawTensor(tensor.name, tensor.datatype, (count, *tensor.shape[1:]), tensor.raw[start:end]))
            row += count
    return out


def _element_offsets(tensor: RawTensor) -> list[int] | range | None:
    """Where each element of the raw bytes starts (plus the end), or None when they do not fill the shape."""
    count = math.prod(tensor.shape)
    if tensor.datatype != "BYTES":
        size = NUMPY_DTYPES[tensor.datatype].itemsize
        return range(0, (count + 1) * size, size) if len(tensor.raw) == count * size else None
    offsets, offset, raw = [0], 0, tensor.raw
    while offset < len(raw):
        if offset + 4 > len(raw):
            return None
        offset += 4 + struct.unpack_from("<I", raw, offset)[0]
        offsets.append(offset)
    return offsets if offset == len(raw) and len(offsets) == count + 1 else None


# ---- when a batch goes, and what goes together ----

def is_batch_due(pending_rows: int, oldest_age_s: float, max_rows: int, max_wait_s: float) -> bool:
    """Whether the pending requests go now: a full batch, or the oldest has waited long enough."""
    return pending_rows >= max_rows or oldest_age_s >= max_wait_s


def plan_batch(parts: Sequence[tuple[Hashable, int]], max_rows: int) -> list[int]:
    """Which pending parts (key, rows), oldest first, go in the next batch: the oldest, and after it, in
    order, those of its key while the rows fit in max_rows. A part larger than max_rows goes alone."""
    key, rows = parts[0]
    chosen = [0]
    for i in range(1, len(parts)):
        other_key, other_rows = parts[i]
        if other_key == key and rows + other_rows <= max_rows:
            chosen.append(i)
            rows += other_rows
            if rows == max_rows:
                break
    return chosen


def is_json_batchable(metadata, schema) -> bool:
    """Whether a model's JSON requests merge: not where MLflow hands the model the raw `inputs` (a signature
    from type hints) or a tensor's first dimension is fixed (then it is not a batch dimension)."""
    is_type_hint = getattr(metadata, "_is_signature_from_type_hint", lambda: False)()
    return not is_type_hint and is_tensor_batchable(schema)


def is_tensor_batchable(schema) -> bool:
    """Whether a model's tensor requests merge: every input's first dimension is variable."""
    return schema is None or not schema.is_tensor_spec() or \
        all(spec.shape and spec.shape[0] == -1 for spec in schema.inputs)
