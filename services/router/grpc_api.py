"""gRPC adapter of the router: the Query service, over the same Gateway as REST."""

from __future__ import annotations

import contextlib
import logging

from podium_api.v1 import query_pb2, query_pb2_grpc
from services.common.errors import PodiumError
from services.common.grpc_edge import abort_with, grpc_edge, metadata_token
from services.router.agent_wire import event_data, with_stream
from services.router.core import Gateway
from services.router.results import answer_metadata
from services.router.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

log = logging.getLogger(__name__)


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

    async def InvokeStream(self, request, context):
        try:
            # The same query as Invoke, asking the model to stream (the body must be a JSON object)
            result = await self._gateway.query(metadata_token(context), request.endpoint, with_stream(request.body),
                                               request.content_type or "application/json",
                                               served_entity_name=request.served_model_name or None)
        except PodiumError as exc:
            await abort_with(context, exc)
            return
        except Exception:
            log.exception("unhandled error in InvokeStream")
            await abort_with(context, PodiumError("internal error"))
            return
        await context.send_initial_metadata(answer_metadata(result) +
                                            (("served-model-name", result.served_entity_name),))
        if result.stream is None:   # a model that does not stream: its one answer
            yield query_pb2.InvokeEvent(data=result.body)
            return
        pending = bytearray()
        async with contextlib.aclosing(result.stream) as chunks:   # closed early: the model stops
            async for chunk in chunks:
                for data in event_data(chunk, pending):
                    yield query_pb2.InvokeEvent(data=data)

    @grpc_edge
    async def ExportMetrics(self, request, context):
        contents = await self._gateway.export_metrics(metadata_token(context), request.endpoint)
        return query_pb2.ContentsReply(contents=contents, content_type=METRICS_CONTENT_TYPE)

    @grpc_edge
    async def GetOpenApi(self, request, context):
        contents = await self._gateway.get_open_api(metadata_token(context), request.endpoint)
        return query_pb2.ContentsReply(contents=contents, content_type="application/json")
