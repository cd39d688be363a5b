"""Tiny real models, trained in the test and registered in the stack's MLflow registry."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@dataclass
class RegisteredModel:
    name: str
    version: str
    model: object          # the in-process model, to compare answers with
    frame: pd.DataFrame    # rows to query with


def use_registry(info: dict) -> None:
    """Points this process's MLflow at a stack's tracking store and registry."""
    import mlflow

    mlflow.set_tracking_uri(info["tracking_uri"])
    mlflow.set_registry_uri(info["registry_uri"])


def register_sklearn_classifier(info: dict, name: str, seed: int = 0, invert: bool = False) -> RegisteredModel:
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    use_registry(info)
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(40, 4)), columns=FEATURES)
    labels = (frame.sepal_length + frame.petal_width > 0).astype(int) + (frame.sepal_width > 1).astype(int)
    if invert:  # a model that answers differently on the same rows
        labels = 2 - labels
    model = LogisticRegression(max_iter=200).fit(frame, labels)
    with mlflow.start_run():
        info_ = mlflow.sklearn.log_model(model, name="model", signature=infer_signature(frame, model.predict(frame)),
                                         registered_model_name=name)
    version = str(info_.registered_model_version)
    return RegisteredModel(name, version, model, frame.head(5).reset_index(drop=True))

