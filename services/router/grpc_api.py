"""gRPC adapter of the router: the Query service, over the same Gateway as REST."""

from __future__ import annotations

import contextlib

from podium_api.v1 import query_pb2, query_pb2_grpc
from services.common.grpc_edge import grpc_edge, metadata_token
from services.router.core import Gateway
from services.router.results import answer_metadata
from services.router.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE


class QueryServicer(query_pb2_grpc.QueryServicer):
    def __init__(self, gateway: Gateway):
        self._gateway = gateway

    @grpc_edge
    async def Invoke(self, request, context):
        result = await self._gateway.query(metadata_token(context), request.endpoint, request.body,
                                           request.content_type or "application/json",
                                           served_entity_name=request.served_model_name or None)
        body = result.body
        if result.stream is not None:  # gRPC Invoke is unary: the whole event stream, once it has ended
            async with contextlib.aclosing(result.stream) as chunks:
                body = b"".join([chunk async for chunk in chunks])
        await context.send_initial_metadata(answer_metadata(result))
        return query_pb2.InvokeReply(body=body, content_type=result.content_type,
                                     served_model_name=result.served_entity_name)

    @grpc_edge
    async def ExportMetrics(self, request, context):
        contents = await self._gateway.export_metrics(metadata_token(context), request.endpoint)
        return query_pb2.ContentsReply(contents=contents, content_type=METRICS_CONTENT_TYPE)

    @grpc_edge
    async def GetOpenApi(self, request, context):
        contents = await self._gateway.get_open_api(metadata_token(context), request.endpoint)
        return query_pb2.ContentsReply(contents=contents, content_type="application/json")
