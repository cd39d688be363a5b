"""REST adapter of the Open Inference Protocol v2 (KServe / Triton HTTP) on the router: parses the wire,
calls the protocol's core (open_inference.py), renders the answer.

`/v2/models/{endpoint}/infer` follows the endpoint's traffic routes, `/v2/models/{endpoint}/versions/{served
entity}/infer` one entity. Every path also answers under `/serving-endpoints/{prefix}/v2/...` (tritonclient
given `host:port/serving-endpoints/x` sends that).
Requests come as JSON or with the binary-tensor extension (`Inference-Header-Content-Length`, which is
tritonclient.http's default; it sends no Content-Type). Errors leave as the protocol's `{"error": ...}`
(rest.py's error middleware picks that shape for these paths).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from services.common.errors import BadRequest, InvalidParameter
from services.common.tensors import RawTensor, TensorMetadata, check_header, raw_from_values, values_from_raw
from services.router.core import Gateway, ModelDescription
from services.router.open_inference import EXTENSIONS, SERVER_NAME, OpenInference
from services.router.rest_identity import bearer_token
from services.router.results import answer_metadata

OIP_PATH = re.compile(r"^(/serving-endpoints/[^/]+)?/v2(/|$)")
BINARY_HEADER = "Inference-Header-Content-Length"
JSON = "application/json"
TRITON_TYPES = {"BYTES": "TYPE_STRING"}


def is_oip_path(path: str) -> bool:
    return OIP_PATH.match(path) is not None


@dataclass
class InferCall:
    """A decoded REST infer request: what goes to the model, and how the answer is to be rendered."""

    inputs: list[RawTensor]
    parameters: dict
    outputs: list[str] = field(default_factory=list)                # the outputs asked for; empty = all
    request_id: str | None = None
    binary_outputs: dict[str, bool] = field(default_factory=dict)   # per requested output
    binary_by_default: bool = False


class OpenInferenceRoutes:
    def __init__(self, gateway: Gateway):
        self._core = OpenInference(gateway)

    def register(self, router: web.UrlDispatcher) -> None:
        for prefix in ("", "/serving-endpoints/{prefix}"):
            router.add_get(prefix + "/v2", self.server_metadata)
            router.add_get(prefix + "/v2/health/live", self.server_live)
            router.add_get(prefix + "/v2/health/ready", self.server_ready)
            for model in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
                router.add_get(prefix + model, self.model_metadata)
                router.add_get(prefix + model + "/ready", self.model_ready)
                router.add_get(prefix + model + "/config", self.model_config)
                router.add_post(prefix + model + "/infer", self.model_infer)

    async def server_live(self, request: web.Request) -> web.Response:
        return web.json_response({"live": await self._core.is_server_ready(bearer_token(request))})

    async def server_ready(self, request: web.Request) -> web.Response:
        return web.json_response({"ready": await self._core.is_server_ready(bearer_token(request))})

    async def server_metadata(self, request: web.Request) -> web.Response:
        version = await self._core.server_version(bearer_token(request))
        return web.json_response({"name": SERVER_NAME, "version": version, "extensions": list(EXTENSIONS)})

    async def model_ready(self, request: web.Request) -> web.Response:
        model, version = request.match_info["model"], request.match_info.get("version")
        is_ready = await self._core.is_model_ready(bearer_token(request), model, version)
        # The protocol: 200 means ready, a 4xx status not ready (tritonclient reads only the status).
        return web.json_response({"name": model, "ready": is_ready}, status=200 if is_ready else 400)

    async def model_metadata(self, request: web.Request) -> web.Response:
        description = await self._describe(request)
        metadata = description.metadata
        return web.json_response({
            "name": description.endpoint_name,
            "versions": list(description.served_entity_names),
            "platform": metadata.platform,
            "inputs": [_tensor_json(t) for t in metadata.inputs],
            "outputs": [_tensor_json(t) for t in metadata.outputs],
        })

    async def model_config(self, request: web.Request) -> web.Response:
        """Triton's model-configuration extension, from the same signature as the metadata."""
        description = await self._describe(request)
        metadata = description.metadata
        return web.json_response({
            "name": description.endpoint_name,
            "platform": metadata.platform,
            "backend": "mlflow",
            "max_batch_size": 0,
            "input": [_triton_config(t) for t in metadata.inputs],
            "output": [_triton_config(t) for t in metadata.outputs],
        })

    async def model_infer(self, request: web.Request) -> web.Response:
        model, version = request.match_info["model"], request.match_info.get("version")
        call = decode_infer(await request.read(), request.headers.get(BINARY_HEADER))
        answer = await self._core.infer(bearer_token(request), model, version, call.inputs, call.outputs,
                                        call.parameters)
        response = render_infer(model, answer.result.served_entity_name, call, answer.outputs)
        response.headers.extend(answer_metadata(answer.result))
        return response

    async def _describe(self, request: web.Request) -> ModelDescription:
        return await self._core.describe(bearer_token(request), request.match_info["model"],
                                         request.match_info.get("version"))


def decode_infer(body: bytes, header_length: str | None) -> InferCall:
    """An infer request body (JSON, or JSON then raw tensors) as raw tensors and how to render the answer."""
    head, blob = body, b""
    if header_length is not None:
        try:
            split = int(header_length)
        except ValueError:
            split = -1
        if not 0 <= split <= len(body):
            raise BadRequest(f"{BINARY_HEADER} must be the byte length of the JSON header, at most the body's "
                             f"{len(body)} bytes")
        head, blob = body[:split], body[split:]
    try:
        document = orjson.loads(head)
    except orjson.JSONDecodeError:
        raise BadRequest("Request body is not valid JSON (binary tensors need the "
                         f"{BINARY_HEADER} header)") from None
    if not isinstance(document, dict):
        raise BadRequest("Request body must be a JSON object with `inputs`")
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidParameter("`inputs` must be a non-empty list of tensors")
    inputs, offset = [], 0
    for i, item in enumerate(raw_inputs):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidParameter(f"inputs[{i}] must be an object with a `name`")
        name = item["name"]
        datatype, shape = check_header(name, item.get("datatype"), item.get("shape"))
        size = _parameters(item, f"input '{name}'").get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(blob):
                raise InvalidParameter(f"input '{name}': binary_data_size {size!r} does not fit the "
                                       f"{len(blob) - offset} binary bytes left")
            inputs.append(RawTensor(name, datatype, shape, blob[offset:offset + size]))
            offset += size
        elif "data" in item:
            inputs.append(raw_from_values(name, datatype, shape, item["data"]))
        else:
            raise InvalidParameter(f"input '{name}' has neither `data` nor a binary_data_size parameter")
    if offset != len(blob):
        raise InvalidParameter(f"{len(blob) - offset} binary bytes follow the inputs' binary_data_size total")
    parameters = _parameters(document, "request")
    call = InferCall(inputs, parameters)
    call.binary_by_default = parameters.get("binary_data_output") is True
    request_id = document.get("id")
    call.request_id = request_id if isinstance(request_id, str) else None
    outputs = document.get("outputs") or []
    if not isinstance(outputs, list):
        raise InvalidParameter("`outputs` must be a list")
    for i, item in enumerate(outputs):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidParameter(f"outputs[{i}] must be an object with a `name`")
        call.outputs.append(item["name"])
        binary = _parameters(item, f"output '{item['name']}'").get("binary_data")
        if isinstance(binary, bool):
            call.binary_outputs[item["name"]] = binary
    return call


def render_infer(model: str, version: str, call: InferCall, tensors: list[RawTensor]) -> web.Response:
    document: dict = {"model_name": model, "model_version": version}
    if call.request_id is not None:
        document["id"] = call.request_id
    outputs, blobs = [], []
    for tensor in tensors:
        entry: dict = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        if call.binary_outputs.get(tensor.name, call.binary_by_default):
            entry["parameters"] = {"binary_data_size": len(tensor.raw)}
            blobs.append(tensor.raw)
        else:
            entry["data"] = values_from_raw(tensor)
        outputs.append(entry)
    document["outputs"] = outputs
    head = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return web.Response(body=head, content_type=JSON)
    return web.Response(body=head + b"".join(blobs),
                        headers={BINARY_HEADER: str(len(head)), "Content-Type": "application/octet-stream"})


def _parameters(item: dict, what: str) -> dict:
    parameters = item.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidParameter(f"{what}: `parameters` must be an object")
    return parameters


def _tensor_json(tensor: TensorMetadata) -> dict:
    return {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}


def _triton_config(tensor: TensorMetadata) -> dict:
    return {"name": tensor.name, "data_type": TRITON_TYPES.get(tensor.datatype, "TYPE_" + tensor.datatype),
            "dims": list(tensor.shape)}
