"""The one client of the control plane's gRPC API, used by the router and the scaler.

Every call has a deadline; a failed call comes back as the PodiumError the control plane raised.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import orjson

from podium_api.v1 import control_plane_pb2 as pb
from podium_api.v1 import control_plane_pb2_grpc
from services.common.deployments import Deployment, DeploymentStatus, EndpointRoutes, RouteTarget
from services.common.gateway_routes import external_from_json, gateway_from_json
from services.common.grpc_edge import error_from_rpc
from services.common.grpc_server import CHANNEL_OPTIONS


class ControlPlaneClient:
    def __init__(self, target: str, timeout_s: float = 10.0):
        self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._stub = control_plane_pb2_grpc.ControlPlaneStub(self._channel)
        self._timeout_s = timeout_s

    async def _call(self, method, request):
        try:
            return await method(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, "control plane") from None

    # ---- serving endpoints (JSON documents in the Databricks shapes) ----

    async def create_endpoint(self, body: bytes | str, caller: str) -> bytes:
        text = body.decode() if isinstance(body, bytes) else body
        reply = await self._call(self._stub.CreateEndpoint, pb.CreateEndpointRequest(endpoint_json=text, caller=caller))
        return reply.endpoint_json.encode()

    async def get_endpoint(self, name: str) -> bytes:
        return (await self._call(self._stub.GetEndpoint, pb.GetEndpointRequest(name=name))).endpoint_json.encode()

    async def list_endpoints(self) -> bytes:
        return (await self._call(self._stub.ListEndpoints, pb.ListEndpointsRequest())).endpoints_json.encode()

    async def update_config(self, name: str, body: bytes | str) -> bytes:
        text = body.decode() if isinstance(body, bytes) else body
        reply = await self._call(self._stub.UpdateConfig, pb.UpdateConfigRequest(name=name, config_json=text))
        return reply.endpoint_json.encode()

    async def delete_endpoint(self, name: str) -> None:
        await self._call(self._stub.DeleteEndpoint, pb.DeleteEndpointRequest(name=name))

    async def patch_tags(self, name: str, body: bytes | str) -> bytes:
        return await self._update(self._stub.PatchTags, name, body)

    async def put_ai_gateway(self, name: str, body: bytes | str) -> bytes:
        return await self._update(self._stub.PutAiGateway, name, body)

    async def put_rate_limits(self, name: str, body: bytes | str) -> bytes:
        return await self._update(self._stub.PutRateLimits, name, body)

    async def update_notifications(self, name: str, body: bytes | str) -> bytes:
        return await self._update(self._stub.UpdateNotifications, name, body)

    async def patch_telemetry_config(self, name: str, body: bytes | str) -> bytes:
        text = body.decode() if isinstance(body, bytes) else body
        reply = await self._call(self._stub.PatchTelemetryConfig, pb.EndpointUpdateRequest(name=name, body_json=text))
        return reply.endpoint_json.encode()

    async def served_model_logs(self, name: str, served_model_name: str, *, build: bool) -> str:
        method = self._stub.GetServedModelBuildLogs if build else self._stub.GetServedModelLogs
        reply = await self._call(method, pb.ServedModelLogsRequest(name=name, served_model_name=served_model_name))
        return reply.logs

    async def _update(self, method, name: str, body: bytes | str) -> bytes:
        text = body.decode() if isinstance(body, bytes) else body
        return (await self._call(method, pb.EndpointUpdateRequest(name=name, body_json=text))).json.encode()

    async def get_endpoint_dict(self, name: str) -> dict:
        return orjson.loads(await self.get_endpoint(name))

    # ---- internal ----

    async def list_deployments(self) -> list[Deployment]:
        reply = await self._call(self._stub.ListDeployments, pb.ListDeploymentsRequest())
        return [Deployment(d.key, d.endpoint_name, d.served_entity_name, d.model_uri, d.min_concurrency,
                           d.max_concurrency, d.scale_to_zero_enabled, dict(d.environment_vars),
                           workload_type=d.workload_type or "CPU", is_serving=d.is_serving)
                for d in reply.deployments]

    async def report_deployments(self, statuses: list[DeploymentStatus], scaler_target: str = "") -> None:
        request = pb.ReportDeploymentsRequest(scaler_target=scaler_target, statuses=[
            pb.DeploymentStatus(key=s.key, ready_addresses=list(s.ready_addresses),
                                starting_replicas=s.starting_replicas, failure=s.failure,
                                desired_replicas=s.desired_replicas) for s in statuses])
        await self._call(self._stub.ReportDeployments, request)

    async def watch_routing_table(self) -> AsyncIterator[list[EndpointRoutes]]:
        """Yields routing tables until the stream breaks (the caller reconnects)."""
        call = self._stub.WatchRoutingTable(pb.WatchRoutingTableRequest())
        try:
            async for table in call:
                yield [EndpointRoutes(e.name, e.id, tuple(
                    RouteTarget(r.served_entity_name, r.traffic_percentage, r.deployment_key,
                                tuple(r.replica_addresses), external_from_json(r.external_model_json))
                    for r in e.routes), gateway_from_json(e.gateway_json)) for e in table.endpoints]
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._channel.close()
