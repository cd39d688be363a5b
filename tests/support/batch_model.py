"""A row-wise pyfunc model that records how many rows each predict call got, so a test can see batches.

Its own importable module: MLflow pickles the class by reference, and the workers import it from here.
"""

from __future__ import annotations

import glob
import os
import tempfile
import time

import pandas as pd
from mlflow.pyfunc import PythonModel

from tests.support.models import RegisteredModel, use_registry


class RowRecorder(PythonModel):
    """Answers 2·x·scale per row; appends each call's row count to `log_path`; a negative x raises (so one
    bad request can sit in a batch of good ones). A relative `log_path` is under the process's temporary
    directory: a served replica's own scratch directory, the one place its sandbox lets it write."""

    def __init__(self, log_path: str, delay_s: float):
        self.log_path = log_path
        self.delay_s = delay_s     # keeps calls in flight, so concurrent requests pile up behind them

    def predict(self, context, model_input, params=None):
        with open(os.path.join(tempfile.gettempdir(), self.log_path), "a") as log:
            log.write(f"{len(model_input)}\n")
        if (model_input["x"] < 0).any():
            raise ValueError("negative x")
        time.sleep(self.delay_s)
        scale = (params or {}).get("scale", 1.0)
        return model_input[["x"]] * 2 * scale


def rows_per_call(log_path: str) -> list[int]:
    """The row counts logged at `log_path`; for a relative one, in every local replica's scratch directory
    (services/scaler/runtime.py keeps them under <tmp>/podium-scratch-<stack>/<replica>/tmp)."""
    paths = [log_path] if os.path.isabs(log_path) else \
        sorted(glob.glob(os.path.join(tempfile.gettempdir(), "podium-scratch-*", "*", "tmp", log_path)))
    counts = []
    for path in paths:
        if os.path.exists(path):
            with open(path) as log:
                counts += [int(line) for line in log if line.strip()]
    return counts


def _logged(log_path: str, delay_s: float):
    from mlflow.models import infer_signature

    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    return RowRecorder(log_path, delay_s), infer_signature(frame, frame * 2, params={"scale": 1.0}), frame


def save_row_recorder(path: str, log_path: str, delay_s: float = 0.02) -> None:
    """The model saved at `path` (no registry), for in-process tests."""
    import mlflow

    model, signature, _ = _logged(log_path, delay_s)
    mlflow.pyfunc.save_model(path, python_model=model, signature=signature)


def register_row_recorder(info: dict, name: str, log_path: str, delay_s: float = 0.02) -> RegisteredModel:
    import mlflow

    use_registry(info)
    model, signature, frame = _logged(log_path, delay_s)
    with mlflow.start_run():
        logged = mlflow.pyfunc.log_model(name="model", python_model=model, signature=signature,
                                         registered_model_name=name)
    return RegisteredModel(name, str(logged.registered_model_version), model, frame)
