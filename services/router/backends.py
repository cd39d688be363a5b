"""The router's outbound I/O: worker channels, and the routing table followed from the control plane."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping

import grpc

from podium_api.v1 import worker_pb2, worker_pb2_grpc
from services.common.control_plane_client import ControlPlaneClient
from services.common.deployments import EndpointRoutes
from services.common.errors import InvalidParameter
from services.common.grpc_edge import bearer_metadata
from services.common import tracing
from services.common.grpc_server import CHANNEL_OPTIONS
from services.common.request_context import request_id_var
from services.common.secret_box import SecretError
from services.common.tensors import ModelMetadata, TensorMetadata
from services.common.tls import TlsFiles, open_channel
from services.router.prediction_stream import (
    EventsUnsupported, PredictionStream, StreamedEvents, WorkerEvent, WorkerEvents, WorkerReply, open_events,
    replica_error,
)

log = logging.getLogger(__name__)


class WorkerPool:
    """One long-lived gRPC channel per worker replica, its prediction stream, and how many requests each
    replica has in flight.

    Every call presents the router's worker credential (workers answer no one else) and, with TLS, the
    router's Podium certificate.
    """

    def __init__(self, worker_token: str = "", tls: TlsFiles | None = None, eject_s: float = 10.0):
        self._credential = bearer_metadata(worker_token)
        self._tls = tls
        self._stubs: dict[str, worker_pb2_grpc.WorkerStub] = {}
        self._streams: dict[str, PredictionStream] = {}   # predictions go over one stream per replica
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.in_flight: dict[str, int] = {}
        # Replicas a call found unreachable, and until when (monotonic) no request is routed to them: the
        # routing table drops a dead replica only once the scaler notices (heartbeat expiry), this at once.
        self._ejected: dict[str, float] = {}
        self._eject_s = eject_s

    def eject(self, address: str) -> None:
        """Routes nothing more to `address` for eject_s, unless nothing else is left (a blip, not a death)."""
        self._ejected[address] = time.monotonic() + self._eject_s

    def is_ejected(self, address: str) -> bool:
        until = self._ejected.get(address)
        if until is None:
            return False
        if time.monotonic() >= until:
            del self._ejected[address]
            return False
        return True

    def keep_only(self, addresses: set[str]) -> None:
        """Closes channels to replicas that left the routing table."""
        for address in [a for a in self._ejected if a not in addresses]:
            del self._ejected[address]
        for address in list(self._channels):
            if address not in addresses:
                channel = self._channels.pop(address)
                self._stubs.pop(address, None)
                # The stream ends once its requests in flight are answered, before the channel closes.
                self._streams.pop(address).close()
                self.in_flight.pop(address, None)
                self._ejected.pop(address, None)
                asyncio.get_running_loop().create_task(channel.close(grace=30))

    def _stub(self, address: str) -> worker_pb2_grpc.WorkerStub:
        stub = self._stubs.get(address)
        if stub is None:
            channel = open_channel(address, self._tls, CHANNEL_OPTIONS)
            self._channels[address] = channel
            stub = self._stubs[address] = worker_pb2_grpc.WorkerStub(channel)
            self._streams[address] = PredictionStream(channel, self._credential, address)
        return stub

    async def predict(self, address: str, body: bytes, content_type: str, timeout_s: float) -> WorkerReply:
        return await self._streamed(address, timeout_s, body, content_type, worker_pb2.PredictItem.PREDICT)

    async def infer(self, address: str, body: bytes, timeout_s: float) -> WorkerReply:
        """Sends a serialized worker InferRequest (as the router's adapters built it: no re-encoding); the
        reply body is a serialized InferReply."""
        return await self._streamed(address, timeout_s, body, "", worker_pb2.PredictItem.INFER)

    async def open_events(self, address: str, body: bytes, content_type: str,
                          timeout_s: float) -> tuple[WorkerEvent, StreamedEvents | WorkerEvents]:
        """A streaming model's first event for a `"stream": true` request (within timeout_s), and the rest as
        they come (each within timeout_s of the one before); the replica counts as busy until they end."""
        self._stub(address)
        self.in_flight[address] = self.in_flight.get(address, 0) + 1
        request_id, traceparent = request_id_var.get(), tracing.current_traceparent()
        try:
            try:
                return await self._streams[address].open_events(body, content_type, timeout_s, request_id,
                                                                 traceparent, lambda: self._done(address))
            except EventsUnsupported:   # a worker from before EVENTS items: a call of the stream's own
                item = worker_pb2.PredictItem(body=body, content_type=content_type, request_id=request_id,
                                              traceparent=traceparent, timeout_s=timeout_s)
                return await open_events(self._channels[address], self._credential, address, item, timeout_s,
                                         lambda: self._done(address))
        except BaseException:
            self._done(address)
            raise

    def _done(self, address: str) -> None:
        if address in self.in_flight:
            self.in_flight[address] -= 1

    async def metadata(self, address: str, timeout_s: float) -> ModelMetadata:
        stub = self._stub(address)
        try:
            reply = await stub.Metadata(worker_pb2.MetadataRequest(), timeout=timeout_s, metadata=self._credential)
        except grpc.aio.AioRpcError as exc:
            raise replica_error(exc, address) from None

        def tensors(items) -> tuple[TensorMetadata, ...]:
            return tuple(TensorMetadata(t.name, t.datatype, tuple(t.shape)) for t in items)
        return ModelMetadata(reply.platform, tensors(reply.inputs), tensors(reply.outputs), reply.task,
                             reply.is_streaming)

    async def _streamed(self, address: str, timeout_s: float, body: bytes, content_type: str,
                        method: int) -> WorkerReply:
        self._stub(address)
        self.in_flight[address] = self.in_flight.get(address, 0) + 1
        try:
            return await self._streams[address].predict(body, content_type, timeout_s, request_id_var.get(),
                                                         tracing.current_traceparent(), method)
        finally:
            if address in self.in_flight:
                self.in_flight[address] -= 1

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._channels.values()), return_exceptions=True)


class RoutingTableFollower:
    """Keeps the latest routing table from the control plane's watch stream, reconnecting when it breaks.

    The control plane pushes a new table as soon as the scaler reports a replica ready or gone, so the
    router learns of changes without polling; `on_change` runs after each table (e.g. waking requests
    that wait for a replica).
    """

    def __init__(self, control_plane: ControlPlaneClient, pool: WorkerPool, retry_s: float = 0.5,
                 on_table: Callable[[Iterable[str]], None] | None = None,
                 on_change: Callable[[], None] = lambda: None):
        self._control_plane = control_plane
        self._pool = pool
        self._on_table = on_table  # told the endpoint names of every new table (e.g. to drop their metrics)
        self._retry_s = retry_s
        self.on_change = on_change
        self.endpoints: dict[str, EndpointRoutes] = {}
        self._replicas: dict[str, tuple[str, ...]] = {}
        self.first_table = asyncio.Event()
        self._next_table = asyncio.Event()

    def replica_addresses(self, deployment_key: str) -> tuple[str, ...] | None:
        """Ready replicas of a deployment; None when the routing table no longer has the deployment."""
        return self._replicas.get(deployment_key)

    async def run(self) -> None:
        while True:
            try:
                async for table in self._control_plane.watch_routing_table():
                    self._apply(table)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep serving from the last table while the control plane is away
                log.warning("routing table stream broke (%s); reconnecting", getattr(exc, "message", exc))
            await asyncio.sleep(self._retry_s)

    def _apply(self, table: list[EndpointRoutes]) -> None:
        self.endpoints = {e.name: e for e in table}
        self._replicas = {r.deployment_key: r.replica_addresses for e in table for r in e.routes}
        self._pool.keep_only({a for addresses in self._replicas.values() for a in addresses})
        if self._on_table is not None:
            self._on_table(self.endpoints.keys())
        self.first_table.set()
        self._next_table.set()
        self._next_table = asyncio.Event()
        self.on_change()

    async def wait_for_endpoint(self, name: str, timeout_s: float) -> None:
        """Returns once the table has `name`, or after timeout_s (the table is eventually consistent)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while name not in self.endpoints and loop.time() < deadline:
            try:
                await asyncio.wait_for(self._next_table.wait(), deadline - loop.time())
            except asyncio.TimeoutError:
                return


class ControlPlaneSecrets:
    """`{{secrets/scope/key}}` values from the control plane's encrypted secrets store, asked with Podium's
    service credential (the caller, services/router/external/credentials.py, keeps them a short while).
    Secrets given to this router at start (PODIUM_SECRETS) are looked up first."""

    def __init__(self, control_plane: ControlPlaneClient, given: Mapping[str, str] | None = None):
        self._control_plane = control_plane
        self._given = dict(given or {})

    async def resolve(self, scope: str, key: str, endpoint: str) -> str:
        given = self._given.get(f"{scope}/{key}")
        if given is not None:
            return given
        try:
            [value] = await self._control_plane.resolve_secrets([f"{{{{secrets/{scope}/{key}}}}}"], endpoint)
        except InvalidParameter:
            raise SecretError(f"secret '{key}' does not exist in scope '{scope}'") from None
        return value
