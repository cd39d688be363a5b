"""Open Inference Protocol tensors ↔ an MLflow model's inputs and outputs, read off its signature.

The signature decides: a column-based signature takes one 1-D tensor per column (a DataFrame is built
from them), a tensor-based one takes one tensor per TensorSpec (an ndarray, or a dict of them by name).
A tensor that does not fit (unknown or missing name, datatype that does not cast safely, wrong rank or
fixed dimension) is an InvalidParameter naming it, before the model runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from services.common.errors import InvalidParameter
from services.common.tensors import (
    NUMPY_DTYPES, ModelMetadata, RawTensor, TensorMetadata, array_from_raw, datatype_of, raw_from_array,
)

DEFAULT_OUTPUT = "predictions"   # an unnamed single output, as `mlflow models serve` names it in JSON


def model_metadata(model_meta) -> ModelMetadata:
    """Inputs, outputs and platform of an mlflow.models.Model (the pyfunc's `metadata`)."""
    flavors = [f for f in model_meta.flavors if f != "python_function"]
    platform = f"mlflow_{flavors[0]}" if flavors else "mlflow_pyfunc"
    return ModelMetadata(platform, input_metadata(model_meta.get_input_schema()),
                         output_metadata(model_meta.get_output_schema()))


def input_metadata(schema) -> tuple[TensorMetadata, ...]:
    if schema is None:
        return ()
    return tuple(_spec_metadata(spec, spec.name or f"input-{i}", schema.is_tensor_spec())
                 for i, spec in enumerate(schema.inputs))


def output_metadata(schema) -> tuple[TensorMetadata, ...]:
    if schema is None:
        return ()
    names = _output_names(schema)
    return tuple(_spec_metadata(spec, name, schema.is_tensor_spec()) for spec, name in zip(schema.inputs, names))


def model_input(schema, tensors: Sequence[RawTensor]) -> Any:
    """What to hand `pyfunc.predict` for these tensors: a DataFrame, an ndarray or a dict of ndarrays."""
    names = [t.name for t in tensors]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidParameter(f"input '{duplicates[0]}' is given twice")
    if schema is None:
        arrays = {t.name: _plain(array_from_raw(t)) for t in tensors}
        return next(iter(arrays.values())) if len(arrays) == 1 else arrays
    expected = input_metadata(schema)
    matched = _match(expected, tensors, named=schema.has_input_names())
    # What was sent is checked first, so its own faults are named before anything missing.
    given = {meta.name: _checked(matched[meta.name], meta) for meta in expected if meta.name in matched}
    for spec, meta in zip(schema.inputs, expected):
        if meta.name not in given and getattr(spec, "required", True):
            raise InvalidParameter(f"input '{meta.name}' is missing; the model requires it")
    if schema.is_tensor_spec():
        arrays = {meta.name: _plain(given[meta.name]) if meta.datatype == "BYTES"
                  else given[meta.name].astype(spec.type, copy=False)
                  for spec, meta in zip(schema.inputs, expected)}
        # MLflow names every spec of a multi-tensor signature; a single unnamed one takes the bare array.
        return arrays if schema.has_input_names() else next(iter(arrays.values()))
    columns, rows = {}, None
    for spec, meta in zip(schema.inputs, expected):
        if meta.name not in given:
            continue
        values = given[meta.name]
        if len(meta.shape) == 1:
            values = values.reshape(-1)
        if rows is not None and len(values) != rows:
            raise InvalidParameter(f"input '{meta.name}' has {len(values)} rows, other inputs have {rows}")
        rows = len(values)
        columns[spec.name if schema.has_input_names() else len(columns)] = _column(values, meta)
    return pd.DataFrame(columns)


def output_tensors(prediction: Any, schema, requested: Sequence[str] = ()) -> list[RawTensor]:
    """A prediction (ndarray, DataFrame, Series, list, dict, scalar) as named tensors."""
    default = _output_names(schema)[0] if schema is not None and len(schema.inputs) == 1 else DEFAULT_OUTPUT
    named = _named_outputs(prediction, default)
    if requested:
        available = {name for name, _ in named}
        unknown = [n for n in requested if n not in available]
        if unknown:
            raise InvalidParameter(f"output '{unknown[0]}' is not an output of this model; it returns: "
                                   f"{', '.join(sorted(available))}")
        named = [(n, a) for n, a in named if n in requested]
    return [raw_from_array(name, _encodable(array)) for name, array in named]


# ---- inputs ----

def _spec_metadata(spec, name: str, is_tensor: bool) -> TensorMetadata:
    if is_tensor:
        return TensorMetadata(name, datatype_of(spec.type), tuple(int(d) for d in spec.shape))
    element = getattr(spec.type, "dtype", None)   # Array(DataType.x): a list per row
    if element is not None and hasattr(element, "to_numpy"):
        return TensorMetadata(name, _column_datatype(element), (-1, -1))
    return TensorMetadata(name, _column_datatype(spec.type), (-1,))


def _column_datatype(data_type) -> str:
    try:
        dtype = data_type.to_numpy()
    except (AttributeError, TypeError, ValueError):
        return "BYTES"      # objects, maps, unions: JSON text
    return "BYTES" if dtype.kind in "OUSM" else datatype_of(dtype)


def _output_names(schema) -> list[str]:
    if len(schema.inputs) == 1:
        return [schema.inputs[0].name or DEFAULT_OUTPUT]
    return [spec.name or f"output-{i}" for i, spec in enumerate(schema.inputs)]


def _match(expected: Sequence[TensorMetadata], tensors: Sequence[RawTensor], *, named: bool) -> dict[str, RawTensor]:
    """Tensors by expected input name; unnamed signatures take the tensors in order."""
    if not named:
        if len(tensors) != len(expected):
            raise InvalidParameter(f"the model takes {len(expected)} input(s) "
                                   f"({', '.join(m.name for m in expected)}), not {len(tensors)}")
        return {meta.name: tensor for meta, tensor in zip(expected, tensors)}
    by_name = {t.name: t for t in tensors}
    known = {m.name for m in expected}
    for tensor in tensors:
        if tensor.name not in known:
            raise InvalidParameter(f"input '{tensor.name}' is not an input of this model; it takes: "
                                   f"{', '.join(m.name for m in expected)}")
    return by_name


def _checked(tensor: RawTensor, meta: TensorMetadata) -> np.ndarray:
    """The tensor as an array, if its datatype casts safely to the signature's and its shape fits."""
    if not _casts(tensor.datatype, meta.datatype):
        raise InvalidParameter(f"input '{meta.name}': datatype {tensor.datatype} does not fit the model's "
                               f"{meta.datatype}")
    fits = len(tensor.shape) == len(meta.shape) and all(e in (-1, s) for s, e in zip(tensor.shape, meta.shape))
    if len(meta.shape) == 1 and len(tensor.shape) == 2 and tensor.shape[1] == 1:
        fits = True         # a column sent as [N, 1]
    if not fits:
        raise InvalidParameter(f"input '{meta.name}': shape {list(tensor.shape)} does not fit the model's "
                               f"{list(meta.shape)}")
    return array_from_raw(tensor)


def _casts(sent: str, expected: str) -> bool:
    if sent == expected:
        return True
    if "BYTES" in (sent, expected) or "BOOL" in (sent, expected):
        return False
    return bool(np.can_cast(NUMPY_DTYPES[sent], NUMPY_DTYPES[expected], casting="safe"))


def _column(values: np.ndarray, meta: TensorMetadata):
    if meta.datatype == "BYTES":
        return _plain(values).tolist() if values.ndim == 1 else [list(row) for row in _plain(values)]
    values = values.astype(NUMPY_DTYPES[meta.datatype], copy=False)
    return values if values.ndim == 1 else list(values)


def _plain(array: np.ndarray) -> np.ndarray:
    """BYTES elements as str where they are UTF-8 (MLflow string columns), bytes otherwise."""
    if array.dtype != object:
        return array
    out = np.empty(array.shape, dtype=object)
    flat_in, flat_out = array.reshape(-1), out.reshape(-1)
    for i, item in enumerate(flat_in):
        try:
            flat_out[i] = item.decode() if isinstance(item, bytes) else item
        except UnicodeDecodeError:
            flat_out[i] = item
    return out


# ---- outputs ----

def _named_outputs(prediction: Any, default: str) -> list[tuple[str, np.ndarray]]:
    if isinstance(prediction, pd.DataFrame):
        if len(prediction.columns) == 1 and not isinstance(prediction.columns[0], str):
            return [(default, _series_array(prediction.iloc[:, 0]))]
        return [(str(column), _series_array(prediction[column])) for column in prediction.columns]
    if isinstance(prediction, pd.Series):
        name = prediction.name if isinstance(prediction.name, str) else default
        return [(name, _series_array(prediction))]
    if isinstance(prediction, dict):
        return [(str(key), _array(value)) for key, value in prediction.items()]
    return [(default, _array(prediction))]


def _series_array(series: pd.Series) -> np.ndarray:
    return _array(series.tolist()) if series.dtype == object else series.to_numpy()


def _array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):          # a torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, (pd.DataFrame, pd.Series)):
        value = value.to_numpy()
    if isinstance(value, np.ndarray):
        return value
    if not isinstance(value, (list, tuple)):
        return np.asarray([value])
    try:
        array = np.asarray(value)
    except ValueError:                    # ragged
        array = None
    if array is None or (array.dtype == object and array.ndim > 1):
        array = np.empty(len(value), dtype=object)
        array[:] = list(value)
    return array


def _encodable(array: np.ndarray) -> np.ndarray:
    """Non-numeric elements become str (UTF-8 on the wire); dicts and lists as JSON text."""
    if array.dtype.kind in "biuf":
        return array
    out = np.empty(array.shape, dtype=object)
    flat_in, flat_out = array.reshape(-1), out.reshape(-1)
    for i, item in enumerate(flat_in):
        if isinstance(item, (str, bytes)):
            flat_out[i] = item
        elif isinstance(item, (dict, list, tuple)):
            flat_out[i] = json.dumps(item, default=_json_default)
        else:
            flat_out[i] = str(item)
    return out


def _json_default(value: Any):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def has_nested_columns(schema) -> bool:
    """Whether a column holds arrays, objects or maps (then an `inputs` list is not one row per element)."""
    from mlflow.types import DataType

    if schema is None or schema.is_tensor_spec():
        return False
    return any(not isinstance(spec.type, DataType) for spec in schema.inputs)
