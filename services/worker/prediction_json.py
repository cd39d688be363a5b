"""The bytes MLflow's scoring server writes for a prediction (`predictions_to_json`), made faster.

predictions_to_json turns a DataFrame into records with `to_dict(orient="records")` (a Series first becomes a
one-column DataFrame) and writes `{"predictions": ...}` with `json.dump` and MLflow's NumpyEncoder. Both
steps are slow for a small answer: to_dict walks the frame row by row through Series objects (about 0.1 ms
for one row of two columns), and json.dump always takes the pure-Python encoder.

Here a frame whose columns are numpy numbers, booleans or objects, or pandas strings, becomes records
column by column, each value as to_dict gives it (a number as its `.item()`, an object or a string boxed by
the function to_dict boxes with), and the C encoder writes them with the same NumpyEncoder: the same bytes,
about ten times faster. Any other column type, and column names other than unique strings and ints, go
through MLflow's own conversion. tests/unit/test_prediction_json.py compares the bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import scoring_server
from mlflow.utils.proto_json_utils import NumpyEncoder, _get_jsonable_obj
from pandas.core.dtypes.cast import maybe_box_native

_NUMPY_KINDS = frozenset("biuf")   # booleans, signed and unsigned ints, floats: tolist() is each value's .item()
_PLAIN_NAMES = (str, int)
_MLFLOWS_PREDICTIONS_TO_JSON = scoring_server.predictions_to_json


def jsonable(prediction: Any) -> Any:
    """What `_get_jsonable_obj(prediction, pandas_orient="records")` returns (equal values, equal types)."""
    if isinstance(prediction, pd.DataFrame):
        records = _frame_records(prediction)
    elif isinstance(prediction, pd.Series):
        records = _series_records(prediction)
    else:
        records = None
    return _get_jsonable_obj(prediction, pandas_orient="records") if records is None else records


def predictions_json(predictions: Any) -> bytes:
    """`{"predictions": predictions}` as predictions_to_json writes it, for a value jsonable() returned;
    TypeError or ValueError where NumpyEncoder cannot write it, as MLflow fails."""
    return NumpyEncoder().encode({"predictions": predictions}).encode()


def _frame_records(frame: pd.DataFrame) -> list[dict] | None:
    names = frame.columns
    keys = names.tolist()
    if isinstance(names, pd.MultiIndex) or not names.is_unique or any(type(k) not in _PLAIN_NAMES for k in keys):
        return None
    columns = []
    for position in range(frame.shape[1]):
        values = _column_values(_array(frame, position))
        if values is None:
            return None
        columns.append(values)
    return [dict(zip(keys, row)) for row in zip(*columns)] if columns else _get_jsonable_obj(frame, "records")


def _series_records(series: pd.Series) -> list[dict] | None:
    # pd.DataFrame(series) names its one column series.name, or 0 where it has none.
    name = 0 if series.name is None else series.name
    if type(name) not in _PLAIN_NAMES:
        return None
    values = _column_values(series.array)
    return None if values is None else [{name: value} for value in values]


def _array(frame: pd.DataFrame, position: int):
    """The column's values without a Series around them (the frame's own arrays, not copies)."""
    return frame._get_column_array(position) if _HAS_COLUMN_ARRAYS else frame.iloc[:, position].array


_HAS_COLUMN_ARRAYS = hasattr(pd.DataFrame, "_get_column_array")   # pandas' own accessor, where this pandas has it


def _column_values(array) -> list | None:
    """The column's values as to_dict's records hold them, or None for a type not taken here."""
    if isinstance(array, pd.arrays.NumpyExtensionArray):
        array = array.to_numpy()
    dtype = array.dtype
    if isinstance(array, np.ndarray):
        if dtype.kind in _NUMPY_KINDS:
            return array.tolist()
        if dtype == np.dtype(object):
            return [maybe_box_native(value) for value in array]
        return None
    if isinstance(dtype, pd.StringDtype):
        return [maybe_box_native(value) for value in array]
    return None


def predictions_to_json(raw_predictions: Any, output, metadata: dict | None = None) -> None:
    """MLflow's `scoring_server.predictions_to_json`, writing the same text to `output` and failing where it
    fails; `use_in_scoring_server` puts it in MLflow's place."""
    if metadata and "predictions" in metadata:   # MLflow's own refusal, in its words
        return _MLFLOWS_PREDICTIONS_TO_JSON(raw_predictions, output, metadata)
    output.write(NumpyEncoder().encode({"predictions": jsonable(raw_predictions), **(metadata or {})}))


def use_in_scoring_server() -> None:
    """Makes MLflow's `invocations()` (which a replica calls for every request the direct path does not take)
    render its answers with predictions_to_json above. Called once, in a replica process only."""
    scoring_server.predictions_to_json = predictions_to_json
