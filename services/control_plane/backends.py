"""The control plane's outbound I/O: the scalers, which run the replicas and keep what they print."""

from __future__ import annotations

import grpc

from podium_api.v1 import scaler_pb2, scaler_pb2_grpc
from services.common.grpc_edge import error_from_rpc
from services.common.grpc_server import CHANNEL_OPTIONS


class ScalerClients:
    """One long-lived channel per scaler that reported (a scaler per machine, later)."""

    def __init__(self, timeout_s: float = 10.0):
        self._timeout_s = timeout_s
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _stub(self, target: str) -> scaler_pb2_grpc.ScalerStub:
        channel = self._channels.get(target)
        if channel is None:
            channel = self._channels[target] = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        return scaler_pb2_grpc.ScalerStub(channel)

    async def replica_logs(self, target: str, deployment_key: str, *, build: bool) -> str:
        try:
            reply = await self._stub(target).GetReplicaLogs(
                scaler_pb2.ReplicaLogsRequest(deployment_key=deployment_key, build=build), timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, "scaler") from None
        return reply.logs

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
