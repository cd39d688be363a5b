"""The control plane's outbound I/O: the scalers, which run the replicas and keep what they print."""

from __future__ import annotations

import grpc

from podium_api.v1 import scaler_pb2, scaler_pb2_grpc
from services.common.grpc_edge import bearer_metadata, error_from_rpc
from services.common.grpc_server import CHANNEL_OPTIONS
from services.common.tls import TlsFiles, open_channel


class ScalerClients:
    """One long-lived channel per scaler that reported. Calls carry Podium's internal service credential and,
    with TLS, the control plane's certificate: scalers answer no one else."""

    def __init__(self, timeout_s: float = 10.0, *, internal_token: str = "", tls: TlsFiles | None = None):
        self._timeout_s = timeout_s
        self._metadata = bearer_metadata(internal_token)
        self._tls = tls
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _stub(self, target: str) -> scaler_pb2_grpc.ScalerStub:
        channel = self._channels.get(target)
        if channel is None:
            channel = self._channels[target] = open_channel(target, self._tls, CHANNEL_OPTIONS)
        return scaler_pb2_grpc.ScalerStub(channel)

    async def replica_logs(self, target: str, deployment_key: str, *, build: bool) -> str:
        try:
            reply = await self._stub(target).GetReplicaLogs(
                scaler_pb2.ReplicaLogsRequest(deployment_key=deployment_key, build=build), timeout=self._timeout_s,
                metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, "scaler") from None
        return reply.logs

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
