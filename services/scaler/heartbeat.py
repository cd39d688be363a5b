"""Heartbeats: the standard gRPC health check of each replica, over one reused channel per address."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.grpc_server import CHANNEL_OPTIONS
from services.common.tls import TlsFiles, open_channel

SERVING = health_pb2.HealthCheckResponse.SERVING


class HealthChecker:
    """With TLS, it presents the scaler's Podium certificate: workers accept no other client."""

    def __init__(self, tls: TlsFiles | None = None):
        self._tls = tls
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, health_pb2_grpc.HealthStub] = {}
        self._closing: set[asyncio.Task] = set()

    async def check(self, address: str, timeout_s: float, service: str = "") -> bool | None:
        """True: serving; False: alive but not serving (loading or draining); None: no answer in time (or no
        such `service`: the worker's own health is "")."""
        stub = self._stubs.get(address)
        if stub is None:
            self._channels[address] = open_channel(address, self._tls, CHANNEL_OPTIONS)
            stub = self._stubs[address] = health_pb2_grpc.HealthStub(self._channels[address])
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.aio.AioRpcError:
            return None
        return reply.status == SERVING

    def forget(self, address: str) -> None:
        channel = self._channels.pop(address, None)
        self._stubs.pop(address, None)
        if channel is not None:
            task = asyncio.get_running_loop().create_task(channel.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._channels.values()), *self._closing, return_exceptions=True)
        self._channels.clear()
        self._stubs.clear()
