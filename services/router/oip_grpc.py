"""gRPC adapter of the Open Inference Protocol v2: KServe's `inference.GRPCInferenceService` on the router.
It parses the wire, calls the protocol's core (open_inference.py), the same calls as the REST adapter
(oip_rest.py), and renders the answer.

Tensors arrive as `raw_input_contents` (tritonclient's way, passed on untouched) or typed `contents`; outputs
always leave as `raw_output_contents`. Errors are gRPC status codes (services/common/grpc_edge.py).
"""

from __future__ import annotations

from podium_api.inference import grpc_predict_v2_pb2 as pb
from podium_api.inference import grpc_predict_v2_pb2_grpc
from services.common.errors import InvalidParameter
from services.common.grpc_edge import grpc_edge, metadata_token
from services.common.tensors import RawTensor, check_header, raw_from_values
from services.router.core import Gateway
from services.router.open_inference import EXTENSIONS, SERVER_NAME, OpenInference
from services.router.results import answer_metadata

# Which typed-contents field holds each datatype (FP16 has none: raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


class InferenceServicer(grpc_predict_v2_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, gateway: Gateway):
        self._core = OpenInference(gateway)

    @grpc_edge
    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=await self._core.is_server_ready(metadata_token(context)))

    @grpc_edge
    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=await self._core.is_server_ready(metadata_token(context)))

    @grpc_edge
    async def ServerMetadata(self, request, context):
        version = await self._core.server_version(metadata_token(context))
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=version, extensions=EXTENSIONS)

    @grpc_edge
    async def ModelReady(self, request, context):
        ready = await self._core.is_model_ready(metadata_token(context), request.name, request.version or None)
        return pb.ModelReadyResponse(ready=ready)

    @grpc_edge
    async def ModelMetadata(self, request, context):
        description = await self._core.describe(metadata_token(context), request.name, request.version or None)
        metadata = description.metadata

        def tensors(items):
            return [pb.ModelMetadataResponse.TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape)
                    for t in items]
        return pb.ModelMetadataResponse(name=description.endpoint_name,
                                        versions=description.served_entity_names, platform=metadata.platform,
                                        inputs=tensors(metadata.inputs), outputs=tensors(metadata.outputs))

    @grpc_edge
    async def ModelInfer(self, request, context):
        parameters = {key: _parameter_value(value) for key, value in request.parameters.items()}
        answer = await self._core.infer(metadata_token(context), request.model_name, request.model_version or None,
                                        _input_tensors(request), [o.name for o in request.outputs], parameters)
        await context.send_initial_metadata(answer_metadata(answer.result))
        return pb.ModelInferResponse(
            model_name=request.model_name, model_version=answer.result.served_entity_name, id=request.id,
            outputs=[pb.ModelInferResponse.InferOutputTensor(name=t.name, datatype=t.datatype, shape=t.shape)
                     for t in answer.outputs],
            raw_output_contents=[t.raw for t in answer.outputs])


def _input_tensors(request: pb.ModelInferRequest) -> list[RawTensor]:
    """A ModelInferRequest's inputs as raw tensors."""
    if not request.inputs:
        raise InvalidParameter("`inputs` must name at least one tensor")
    raw_contents = list(request.raw_input_contents)
    if raw_contents and len(raw_contents) != len(request.inputs):
        raise InvalidParameter(f"raw_input_contents has {len(raw_contents)} entries for {len(request.inputs)} inputs")
    tensors = []
    for i, item in enumerate(request.inputs):
        datatype, shape = check_header(item.name, item.datatype, list(item.shape))
        if raw_contents:
            tensors.append(RawTensor(item.name, datatype, shape, raw_contents[i]))
        elif datatype == "FP16":
            raise InvalidParameter(f"input '{item.name}': FP16 travels only in raw_input_contents")
        else:
            values = list(getattr(item.contents, CONTENTS_FIELD[datatype]))
            tensors.append(raw_from_values(item.name, datatype, shape, values))
    return tensors


def _parameter_value(parameter):
    choice = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, choice) if choice else None
