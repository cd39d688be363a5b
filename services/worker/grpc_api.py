"""gRPC adapter of the worker."""

from __future__ import annotations

from podium_api.v1 import worker_pb2, worker_pb2_grpc
from services.common.grpc_edge import grpc_edge
from services.worker.core import Predictor


class WorkerServicer(worker_pb2_grpc.WorkerServicer):
    def __init__(self, predictor: Predictor):
        self._predictor = predictor

    @grpc_edge
    async def Predict(self, request, context):
        result = await self._predictor.predict(request.body, request.content_type)
        return worker_pb2.PredictReply(http_status=result.http_status, body=result.body,
                                       content_type=result.content_type)
