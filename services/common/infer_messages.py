"""The worker's Infer wire format (an INFER item of PredictStream), both ways: the router encodes an
InferRequest from raw tensors and decodes the InferReply; the worker decodes the request and encodes the reply.
"""

from __future__ import annotations

import orjson
from google.protobuf.message import DecodeError

from podium_api.v1 import worker_pb2
from services.common.errors import InvalidParameter
from services.common.tensors import RawTensor, check_header

INFER_CONTENT_TYPE = "application/x-protobuf"   # of both messages' bytes


def encode_infer_request(inputs: list[RawTensor], outputs: list[str], parameters: dict) -> bytes:
    """The InferRequest of the inputs, the outputs asked for (empty: all) and the model's parameters."""
    return worker_pb2.InferRequest(inputs=_tensors(inputs), outputs=outputs,
                                   parameters_json=orjson.dumps(parameters).decode()).SerializeToString()


def decode_infer_request(body: bytes) -> tuple[list[RawTensor], list[str], dict]:
    """The inputs, the outputs asked for, and the parameters; InvalidParameter for a malformed request."""
    try:
        request = worker_pb2.InferRequest.FromString(body)
    except DecodeError:
        raise InvalidParameter("the inference request could not be decoded") from None
    inputs = [RawTensor(t.name, *check_header(t.name, t.datatype, list(t.shape)), t.raw) for t in request.inputs]
    try:
        params = orjson.loads(request.parameters_json or "{}")
    except orjson.JSONDecodeError:
        raise InvalidParameter("parameters must be a JSON object") from None
    if not isinstance(params, dict):
        raise InvalidParameter("parameters must be a JSON object")
    return inputs, list(request.outputs), params


def encode_infer_reply(outputs: list[RawTensor]) -> bytes:
    return worker_pb2.InferReply(outputs=_tensors(outputs)).SerializeToString()


def decode_infer_reply(body: bytes) -> list[RawTensor]:
    return [RawTensor(t.name, t.datatype, tuple(t.shape), t.raw) for t in worker_pb2.InferReply.FromString(body).outputs]


def _tensors(tensors: list[RawTensor]) -> list[worker_pb2.Tensor]:
    return [worker_pb2.Tensor(name=t.name, datatype=t.datatype, shape=t.shape, raw=t.raw) for t in tensors]
