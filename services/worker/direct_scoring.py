"""The direct path: a JSON request scored without MLflow's per-request parsing and schema enforcement, with
the answer `mlflow models serve` gives, byte for byte.

MLflow's scoring server (`scoring_server.invocations`) decodes the body, has pandas infer a DataFrame from
it, casts that to the signature's types, then `PyFuncModel.predict` enforces the schema again and calls the
flavor's predict function: over a millisecond per one-row request before the model runs. For the requests
where the outcome is known, this builds the enforced DataFrame itself (services/worker/direct_frame.py) and
calls the flavor's predict function as `PyFuncModel.predict` does after enforcement, so every flavor (scikit-
learn, XGBoost, LightGBM, PyTorch, a custom python_model, ...) gets the very frame MLflow would hand it.

It takes a model loaded as a plain `PyFuncModel` (no signature from type hints) with a column signature of
scalar types, and a `dataframe_split` or `dataframe_records` request (with `params` or without, which
MLflow's own `_enforce_params_schema` checks) whose values direct_frame takes; or with a signature of one
unnamed numeric tensor, and an `inputs` request direct_tensor takes. A numeric scikit-learn model is handed
the frame's float matrix instead (services/worker/direct_sklearn.py).
Anything else (`inputs`/`instances`, CSV, LLM-style bodies, ...), any request the model raises on, and any
answer NumpyEncoder cannot write return None and are scored by MLflow, so answers and errors stay MLflow's;
tests/unit/test_direct_scoring.py and tests/unit/test_direct_parse.py compare the two.
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any

from services.worker import direct_frame, direct_sklearn, direct_tensor, prediction_json

log = logging.getLogger(__name__)

class DirectScorer:
    """Scores a loaded pyfunc model's requests from the enforced DataFrame, answering as predictions_to_json."""

    def __init__(self, model, columns: tuple[direct_frame.Column, ...] | direct_tensor.Tensor, string_dtype):
        import mlflow.pyfunc as pyfunc

        self._model = model
        self._tensor = columns if isinstance(columns, direct_tensor.Tensor) else None
        self._columns = () if self._tensor is not None else columns
        self._string_dtype = string_dtype
        self._params_schema = model.metadata.get_params_schema()
        self._predict_fn = model._predict_fn
        takes = inspect.signature(self._predict_fn).parameters.get("params")
        self._passes_params = takes is not None and takes.kind != inspect.Parameter.VAR_KEYWORD
        # What PyFuncModel.predict calls around the flavor's predict function, as its module names them.
        self._context_type, self._set_context = pyfunc.Context, pyfunc.set_prediction_context
        self._current_context = pyfunc._try_get_prediction_context
        self._dependencies = pyfunc._get_dependencies_schema_from_model
        self._enforce_params = pyfunc._enforce_params_schema
        self._params_warning = pyfunc._log_warning_if_params_not_in_predict_signature
        self._pyfunc_logger = pyfunc._logger
        # A numeric scikit-learn model is handed the frame's float matrix (services/worker/direct_sklearn.py).
        self._takes_matrix = bool(self._columns) and all(c.type == "double" and c.required for c in self._columns) \
            and direct_sklearn.takes_matrix(model, tuple(c.name for c in self._columns))

    @classmethod
    def for_model(cls, pyfunc_model) -> "DirectScorer | None":
        """The direct scorer for this loaded pyfunc model, or None where only MLflow's path is exact."""
        columns = _signature_columns(pyfunc_model)
        if columns is None:
            return None
        scorer = cls(pyfunc_model, columns, direct_frame.str_dtype())
        if not scorer._builds_mlflows_input():
            log.warning("the direct path's model input differs from MLflow's with this pandas and numpy; every "
                        "request goes through MLflow")
            return None
        if scorer._tensor is not None:
            log.info("scoring `inputs` requests directly (a %s tensor of shape %s); others go through MLflow",
                     scorer._tensor.dtype, scorer._tensor.shape)
        else:
            log.info("scoring %s requests directly (%d columns: %s); others go through MLflow",
                     "text `inputs`" if columns[0].name is None else "dataframe_split/records", len(columns),
                     ", ".join(sorted({c.type for c in columns})))
        return scorer

    def frame(self, request: Any):
        """(the DataFrame, the params) PyFuncModel.predict hands the flavor's predict function for this decoded
        request after its enforcement, or None: only MLflow's parse is exact for it."""
        return self._model_input(request, matrix=False)

    def prediction(self, request: Any) -> Any | None:
        """The model's raw prediction for a decoded request (what pyfunc predict returns), or None: score it
        through MLflow (also when the model raised: MLflow then answers with its error)."""
        prepared = self._model_input(request, matrix=self._takes_matrix)
        if prepared is None:
            return None
        try:
            return self._call(*prepared)
        except Exception:   # noqa: BLE001 - the MLflow path raises it again, with MLflow's own answer
            return None

    def answer_body(self, body: bytes) -> bytes | None:
        """The whole 200 answer to a JSON request body, or None: score it through MLflow."""
        try:
            request = json.loads(body)   # MLflow's decoder: the same values (NaN, big ints, ...) by construction
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        return self.answer(request)

    def answer(self, request: Any) -> bytes | None:
        """The whole 200 answer to a decoded JSON request (decoded as MLflow decodes it), or None."""
        prediction = self.prediction(request)
        if prediction is None:
            return None
        try:
            return self.encode(prediction)
        except Exception:   # noqa: BLE001 - e.g. a value NumpyEncoder cannot write: MLflow fails its own way
            return None

    def encode(self, prediction) -> bytes:
        """What predictions_to_json writes for `prediction`."""
        return prediction_json.predictions_json(prediction_json.jsonable(prediction))

    def _model_input(self, request: Any, matrix: bool):
        if not isinstance(request, dict):
            return None
        forms = [key for key in request if key != "params"]
        if len(forms) != 1:   # direct_frame builds dataframe_split, dataframe_records and (text) inputs only
            return None
        form, data = forms[0], request[forms[0]]
        try:
            if self._tensor is not None:
                model_input = direct_tensor.build_tensor(self._tensor, data) if form == "inputs" else None
            else:
                model_input = direct_frame.build_matrix(self._columns, form, data) if matrix else None
                if model_input is None:
                    model_input = direct_frame.build_frame(self._columns, form, data, self._string_dtype)
        except Exception:   # noqa: BLE001 - nothing known raises here; were it to, MLflow's path answers
            log.debug("the direct path could not build this request's frame", exc_info=True)
            return None
        if model_input is None:
            return None
        try:
            params = self._enforce_params(request.get("params"), self._params_schema)
        except Exception:   # noqa: BLE001 - params that do not fit: MLflow says why
            return None
        return model_input, params

    def _call(self, data, params):
        """PyFuncModel.predict after its schema enforcement: the prediction context, then the flavor."""
        context = self._current_context() or self._context_type()
        with self._set_context(context):
            if schema := self._dependencies(self._model._model_meta):
                context.update(**schema)
            if self._model.model_id:
                context.update(model_id=self._model.model_id)
            if self._passes_params:
                return self._predict_fn(data, params=params)
            self._params_warning(self._pyfunc_logger, params)
            return self._predict_fn(data)

    def _builds_mlflows_input(self) -> bool:
        """Whether MLflow's own parse and enforcement make the same model input of a probe request (a guard for
        other pandas and numpy versions than tests/unit/test_direct_parse.py checks)."""
        import numpy as np
        import pandas as pd
        from mlflow.models.utils import _enforce_schema
        from mlflow.pyfunc.scoring_server import infer_and_parse_data

        schema = self._model.metadata.get_input_schema()
        if self._tensor is not None:
            probe = {"inputs": np.ones([2] + [1 if size == -1 else size for size in self._tensor.shape[1:]])
                     .tolist()}
        elif self._columns[0].name is None:
            probe = {"inputs": ["a", "b"]}
        else:
            probe = {"dataframe_split": {"columns": [c.name for c in self._columns],
                                         "data": [[_PROBE_VALUES[c.type] for c in self._columns]] * 2}}
        try:
            ours = self.frame(probe)[0]
            theirs = _enforce_schema(infer_and_parse_data(probe, schema), schema)
            if self._tensor is not None:
                return type(ours) is type(theirs) and ours.dtype == theirs.dtype and ours.shape == theirs.shape \
                    and np.array_equal(ours, theirs)
            pd.testing.assert_frame_equal(ours, theirs, check_exact=True, check_column_type=True,
                                          check_index_type=True)
        except Exception:   # noqa: BLE001 - any difference, or an error on either side
            return False
        return True


def is_plain_json(content_type: str) -> bool:
    """Whether MLflow reads the body as UTF-8 JSON (the content type exactly as its scoring server checks it)."""
    mime, *parameters = (part.strip() for part in content_type.split(";"))
    return mime == "application/json" and all(
        key == "charset" and value.lower() == "utf-8" for key, _, value in (p.partition("=") for p in parameters))


_PROBE_VALUES = {"double": 1.5, "float": 0.25, "long": 7, "integer": -3, "boolean": True, "string": "a",
                 "binary": "YQ==", "datetime": "2024-02-29 12:30:00"}


def _signature_columns(pyfunc_model) -> tuple[direct_frame.Column, ...] | direct_tensor.Tensor | None:
    """The signature's columns (or its one tensor) where the direct path applies to the model, else None."""
    from mlflow.pyfunc import PyFuncModel
    from mlflow.types import DataType

    # A subclass, an instance-level predict or a patched one (autologging) may do more than PyFuncModel.predict.
    if type(pyfunc_model) is not PyFuncModel or "predict" in vars(pyfunc_model) \
            or any(hasattr(f, "__wrapped__") for f in (PyFuncModel.predict, PyFuncModel._predict)):
        return None
    metadata = pyfunc_model.metadata
    # Signatures from type hints hand the model the raw `inputs`; type hints from an example reshape the frame.
    if metadata._is_signature_from_type_hint() or metadata._is_type_hint_from_example():
        return None
    schema = metadata.get_input_schema()
    if schema is None:
        return None
    if schema.is_tensor_spec():
        return _signature_tensor(schema)
    specs = schema.inputs
    if not schema.has_input_names():   # one unnamed string column (text models) is built from `inputs`
        is_text = len(specs) == 1 and isinstance(specs[0].type, DataType) and specs[0].type.name == "string"
        return (direct_frame.Column(None, "string", specs[0].required),) if is_text else None
    if not specs or any(not isinstance(spec.type, DataType) or spec.type.name not in direct_frame.column_types()
                        for spec in specs):
        return None
    columns = tuple(direct_frame.Column(spec.name, spec.type.name, spec.required) for spec in specs)
    if len({c.name for c in columns}) != len(columns):
        return None
    return columns


def _signature_tensor(schema) -> direct_tensor.Tensor | None:
    """A signature of one unnamed tensor with a numeric dtype and a rank (MLflow hands such a model the array)."""
    if schema.has_input_names() or len(schema.inputs) != 1:
        return None
    spec = schema.inputs[0]
    if not spec.shape or not direct_tensor.takes(spec.type):
        return None
    return direct_tensor.Tensor(spec.type, tuple(spec.shape))
