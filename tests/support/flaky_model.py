"""A pyfunc model that answers HTTP 500 on a set share of its requests, for canary rollout tests.

Its own importable module: MLflow pickles the class by reference, and the workers import it from here.
It is logged without a signature, so every request takes MLflow's one scoring path: the worker's direct
path scores again through MLflow a request the model raised on, which would draw a second time.
"""

from __future__ import annotations

import random

import pandas as pd
from mlflow.pyfunc import PythonModel

from tests.support.models import RegisteredModel, use_registry


class FlakyDoubler(PythonModel):
    def __init__(self, failure_rate: float, label: str):
        self.failure_rate = failure_rate
        self.label = label

    def predict(self, context, model_input, params=None):
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INTERNAL_ERROR

        if random.random() < self.failure_rate:
            raise MlflowException(f"injected failure of {self.label}", error_code=INTERNAL_ERROR)
        return model_input[["x"]] * 2


def register_flaky_model(info: dict, name: str, failure_rate: float, label: str) -> RegisteredModel:
    """A new version of `name` that fails `failure_rate` of its requests with a 500 naming `label`."""
    import mlflow

    use_registry(info)
    model = FlakyDoubler(failure_rate, label)
    with mlflow.start_run():
        logged = mlflow.pyfunc.log_model(name="model", python_model=model, registered_model_name=name)
    return RegisteredModel(name, str(logged.registered_model_version), model, pd.DataFrame({"x": [1.0, 2.0]}))
