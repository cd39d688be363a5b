"""Every common MLflow flavor, logged for real, registered under a catalog.schema.model name, served through
the router, and answered exactly as `mlflow models serve` answers (MLflow's scoring server run in-process
on the same registered model) and as the model itself predicts in-process. Also over the Open Inference
Protocol, where the tensors come from each flavor's signature."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.support import flavors
from tests.support.custom_model import GREETING_VAR

pytestmark = pytest.mark.stack

GREETING = "hello from the served entity's environment_vars"


def _mlflow_serve(uri: str, payload: dict):
    """What `mlflow models serve` answers for this payload: its scoring function, in-process."""
    import mlflow
    from mlflow.pyfunc import scoring_server

    pyfunc = mlflow.pyfunc.load_model(uri)
    return scoring_server.invocations(json.dumps(payload), "application/json", pyfunc,
                                      pyfunc.metadata.get_input_schema())


def _query_matches_mlflow(stack, endpoint: str, model: flavors.Flavored, payload: dict) -> dict:
    reply = stack.api("POST", f"/serving-endpoints/{endpoint}/invocations", json=payload)
    expected = _mlflow_serve(model.uri, payload)
    assert reply.status_code == expected.status, reply.text
    assert reply.content.decode() == expected.response   # byte for byte what mlflow models serve says
    return reply.json()


def _oip(stack, endpoint: str, inputs: list[dict], parameters: dict | None = None) -> dict:
    body: dict = {"inputs": inputs}
    if parameters:
        body["parameters"] = parameters
    reply = stack.api("POST", f"/v2/models/{endpoint}/infer", json=body)
    assert reply.status_code == 200, reply.text
    return {o["name"]: o for o in reply.json()["outputs"]}


# ---- XGBoost ----

@pytest.fixture(scope="module")
def xgboost_model(stack):
    model = flavors.register_xgboost(stack.info, "main.default.xgb_reg")
    stack.serve("xgb", [{"entity_name": model.name, "entity_version": model.version}])
    return model


def test_xgboost(stack, xgboost_model):
    frame = xgboost_model.sample
    expected = xgboost_model.model.predict(frame)
    for payload in ({"dataframe_split": frame.to_dict(orient="split")},
                    {"dataframe_records": frame.to_dict(orient="records")}):
        answer = _query_matches_mlflow(stack, "xgb", xgboost_model, payload)
        np.testing.assert_allclose(answer["predictions"], expected, rtol=1e-6)
    outputs = _oip(stack, "xgb", [{"name": c, "datatype": "FP64", "shape": [len(frame)], "data": frame[c].tolist()}
                                  for c in frame.columns])
    assert outputs["predictions"]["datatype"] == "FP32"
    np.testing.assert_array_equal(np.array(outputs["predictions"]["data"], dtype=np.float32), expected)


# ---- PyTorch ----

def test_pytorch(stack, pytorch_endpoint, pytorch_model):
    import torch

    sample = pytorch_model.sample
    with torch.no_grad():
        expected = pytorch_model.model(torch.from_numpy(sample)).numpy()
    for payload in ({"inputs": sample.tolist()}, {"instances": sample.tolist()}):
        answer = _query_matches_mlflow(stack, "torch-net", pytorch_model, payload)
        np.testing.assert_allclose(answer["predictions"], expected, rtol=1e-5)
    outputs = _oip(stack, "torch-net", [{"name": "input-0", "datatype": "FP32", "shape": list(sample.shape),
                                         "data": sample.reshape(-1).tolist()}])
    assert outputs["predictions"]["shape"] == [5, 3] and outputs["predictions"]["datatype"] == "FP32"
    np.testing.assert_allclose(np.array(outputs["predictions"]["data"]).reshape(5, 3), expected, rtol=1e-6)


# ---- Hugging Face transformers ----

@pytest.fixture(scope="module")
def transformers_model(stack, tmp_path_factory):
    model = flavors.register_transformers(stack.info, "main.default.tiny_bert", tmp_path_factory.mktemp("hf"))
    stack.serve("tiny-bert", [{"entity_name": model.name, "entity_version": model.version}])
    return model


def test_transformers_text_in_dataframe_out(stack, transformers_model):
    texts = transformers_model.sample
    expected = transformers_model.model(texts)            # [{"label", "score"}, ...]
    for payload in ({"inputs": texts}, {"dataframe_split": {"columns": ["text"], "data": [[t] for t in texts]}}):
        answer = _query_matches_mlflow(stack, "tiny-bert", transformers_model, payload)
        assert [p["label"] for p in answer["predictions"]] == [e["label"] for e in expected]
        np.testing.assert_allclose([p["score"] for p in answer["predictions"]], [e["score"] for e in expected],
                                   rtol=1e-5)
    metadata = stack.api("GET", "/v2/models/tiny-bert").json()
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"] == [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                                   {"name": "score", "datatype": "FP64", "shape": [-1]}]
    outputs = _oip(stack, "tiny-bert", [{"name": "input-0", "datatype": "BYTES", "shape": [3], "data": texts}])
    assert outputs["label"]["data"] == [e["label"] for e in expected]
    np.testing.assert_allclose(outputs["score"]["data"], [e["score"] for e in expected], rtol=1e-5)


# ---- custom pyfunc: artifacts, params, environment_vars, every kind of output ----

@pytest.fixture(scope="module")
def custom_model(stack, tmp_path_factory):
    model = flavors.register_custom_pyfunc(stack.info, "main.default.custom", tmp_path_factory.mktemp("custom"))
    stack.serve("custom", [{"entity_name": model.name, "entity_version": model.version,
                            "environment_vars": {GREETING_VAR: GREETING}}])
    return model


def _custom_expected(frame, scale: float = 1.0):
    weights = flavors.CUSTOM_WEIGHTS
    y = (frame["x"] * weights["scale"] * scale + weights["offset"]).tolist()
    return [weights["prefix"] + t for t in frame["text"]], y


@pytest.mark.parametrize("kind", ["array", "frame", "strings", "dict"])
def test_custom_pyfunc_outputs_serialize_as_mlflow_serve(stack, custom_model, kind):
    frame = custom_model.sample
    payload = {"dataframe_split": frame.to_dict(orient="split"), "params": {"kind": kind, "scale": 3.0}}
    predictions = _query_matches_mlflow(stack, "custom", custom_model, payload)["predictions"]
    labels, y = _custom_expected(frame, 3.0)
    assert predictions == {"array": y, "frame": [{"label": l, "y": v} for l, v in zip(labels, y)],
                           "strings": labels, "dict": {"label": labels, "y": y}}[kind]


def test_custom_pyfunc_params_default_and_bad_params(stack, custom_model):
    frame = custom_model.sample
    default = _query_matches_mlflow(stack, "custom", custom_model, {"dataframe_split": frame.to_dict(orient="split")})
    assert default["predictions"] == _custom_expected(frame)[1]
    from mlflow.exceptions import MlflowException

    bad = {"dataframe_split": frame.to_dict(orient="split"), "params": {"scale": "not a number"}}
    reply = stack.api("POST", "/serving-endpoints/custom/invocations", json=bad)
    with pytest.raises(MlflowException) as expected:   # the stock server answers this exception's status and code
        _mlflow_serve(custom_model.uri, bad)
    assert reply.status_code == expected.value.get_http_status_code() == 400
    assert reply.json()["error_code"] == expected.value.error_code == "INVALID_PARAMETER_VALUE"
    assert reply.json()["message"] == expected.value.message and "scale" in reply.json()["message"]


def test_custom_pyfunc_over_open_inference_with_params(stack, custom_model):
    frame = custom_model.sample
    inputs = [{"name": "text", "datatype": "BYTES", "shape": [3], "data": frame["text"].tolist()},
              {"name": "x", "datatype": "FP64", "shape": [3], "data": frame["x"].tolist()}]
    outputs = _oip(stack, "custom", inputs, {"kind": "dict", "scale": 2.0})
    labels, y = _custom_expected(frame, 2.0)
    assert outputs["label"]["datatype"] == "BYTES" and outputs["label"]["data"] == labels
    assert outputs["y"]["datatype"] == "FP64" and outputs["y"]["data"] == y


def test_environment_vars_reach_the_worker(stack, custom_model):
    payload = {"dataframe_split": custom_model.sample.to_dict(orient="split"), "params": {"kind": "env"}}
    reply = stack.api("POST", "/serving-endpoints/custom/invocations", json=payload)
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"] == [GREETING] * len(custom_model.sample)
    # The test process itself does not have it: the value came from the served entity's spec.
    assert GREETING_VAR not in __import__("os").environ
