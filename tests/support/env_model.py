"""A pyfunc model (logged from code) that answers with the version of a package it was logged to require:
served from its own environment it says the pinned version; in the platform's, it cannot even import it."""

from __future__ import annotations

import mlflow


class RequirementVersionModel(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        import tabulate

        return [tabulate.__version__] * len(model_input)


mlflow.models.set_model(RequirementVersionModel())
