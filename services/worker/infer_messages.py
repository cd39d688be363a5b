"""Worker InferRequest and InferReply messages to and from the Predictor's raw tensors, for both ways an
Infer arrives (the unary Infer call and an INFER item of PredictStream)."""

from __future__ import annotations

import orjson

from podium_api.v1 import worker_pb2
from services.common.errors import InvalidParameter
from services.common.tensors import RawTensor, check_header


def infer_arguments(request: worker_pb2.InferRequest) -> tuple[list[RawTensor], list[str], dict]:
    """The inputs, the outputs asked for, and the parameters; InvalidParameter for a malformed request."""
    inputs = [RawTensor(t.name, *check_header(t.name, t.datatype, list(t.shape)), t.raw) for t in request.inputs]
    try:
        params = orjson.loads(request.parameters_json or "{}")
    except orjson.JSONDecodeError:
        raise InvalidParameter("parameters must be a JSON object") from None
    if not isinstance(params, dict):
        raise InvalidParameter("parameters must be a JSON object")
    return inputs, list(request.outputs), params


def infer_reply(outputs: list[RawTensor]) -> worker_pb2.InferReply:
    return worker_pb2.InferReply(outputs=[
        worker_pb2.Tensor(name=t.name, datatype=t.datatype, shape=t.shape, raw=t.raw) for t in outputs])
