"""A custom MLflow pyfunc model, logged from code (mlflow "models from code"): it reads an artifact, takes
`params`, reads an environment variable, and returns every kind of output a pyfunc may return."""

from __future__ import annotations

import json
import os

import mlflow
import numpy as np
import pandas as pd

GREETING_VAR = "PODIUM_TEST_GREETING"


class CustomModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        with open(context.artifacts["weights"]) as f:
            self.weights = json.load(f)   # {"scale", "offset", "prefix"}

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        params = params or {}
        y = model_input["x"].to_numpy() * self.weights["scale"] * params.get("scale", 1.0) + self.weights["offset"]
        labels = [self.weights["prefix"] + str(text) for text in model_input["text"]]
        kind = params.get("kind", "array")
        if kind == "frame":
            return pd.DataFrame({"label": labels, "y": y})
        if kind == "strings":
            return labels
        if kind == "dict":
            return {"label": labels, "y": y.tolist()}
        if kind == "env":
            return [os.environ.get(GREETING_VAR, "<unset>")] * len(model_input)
        return np.asarray(y)


mlflow.models.set_model(CustomModel())
