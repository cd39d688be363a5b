"""The direct path for the commonest query: rows of numbers for a scikit-learn model with a numeric column
signature, scored without MLflow's per-request parsing and schema enforcement.

MLflow's scoring server turns each request into a pandas DataFrame, checks it against the signature, and
hands it to the model: about 4 ms per one-row request on this project's 2-core machine, where the model's
own `predict` on a numpy matrix takes 0.4 ms (KServe's sklearn server calls `predict` on numpy the same way).
For the requests where the two give the same answer by construction, this builds that matrix itself:

- the model is a scikit-learn estimator (`mlflow.sklearn` flavor, sklearn's own classes only: they turn a
  float DataFrame into exactly this matrix before predicting), with a signature of `double` columns and no
  params, whose fitted feature names (if any) are the signature's columns in order;
- the request is `dataframe_split` (no index) or `dataframe_records` holding exactly those columns, every
  value a JSON float (an integer may be refused by MLflow's schema check; it goes the long way).

Anything else returns None and is scored by MLflow as before, so answers and errors stay those of
`mlflow models serve`; `tests/test_direct_scoring.py` compares the two byte for byte.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import orjson

log = logging.getLogger(__name__)

_FORMATS = ("dataframe_split", "dataframe_records")
# sklearn classes that decide which columns to use by name: they need the DataFrame itself.
_NEEDS_COLUMN_NAMES = ("sklearn.compose", "sklearn.preprocessing._function_transformer")


class DirectScorer:
    """Scores numeric rows with the flavor's own predict function, answering as predictions_to_json does."""

    def __init__(self, predict_fn, columns: tuple[str, ...]):
        from mlflow.utils.proto_json_utils import NumpyEncoder, _get_jsonable_obj

        self._predict_fn = predict_fn
        self._columns = columns
        self._position = {name: i for i, name in enumerate(columns)}
        self._jsonable, self._json_encoder = _get_jsonable_obj, NumpyEncoder

    @classmethod
    def for_model(cls, pyfunc_model) -> "DirectScorer | None":
        """The direct scorer for this loaded pyfunc model, or None where only MLflow's path is exact."""
        from mlflow.types import DataType

        metadata = pyfunc_model.metadata
        schema = metadata.get_input_schema()
        if (pyfunc_model.loader_module != "mlflow.sklearn" or schema is None or schema.is_tensor_spec()
                or metadata.get_params_schema() is not None
                or getattr(metadata, "_is_signature_from_type_hint", lambda: False)()):
            return None
        specs = schema.inputs
        if not specs or any(spec.type != DataType.double or not spec.required or spec.name is None for spec in specs):
            return None
        columns = tuple(spec.name for spec in specs)
        if len(set(columns)) != len(columns):
            return None
        implementation = getattr(pyfunc_model, "_model_impl", None)
        predict_fn = getattr(pyfunc_model, "_predict_fn", None)
        raw = implementation.get_raw_model() if hasattr(implementation, "get_raw_model") else None
        if raw is None or predict_fn is None or not _is_plain_sklearn(raw):
            return None
        fitted_names = getattr(raw, "feature_names_in_", None)
        if fitted_names is not None and tuple(str(n) for n in fitted_names) != columns:
            return None
        # The matrix holds the fitted columns in their fitted order; sklearn's note that it has no names is moot.
        warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
        log.info("scoring numeric rows directly (%d double columns); other requests go through MLflow", len(columns))
        return cls(predict_fn, columns)

    def rows(self, request: Any) -> list[list[float]] | None:
        """The request's rows in signature order, or None when MLflow must parse it (pure)."""
        if not isinstance(request, dict) or len(request) != 1:
            return None
        form, data = next(iter(request.items()))
        if form == "dataframe_split":
            return self._split_rows(data)
        if form == "dataframe_records":
            return self._record_rows(data)
        return None

    def answer_body(self, body: bytes) -> bytes | None:
        """The whole answer to a JSON request body, or None: score it through MLflow."""
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:   # NaN, a non-UTF-8 body, ...: MLflow parses what it accepts
            return None
        rows = self.rows(request)
        if rows is None:
            return None
        prediction = self.predict(rows)
        return None if prediction is None else self.encode(prediction)

    def predict(self, rows: list[list[float]]):
        """The model's raw prediction, or None when the model refused the matrix (MLflow then says why)."""
        import numpy as np

        try:
            # Column-major, as a DataFrame's values are: BLAS sums in another order on a row-major copy, and
            # a regressor's last digit would differ from MLflow's answer.
            return self._predict_fn(np.array(rows, dtype=np.float64, order="F"))
        except Exception:   # noqa: BLE001 - the MLflow path raises it again, with MLflow's own answer
            return None

    def encode(self, prediction) -> bytes:
        """What predictions_to_json writes for `prediction`."""
        encoder = self._json_encoder()
        return "".join(encoder.iterencode({"predictions": self._jsonable(prediction, pandas_orient="records")})).encode()

    def _split_rows(self, data: Any) -> list[list[float]] | None:
        if not isinstance(data, dict) or set(data) != {"columns", "data"}:
            return None
        columns, rows = data["columns"], data["data"]
        if not isinstance(columns, list) or not isinstance(rows, list) or not rows:
            return None
        width = len(self._columns)
        if len(columns) != width or set(columns) != set(self._columns) or len(set(columns)) != width:
            return None
        for row in rows:
            if not isinstance(row, list) or len(row) != width or not all(type(v) is float for v in row):
                return None
        if tuple(columns) == self._columns:
            return rows
        order = [columns.index(name) for name in self._columns]
        return [[row[i] for i in order] for row in rows]

    def _record_rows(self, records: Any) -> list[list[float]] | None:
        if not isinstance(records, list) or not records:
            return None
        columns, width = self._columns, len(self._columns)
        out = []
        for record in records:
            if not isinstance(record, dict) or len(record) != width:
                return None
            try:
                row = [record[name] for name in columns]
            except KeyError:
                return None
            if not all(type(v) is float for v in row):
                return None
            out.append(row)
        return out


def is_plain_json(content_type: str) -> bool:
    """Whether MLflow reads the body as UTF-8 JSON (the content type exactly as its scoring server checks it)."""
    mime, *parameters = (part.strip() for part in content_type.split(";"))
    return mime == "application/json" and all(
        key == "charset" and value.lower() == "utf-8" for key, _, value in (p.partition("=") for p in parameters))


def _is_plain_sklearn(estimator) -> bool:
    """Whether the estimator, and every estimator inside it (pipeline steps, an ensemble's members), is
    scikit-learn's own and none picks columns by name."""
    module = type(estimator).__module__
    if not module.startswith("sklearn.") or module.startswith(_NEEDS_COLUMN_NAMES):
        return False
    for name in ("estimator", "base_estimator", "final_estimator"):
        inner = getattr(estimator, name, None)
        if inner is not None and not isinstance(inner, str) and not _is_plain_sklearn(inner):
            return False
    for name in ("steps", "estimators", "transformer_list"):
        for item in getattr(estimator, name, None) or ():
            inner = item[-1] if isinstance(item, tuple) else item
            if inner not in (None, "passthrough", "drop") and not _is_plain_sklearn(inner):
                return False
    return True
