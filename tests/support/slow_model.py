"""A pyfunc model that takes a set time per call, so a test controls how long requests stay in flight.

Its own importable module: MLflow pickles the class by reference, and the workers import it from here.
"""

from __future__ import annotations

import time

import pandas as pd
from mlflow.pyfunc import PythonModel

from tests.support.models import RegisteredModel, use_registry


class SlowDoubler(PythonModel):
    def __init__(self, delay_s: float):
        self.delay_s = delay_s

    def predict(self, context, model_input, params=None):
        time.sleep(self.delay_s)
        return model_input[["x"]] * 2


def register_slow_model(info: dict, name: str, delay_s: float) -> RegisteredModel:
    import mlflow
    from mlflow.models import infer_signature

    use_registry(info)
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    model = SlowDoubler(delay_s)
    with mlflow.start_run():
        logged = mlflow.pyfunc.log_model(name="model", python_model=model,
                                         signature=infer_signature(frame, frame * 2), registered_model_name=name)
    return RegisteredModel(name, str(logged.registered_model_version), model, frame)
