"""GPU workload types: a GPU_* served entity gets GPUs from the replica backend (CUDA_VISIBLE_DEVICES per
replica) and its worker loads the model onto them; where there is no GPU the update fails, saying so,
never silently on the CPU. CPU workloads see no GPU at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.common.capacity import gpus_for_workload_type
from services.common.processes import ServiceFailed, start_service, stop_process
from services.scaler.gpus import detect_gpus
from services.scaler.policy import pick_gpus
from services.worker.core import usable_gpu_count
from tests.support.flavors import _torch_requirement
from tests.support.models import use_registry

HAS_GPU = usable_gpu_count() > 0
NO_GPU_REASON = "no CUDA GPU on this machine (torch.cuda.is_available() is False): the GPU serving test needs one"
DEVICE_MODEL = Path(__file__).parents[1] / "support" / "device_model.py"


@pytest.mark.parametrize("workload_type, want", [
    ("CPU", 0), ("CPU_LARGE", 0), ("GPU_SMALL", 1), ("GPU_MEDIUM", 1), ("GPU_LARGE", 1),
    ("MULTIGPU_MEDIUM", 4), ("GPU_XLARGE_8", 8),
])
def test_gpus_for_workload_type(workload_type, want):
    assert gpus_for_workload_type(workload_type) == want


@pytest.mark.parametrize("gpus, load, count, want", [
    pytest.param((), {}, 1, None, id="no GPU at all"),
    pytest.param(("0",), {}, 4, None, id="fewer GPUs than the type needs"),
    pytest.param(("0", "1"), {}, 1, ("0",), id="first free"),
    pytest.param(("0", "1"), {"0": 2, "1": 1}, 1, ("1",), id="least loaded"),
    pytest.param(("0",), {"0": 3}, 1, ("0",), id="shared when busy"),
    pytest.param(("0", "1", "2"), {"1": 1}, 2, ("0", "2"), id="several, in id order"),
])
def test_pick_gpus(gpus, load, count, want):
    assert pick_gpus(gpus, load, count) == want


@pytest.mark.parametrize("setting, visible, want", [
    ("none", None, ()), ("", "0", ()), ("0,1", None, ("0", "1")), (" 2 ", None, ("2",)),
])
def test_detect_gpus_from_the_setting(setting, visible, want):
    assert detect_gpus(setting, visible) == want


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU: test_gpu_workload_runs_on_the_gpu covers it")
def test_a_worker_told_to_use_a_gpu_it_does_not_have_fails(tmp_path):
    env = {"PODIUM_WORKER_MODEL_URI": "models:/main.default.anything/1", "PODIUM_WORKER_DEVICE": "cuda",
           "CUDA_VISIBLE_DEVICES": "0", "PODIUM_WORKER_PORT": "0"}
    with pytest.raises(ServiceFailed) as failed:
        process, _ = start_service("services.worker", env, tmp_path / "worker.log", ready_timeout_s=120)
        stop_process(process)
    assert "no GPU available" in str(failed.value) and "CUDA_VISIBLE_DEVICES=0" in str(failed.value)


@pytest.mark.stack
@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU: test_gpu_workload_runs_on_the_gpu covers it")
def test_gpu_workload_without_a_gpu_fails_the_update_clearly(stack, iris_model):
    body = {"name": "wants-gpu", "config": {"served_entities": [
        {"entity_name": iris_model.name, "entity_version": iris_model.version, "workload_type": "GPU_SMALL"}]}}
    assert stack.api("POST", "/api/2.0/serving-endpoints", json=body).status_code == 200
    endpoint = stack.wait_endpoint("wants-gpu")
    assert endpoint["state"] == {"ready": "NOT_READY", "config_update": "UPDATE_FAILED"}
    entity = endpoint["pending_config"]["served_entities"][0]
    assert entity["workload_type"] == "GPU_SMALL"
    assert "no GPU available" in entity["state"]["deployment_state_message"]
    assert "GPU_SMALL" in entity["state"]["deployment_state_message"]
    assert stack.api("DELETE", "/api/2.0/serving-endpoints/wants-gpu").json() == {}


def _register_device_model(stack) -> str:
    import mlflow
    from mlflow.models import infer_signature

    use_registry(stack.info)
    with mlflow.start_run():
        logged = mlflow.pyfunc.log_model(name="model", python_model=str(DEVICE_MODEL),
                                         pip_requirements=[_torch_requirement()], signature=infer_signature(pd.DataFrame({"x": [1.0]})),
                                         registered_model_name="main.default.device_probe")
    return str(logged.registered_model_version)


@pytest.mark.stack
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason=NO_GPU_REASON)
def test_gpu_workload_runs_on_the_gpu(stack, pytorch_model):
    import torch

    version = _register_device_model(stack)
    probe = {"entity_name": "main.default.device_probe", "entity_version": version}
    stack.serve("on-gpu", [{**probe, "workload_type": "GPU_SMALL"}])
    stack.serve("on-cpu", [{**probe, "workload_type": "CPU"}])
    query = {"dataframe_records": [{"x": 1.0}]}
    [on_gpu] = stack.api("POST", "/serving-endpoints/on-gpu/invocations", json=query).json()["predictions"]
    [on_cpu] = stack.api("POST", "/serving-endpoints/on-cpu/invocations", json=query).json()["predictions"]
    assert on_gpu.startswith("cuda:") and on_cpu == "cpu:"   # device the model's tensor landed on : visible GPUs

    stack.serve("torch-gpu", [{"entity_name": pytorch_model.name, "entity_version": pytorch_model.version,
                               "workload_type": "GPU_SMALL"}])
    reply = stack.api("POST", "/serving-endpoints/torch-gpu/invocations", json={"inputs": pytorch_model.sample.tolist()})
    with torch.no_grad():
        expected = pytorch_model.model(torch.from_numpy(pytorch_model.sample)).numpy()
    np.testing.assert_allclose(reply.json()["predictions"], expected, rtol=1e-4, atol=1e-5)
