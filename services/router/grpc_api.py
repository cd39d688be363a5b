"""gRPC adapter of the router: the Query service, over the same Gateway as REST."""

from __future__ import annotations

from podium_api.v1 import query_pb2, query_pb2_grpc
from services.common.grpc_edge import grpc_edge
from services.router.core import Gateway


class QueryServicer(query_pb2_grpc.QueryServicer):
    def __init__(self, gateway: Gateway):
        self._gateway = gateway

    @grpc_edge
    async def Invoke(self, request, context):
        result = await self._gateway.query(request.endpoint, request.body, request.content_type or "application/json")
        return query_pb2.InvokeReply(body=result.body, content_type=result.content_type,
                                     served_model_name=result.served_entity_name)
