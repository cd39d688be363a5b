"""Open Inference Protocol v2 over REST on the router, on the wire: health, metadata from the MLflow
signature, infer in JSON and in the binary-tensor extension, traffic routes vs one served entity, and
errors in the protocol's own `{"error": ...}` shape. (tritonclient drives the same paths in
test_tritonclient.py.)"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

pytestmark = pytest.mark.stack

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def _json_inputs(frame, datatype="FP64"):
    return [{"name": c, "datatype": datatype, "shape": [len(frame)], "data": frame[c].tolist()} for c in COLUMNS]


def _expected(endpoint, entity="a"):
    model = endpoint["models"][entity]
    return model.model.predict(model.frame).tolist()


def test_server_health_and_metadata(stack):
    assert stack.api("GET", "/v2/health/live").json() == {"live": True}
    assert stack.api("GET", "/v2/health/ready").json() == {"ready": True}
    metadata = stack.api("GET", "/v2").json()
    assert metadata["name"] == "podium" and "binary_tensor_data" in metadata["extensions"]


def test_model_metadata_comes_from_the_signature(stack, iris_oip_endpoint):
    metadata = stack.api("GET", "/v2/models/iris-oip").json()
    assert metadata == {
        "name": "iris-oip", "versions": ["a", "b"], "platform": "mlflow_sklearn",
        "inputs": [{"name": c, "datatype": "FP64", "shape": [-1]} for c in COLUMNS],
        "outputs": [{"name": "predictions", "datatype": "INT64", "shape": [-1]}],
    }
    assert stack.api("GET", "/v2/models/iris-oip/versions/b").json()["name"] == "iris-oip"
    config = stack.api("GET", "/v2/models/iris-oip/config").json()
    assert config["input"][0] == {"name": "sepal_length", "data_type": "TYPE_FP64", "dims": [-1]}


def test_model_and_version_readiness(stack, iris_oip_endpoint):
    for path in ("/v2/models/iris-oip/ready", "/v2/models/iris-oip/versions/a/ready",
                 "/v2/models/iris-oip/versions/b/ready", "/serving-endpoints/iris-oip/v2/models/iris-oip/ready"):
        reply = stack.api("GET", path)
        assert reply.status_code == 200 and reply.json()["ready"] is True, path


def test_infer_json_follows_the_traffic_routes(stack, iris_oip_endpoint):
    frame = iris_oip_endpoint["models"]["a"].frame
    reply = stack.api("POST", "/v2/models/iris-oip/infer", json={"id": "req-7", "inputs": _json_inputs(frame)})
    assert reply.status_code == 200, reply.text
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.json() == {"model_name": "iris-oip", "model_version": "a", "id": "req-7", "outputs": [
        {"name": "predictions", "datatype": "INT64", "shape": [5], "data": _expected(iris_oip_endpoint)}]}


def test_infer_version_targets_one_served_entity(stack, iris_oip_endpoint):
    frame = iris_oip_endpoint["models"]["a"].frame
    expected_b = iris_oip_endpoint["models"]["b"].model.predict(frame).tolist()
    assert expected_b != _expected(iris_oip_endpoint), "the two served entities must answer differently"
    reply = stack.api("POST", "/v2/models/iris-oip/versions/b/infer", json={"inputs": _json_inputs(frame)})
    assert reply.status_code == 200, reply.text
    assert reply.json()["model_version"] == "b" and reply.json()["outputs"][0]["data"] == expected_b
    # The Databricks path has the same choice: /served-models/{served entity}/invocations.
    invocation = stack.api("POST", "/serving-endpoints/iris-oip/served-models/b/invocations",
                           json={"dataframe_records": frame.to_dict(orient="records")})
    assert invocation.json()["predictions"] == expected_b and invocation.headers["served-model-name"] == "b"


def test_infer_binary_tensors_without_content_type(stack, iris_oip_endpoint):
    """tritonclient.http's default: JSON header of Inference-Header-Content-Length bytes, then raw tensors."""
    frame = iris_oip_endpoint["models"]["a"].frame
    blobs = [frame[c].to_numpy(dtype="<f4").tobytes() for c in COLUMNS]   # FP32: a safe cast to FP64
    header = json.dumps({"inputs": [
        {"name": c, "datatype": "FP32", "shape": [5], "parameters": {"binary_data_size": len(b)}}
        for c, b in zip(COLUMNS, blobs)], "parameters": {"binary_data_output": True}}).encode()
    reply = stack.api("POST", "/serving-endpoints/iris-oip/v2/models/iris-oip/infer", data=header + b"".join(blobs),
                      headers={"Inference-Header-Content-Length": str(len(header))})
    assert reply.status_code == 200, reply.text
    split = int(reply.headers["Inference-Header-Content-Length"])
    head = json.loads(reply.content[:split])
    [output] = head["outputs"]
    assert output["parameters"]["binary_data_size"] == 5 * 8 and "data" not in output
    got = np.frombuffer(reply.content[split:], dtype="<i8")
    expected_fp32 = iris_oip_endpoint["models"]["a"].model.predict(frame.astype("float32").astype("float64"))
    assert got.tolist() == expected_fp32.tolist()


def test_requested_outputs_may_mix_binary_and_json(stack, iris_oip_endpoint):
    frame = iris_oip_endpoint["models"]["a"].frame
    body = {"inputs": _json_inputs(frame), "outputs": [{"name": "predictions", "parameters": {"binary_data": False}}],
            "parameters": {"binary_data_output": True}}
    reply = stack.api("POST", "/v2/models/iris-oip/infer", json=body)
    assert "Inference-Header-Content-Length" not in reply.headers
    assert reply.json()["outputs"][0]["data"] == _expected(iris_oip_endpoint)


def _bad_requests():
    frame = __import__("pandas").DataFrame([[1.0, 2.0, 3.0, 4.0]], columns=COLUMNS)
    good = _json_inputs(frame)
    swap = lambda i, **kw: [dict(t, **kw) if n == i else t for n, t in enumerate(good)]  # noqa: E731
    return [
        ({"inputs": swap(0, datatype="BYTES", data=["x"])}, "sepal_length", "datatype BYTES"),
        ({"inputs": swap(1, datatype="INT8", data=[1])}, "sepal_width", None),  # INT8 → FP64 casts: fine
        ({"inputs": swap(2, shape=[1, 2], data=[1.0, 2.0])}, "petal_length", "shape [1, 2]"),
        ({"inputs": swap(3, shape=[2])}, "petal_width", "1 values do not fill shape [2]"),
        ({"inputs": swap(0, datatype="FP128")}, "sepal_length", "unknown datatype"),
        ({"inputs": swap(0, name="sepal_len")}, "sepal_len", "not an input of this model"),
        ({"inputs": good[:3]}, "petal_width", "missing"),
        ({"inputs": swap(0, data=["1.0"])}, "sepal_length", "not a FP64 value"),
        ({"inputs": []}, "inputs", "non-empty"),
        ({"inputs": good, "outputs": [{"name": "proba"}]}, "proba", "not an output"),
    ]


@pytest.mark.parametrize("body, name, needle", _bad_requests())
def test_tensors_that_do_not_fit_are_400_naming_the_input(stack, iris_oip_endpoint, body, name, needle):
    reply = stack.api("POST", "/v2/models/iris-oip/infer", json=body)
    if needle is None:
        assert reply.status_code == 200, reply.text
        return
    assert reply.status_code == 400, reply.text
    assert list(reply.json()) == ["error"]
    assert name in reply.json()["error"] and needle in reply.json()["error"]


@pytest.mark.parametrize("body, headers, needle", [
    (b"{not json", {}, "not valid JSON"),
    (b'{"inputs": []}xxxx', {"Inference-Header-Content-Length": "400"}, "Inference-Header-Content-Length"),
    (b'{"inputs": [{"name": "sepal_length", "datatype": "FP64", "shape": [1], "parameters": {"binary_data_size": 16}}]}'
     + struct.pack("<d", 1.0), "header", "binary_data_size 16"),
])
def test_malformed_bodies_are_400(stack, iris_oip_endpoint, body, headers, needle):
    if headers == "header":
        headers = {"Inference-Header-Content-Length": str(len(body) - 8)}
    reply = stack.api("POST", "/v2/models/iris-oip/infer", data=body, headers=headers)
    assert reply.status_code == 400 and needle in reply.json()["error"], reply.text


def test_unknown_model_or_version_is_404_in_the_protocol_shape(stack, iris_oip_endpoint):
    body = {"inputs": _json_inputs(iris_oip_endpoint["models"]["a"].frame)}
    for method, path in [("POST", "/v2/models/nope/infer"), ("GET", "/v2/models/nope"),
                         ("GET", "/v2/models/nope/ready"), ("POST", "/v2/models/iris-oip/versions/zz/infer"),
                         ("GET", "/v2/models/iris-oip/versions/zz"), ("GET", "/v2/nothing/here")]:
        reply = stack.api(method, path, json=body)
        assert reply.status_code == 404, (path, reply.text)
        assert list(reply.json()) == ["error"], path
    # The Databricks paths keep their own shape.
    reply = stack.api("POST", "/serving-endpoints/iris-oip/served-models/zz/invocations", json={"inputs": []})
    assert reply.status_code == 404 and reply.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
