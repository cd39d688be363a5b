"""A pyfunc model that answers text, as an LLM does, for shadow tests judged by a judge endpoint.

Its own importable module: MLflow pickles the class by reference, and the workers import it from here. Each
row's `q` is answered: style "terse" with the word itself; style "wordy" with "The answer is <q>." unless
`q` starts with "same" (the word itself, as the terse one) or "unknown" ("I do not know.").
"""

from __future__ import annotations

import pandas as pd
from mlflow.pyfunc import PythonModel

from tests.support.models import RegisteredModel, use_registry


class TextAnswerer(PythonModel):
    def __init__(self, style: str):
        self.style = style

    def predict(self, context, model_input, params=None):
        answers = []
        for q in model_input["q"]:
            if self.style == "terse" or q.startswith("same"):
                answers.append(q)
            elif q.startswith("unknown"):
                answers.append("I do not know.")
            else:
                answers.append(f"The answer is {q}.")
        return answers


def register_text_model(info: dict, name: str, style: str) -> RegisteredModel:
    """A new version of `name` answering in `style` ("terse" or "wordy")."""
    import mlflow

    use_registry(info)
    with mlflow.start_run():
        logged = mlflow.pyfunc.log_model(name="model", python_model=TextAnswerer(style), registered_model_name=name)
    return RegisteredModel(name, str(logged.registered_model_version), TextAnswerer(style), pd.DataFrame({"q": ["a"]}))
