"""A pyfunc model (logged from code) that says where torch puts its tensors in the serving process, and
which GPUs that process was given: "cuda:<CUDA_VISIBLE_DEVICES>" on a GPU replica, "cpu:" on a CPU one."""

from __future__ import annotations

import os

import mlflow


class DeviceProbe(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        placed = torch.zeros(1, device=device).device.type
        return [f"{placed}:{os.environ.get('CUDA_VISIBLE_DEVICES', '')}"] * len(model_input)


mlflow.models.set_model(DeviceProbe())
