"""gRPC adapter of the scaler: its replicas' logs, for the control plane."""

from __future__ import annotations

from podium_api.v1 import scaler_pb2, scaler_pb2_grpc
from services.common.grpc_edge import grpc_edge, metadata_token
from services.scaler.replica_logs import ReplicaLogs


class ScalerServicer(scaler_pb2_grpc.ScalerServicer):
    def __init__(self, logs: ReplicaLogs):
        self._logs = logs

    @grpc_edge
    async def GetReplicaLogs(self, request, context):
        text = await self._logs.read(metadata_token(context), request.deployment_key, build=request.build, max_bytes=request.max_bytes)
        return scaler_pb2.ReplicaLogsReply(logs=text)
