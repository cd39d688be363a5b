"""gRPC adapter of the Open Inference Protocol v2: KServe's `inference.GRPCInferenceService` on the router.

The same Gateway calls as the REST adapter (oip_rest.py): a model is a serving endpoint, a version one of
its served entities, and ModelInfer goes through Gateway.query like every other query. Tensors arrive as
`raw_input_contents` (tritonclient's way, passed on untouched) or typed `contents`; outputs always leave as
`raw_output_contents`. Errors are gRPC status codes (services/common/grpc_edge.py).
"""

from __future__ import annotations

import orjson

from podium_api.inference import grpc_predict_v2_pb2 as pb
from podium_api.inference import grpc_predict_v2_pb2_grpc
from podium_api.v1 import worker_pb2
from services.common.errors import InvalidParameter
from services.common.grpc_edge import grpc_edge, metadata_token
from services.common.tensors import RawTensor, check_header, raw_from_values
from services.router.core import Gateway, Protocol
from services.router.results import answer_metadata
from services.router.oip_rest import EXTENSIONS, RESERVED_PARAMETERS, server_version

# Which typed-contents field holds each datatype (FP16 has none: raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


class InferenceServicer(grpc_predict_v2_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, gateway: Gateway):
        self._gateway = gateway

    @grpc_edge
    async def ServerLive(self, request, context):
        await self._gateway.authenticate(metadata_token(context))
        return pb.ServerLiveResponse(live=True)

    @grpc_edge
    async def ServerReady(self, request, context):
        await self._gateway.authenticate(metadata_token(context))
        return pb.ServerReadyResponse(ready=True)

    @grpc_edge
    async def ServerMetadata(self, request, context):
        await self._gateway.authenticate(metadata_token(context))
        return pb.ServerMetadataResponse(name="podium", version=server_version(), extensions=EXTENSIONS)

    @grpc_edge
    async def ModelReady(self, request, context):
        ready = await self._gateway.is_ready(metadata_token(context), request.name, request.version or None)
        return pb.ModelReadyResponse(ready=ready)

    @grpc_edge
    async def ModelMetadata(self, request, context):
        description = await self._gateway.describe(metadata_token(context), request.name, request.version or None)
        metadata = description.metadata

        def tensors(items):
            return [pb.ModelMetadataResponse.TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape)
                    for t in items]
        return pb.ModelMetadataResponse(name=description.endpoint_name,
                                        versions=description.served_entity_names, platform=metadata.platform,
                                        inputs=tensors(metadata.inputs), outputs=tensors(metadata.outputs))

    @grpc_edge
    async def ModelInfer(self, request, context):
        message = worker_infer_request(request)
        result = await self._gateway.query(metadata_token(context), request.model_name, message.SerializeToString(),
                                           "application/x-protobuf",
                                           served_entity_name=request.model_version or None,
                                           protocol=Protocol.OPEN_INFERENCE)
        reply = worker_pb2.InferReply.FromString(result.body)
        await context.send_initial_metadata(answer_metadata(result))
        return pb.ModelInferResponse(
            model_name=request.model_name, model_version=result.served_entity_name, id=request.id,
            outputs=[pb.ModelInferResponse.InferOutputTensor(name=t.name, datatype=t.datatype, shape=t.shape)
                     for t in reply.outputs],
            raw_output_contents=[t.raw for t in reply.outputs])


def worker_infer_request(request) -> worker_pb2.InferRequest:
    """A ModelInferRequest as the worker's InferRequest (raw tensors, params as JSON)."""
    if not request.inputs:
        raise InvalidParameter("`inputs` must name at least one tensor")
    raw_contents = list(request.raw_input_contents)
    if raw_contents and len(raw_contents) != len(request.inputs):
        raise InvalidParameter(f"raw_input_contents has {len(raw_contents)} entries for {len(request.inputs)} inputs")
    tensors = []
    for i, item in enumerate(request.inputs):
        datatype, shape = check_header(item.name, item.datatype, list(item.shape))
        if raw_contents:
            tensor = RawTensor(item.name, datatype, shape, raw_contents[i])
        elif datatype == "FP16":
            raise InvalidParameter(f"input '{item.name}': FP16 travels only in raw_input_contents")
        else:
            tensor = raw_from_values(item.name, datatype, shape, list(getattr(item.contents, CONTENTS_FIELD[datatype])))
        tensors.append(worker_pb2.Tensor(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape, raw=tensor.raw))
    parameters = {key: _parameter_value(value) for key, value in request.parameters.items()
                  if key not in RESERVED_PARAMETERS}
    return worker_pb2.InferRequest(inputs=tensors, outputs=[o.name for o in request.outputs],
                                   parameters_json=orjson.dumps(parameters).decode())


def _parameter_value(parameter):
    choice = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, choice) if choice else None
