"""The Open Inference Protocol v2 (KServe / Triton) on the router: what its REST (oip_rest.py) and gRPC
(oip_grpc.py) adapters both do once they have parsed the wire.

A model is a serving endpoint; a model version is one of its served entities. Every call needs a credential,
server health included (unauthenticated probes have /healthz). An infer request, decoded into raw tensors by
an adapter, goes through the same Gateway.query as the Databricks invocations, as the worker's InferRequest;
the answer's tensors come back raw, for the adapter to render.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass

from services.common.infer_messages import INFER_CONTENT_TYPE, decode_infer_reply, encode_infer_request
from services.common.tensors import RawTensor
from services.router.core import Gateway, ModelDescription, WireProtocol
from services.router.results import QueryResult

SERVER_NAME = "podium"
EXTENSIONS = ("binary_tensor_data", "model_configuration")
# Request parameters that steer the protocol (tritonclient's reserved ones), never passed to the model.
RESERVED_PARAMETERS = frozenset({"binary_data_output", "binary_data", "binary_data_size", "sequence_id",
                                 "sequence_start", "sequence_end", "priority", "timeout", "headers"})


@dataclass(frozen=True)
class InferAnswer:
    outputs: list[RawTensor]
    result: QueryResult        # the query's answer: its served entity, request id and overhead


def server_version() -> str:
    try:
        return importlib.metadata.version("podium")
    except importlib.metadata.PackageNotFoundError:
        return "0"


class OpenInference:
    def __init__(self, gateway: Gateway):
        self._gateway = gateway

    async def is_server_ready(self, token: str) -> bool:
        """Live and ready alike: the router serves only once it has a routing table. Unauthenticated for a
        stranger."""
        await self._gateway.authenticate(token)
        return True

    async def server_version(self, token: str) -> str:
        await self._gateway.authenticate(token)
        return server_version()

    async def is_model_ready(self, token: str, model: str, version: str | None) -> bool:
        return await self._gateway.is_ready(token, model, version)

    async def describe(self, token: str, model: str, version: str | None) -> ModelDescription:
        return await self._gateway.describe(token, model, version)

    async def infer(self, token: str, model: str, version: str | None, inputs: list[RawTensor],
                    outputs: list[str], parameters: dict) -> InferAnswer:
        """The model's output tensors (those asked for; none named: all). Parameters that steer the protocol
        are dropped; the rest are the model's MLflow params."""
        body = encode_infer_request(inputs, outputs,
                                    {k: v for k, v in parameters.items() if k not in RESERVED_PARAMETERS})
        result = await self._gateway.query(token, model, body, INFER_CONTENT_TYPE, served_entity_name=version,
                                           protocol=WireProtocol.OPEN_INFERENCE)
        return InferAnswer(decode_infer_reply(result.body), result)
