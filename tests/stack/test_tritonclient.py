"""tritonclient.http and tritonclient.grpc, unmodified, against the router: health, metadata and infer
(binary and JSON tensors) on a scikit-learn and a PyTorch endpoint, answers equal to in-process predictions."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.stack

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(params=["http", "grpc"])
def protocol(request):
    return request.param


class Authorized:
    """A tritonclient client whose every call carries the admin's credential (tritonclient's `headers=`)."""

    def __init__(self, client, token: str):
        self._client = client
        self._headers = {"authorization": f"Bearer {token}"}   # lower case: gRPC metadata keys must be

    def __getattr__(self, name):
        attribute = getattr(self._client, name)
        if name == "close" or not callable(attribute):
            return attribute
        return functools.partial(attribute, headers=self._headers)


@pytest.fixture
def client(stack, protocol):
    if protocol == "http":
        client = httpclient.InferenceServerClient(stack.url.removeprefix("http://"), network_timeout=60)
    else:
        client = grpcclient.InferenceServerClient(stack.info["grpc_target"])
    yield Authorized(client, stack.admin_token)
    client.close()


def test_a_call_without_a_credential_is_refused(stack, protocol):
    if protocol == "http":
        bare = httpclient.InferenceServerClient(stack.url.removeprefix("http://"), network_timeout=60)
    else:
        bare = grpcclient.InferenceServerClient(stack.info["grpc_target"])
    with pytest.raises(InferenceServerException) as refused:
        bare.get_server_metadata()
    assert refused.value.status() in ("401", "StatusCode.UNAUTHENTICATED")
    if protocol == "http":
        assert bare.is_model_ready("iris-oip") is False    # tritonclient reads only the status
    bare.close()


def _module(protocol):
    return httpclient if protocol == "http" else grpcclient


def _metadata(client, protocol, *args) -> dict:
    return client.get_model_metadata(*args) if protocol == "http" else client.get_model_metadata(*args, as_json=True)


def test_health(client, protocol, iris_oip_endpoint):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("iris-oip") and client.is_model_ready("iris-oip", "b")
    server = client.get_server_metadata() if protocol == "http" else client.get_server_metadata(as_json=True)
    assert server["name"] == "podium"
    if protocol == "http":
        assert client.is_model_ready("nope") is False
    else:
        with pytest.raises(InferenceServerException) as missing:
            client.is_model_ready("nope")
        assert missing.value.status() == "StatusCode.NOT_FOUND"


def test_metadata(client, protocol, iris_oip_endpoint, pytorch_endpoint):
    iris = _metadata(client, protocol, "iris-oip")
    assert iris["versions"] == ["a", "b"] and iris["platform"] == "mlflow_sklearn"
    assert [(i["name"], i["datatype"]) for i in iris["inputs"]] == [(c, "FP64") for c in COLUMNS]
    torch_net = _metadata(client, protocol, "torch-net")
    assert torch_net["platform"] == "mlflow_pytorch"
    assert [(i["name"], i["datatype"], [int(d) for d in i["shape"]]) for i in torch_net["inputs"]] == \
        [("input-0", "FP32", [-1, 4])]
    assert [(o["name"], o["datatype"]) for o in torch_net["outputs"]] == [("predictions", "FP32")]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_sklearn(client, protocol, iris_oip_endpoint, binary):
    module, model = _module(protocol), iris_oip_endpoint["models"]["a"]
    inputs = []
    for column in COLUMNS:
        tensor = module.InferInput(column, [len(model.frame)], "FP64")
        values = model.frame[column].to_numpy()
        tensor.set_data_from_numpy(values, binary_data=binary) if protocol == "http" else tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    outputs = [httpclient.InferRequestedOutput("predictions", binary_data=binary)] if protocol == "http" else None
    result = client.infer("iris-oip", inputs, outputs=outputs, request_id="r1")
    assert result.as_numpy("predictions").tolist() == model.model.predict(model.frame).tolist()
    response = result.get_response() if protocol == "http" else result.get_response(as_json=True)
    assert response["model_version"] == "a" and response["id"] == "r1"
    # One served entity, whatever the traffic split says:
    assert client.infer("iris-oip", inputs, model_version="b").as_numpy("predictions").tolist() == \
        iris_oip_endpoint["models"]["b"].model.predict(model.frame).tolist()


@pytest.mark.parametrize("datatype", ["FP32", "FP16"])
def test_infer_pytorch(client, protocol, pytorch_endpoint, pytorch_model, datatype):
    import torch

    module = _module(protocol)
    sample = pytorch_model.sample.astype(np.float16 if datatype == "FP16" else np.float32)
    tensor = module.InferInput("input-0", list(sample.shape), datatype)
    tensor.set_data_from_numpy(sample)
    got = client.infer("torch-net", [tensor]).as_numpy("predictions")
    with torch.no_grad():
        expected = pytorch_model.model(torch.from_numpy(sample.astype(np.float32))).numpy()
    assert got.dtype == np.float32 and got.shape == (5, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_errors_name_the_input(client, protocol, iris_oip_endpoint, pytorch_endpoint):
    module = _module(protocol)
    tensor = module.InferInput("input-0", [2, 5], "FP32")
    tensor.set_data_from_numpy(np.zeros((2, 5), dtype=np.float32))
    with pytest.raises(InferenceServerException) as wrong_shape:
        client.infer("torch-net", [tensor])
    assert "input-0" in wrong_shape.value.message() and "[2, 5]" in wrong_shape.value.message()
    tensor = module.InferInput("input-0", [2, 4], "BYTES")
    tensor.set_data_from_numpy(np.array([[b"x"] * 4] * 2, dtype=object))
    with pytest.raises(InferenceServerException) as wrong_type:
        client.infer("torch-net", [tensor])
    assert "input-0" in wrong_type.value.message() and "BYTES" in wrong_type.value.message()
    with pytest.raises(InferenceServerException) as missing:
        client.infer("nope", [tensor])
    if protocol == "grpc":
        assert wrong_shape.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert missing.value.status() == "StatusCode.NOT_FOUND"
    else:
        assert wrong_shape.value.status() == "400" and missing.value.status() == "404"


def test_grpc_typed_contents(stack, iris_oip_endpoint):
    """Tensors in `contents` (not raw bytes), with the protocol's own messages as tritonclient ships them."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    model = iris_oip_endpoint["models"]["a"]
    request = service_pb2.ModelInferRequest(model_name="iris-oip")
    for column in COLUMNS:
        tensor = request.inputs.add(name=column, datatype="FP64", shape=[len(model.frame)])
        tensor.contents.fp64_contents.extend(model.frame[column].tolist())
    with grpc.insecure_channel(stack.info["grpc_target"]) as channel:
        reply = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30,
                                                                               metadata=stack.grpc_metadata())
    [output] = reply.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("predictions", "INT64", [5])
    assert np.frombuffer(reply.raw_output_contents[0], dtype="<i8").tolist() == model.model.predict(model.frame).tolist()
