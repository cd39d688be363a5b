"""gRPC adapters of the control plane: parse the wire, call one core method, render the wire.

- Management: every user-facing call, one `Call` named by its operation (operations.py decides which core).
- ControlPlane: the internal calls of the router and the scaler (routing table, deployments).

The caller's credential (`authorization` metadata) is only extracted here and handed to the core.
"""

from __future__ import annotations

import orjson

from podium_api.v1 import control_plane_pb2 as pb
from podium_api.v1 import control_plane_pb2_grpc, management_pb2, management_pb2_grpc
from services.common.deployments import DeploymentStatus
from services.common.errors import MalformedRequest
from services.common.gateway_routes import external_to_json, gateway_to_json
from services.common.grpc_edge import grpc_edge, metadata_token
from services.control_plane.core import EndpointService
from services.control_plane.operations import Call, Operations


def _parse_json(text: bytes, what: str) -> object:
    try:
        return orjson.loads(text or "null")
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"{what} is not valid JSON: {exc}") from None


class ManagementServicer(management_pb2_grpc.ManagementServicer):
    def __init__(self, operations: Operations):
        self._operations = operations

    @grpc_edge
    async def Call(self, request, context):
        answer = await self._operations.call(Call(
            metadata_token(context), request.operation, dict(request.params), _parse_json(request.body, "body"),
            dict(request.query)))
        return management_pb2.ManagementReply(json=answer)


class ControlPlaneServicer(control_plane_pb2_grpc.ControlPlaneServicer):
    def __init__(self, service: EndpointService):
        self._service = service

    @grpc_edge
    async def WatchRoutingTable(self, request, context):
        async for table in self._service.watch(metadata_token(context)):
            await context.write(pb.RoutingTable(endpoints=[
                pb.EndpointRoutes(name=e.name, id=e.id, routes=[
                    pb.Route(served_entity_name=r.served_entity_name, traffic_percentage=r.traffic_percentage,
                             deployment_key=r.deployment_key, replica_addresses=list(r.replica_addresses),
                             external_model_json=external_to_json(r.external_model),
                             shadow_percentage=r.shadow_percentage,
                             shadow_judge_endpoint=r.shadow_judge_endpoint)
                    for r in e.routes], gateway_json=gateway_to_json(e.gateway),
                    acl=[pb.Grant(principal_id=p, permission_level=level) for p, level in e.acl])
                for e in table]))

    @grpc_edge
    async def ListDeployments(self, request, context):
        return pb.ListDeploymentsReply(deployments=[
            pb.Deployment(key=d.key, endpoint_name=d.endpoint_name, served_entity_name=d.served_entity_name,
                          model_uri=d.model_uri, min_concurrency=d.min_concurrency,
                          max_concurrency=d.max_concurrency, scale_to_zero_enabled=d.scale_to_zero_enabled,
                          environment_vars=d.environment_vars, workload_type=d.workload_type,
                          is_serving=d.is_serving, max_batch_size=d.max_batch_size,
                          max_batch_wait_ms=d.max_batch_wait_ms)
            for d in self._service.deployments(metadata_token(context))])

    @grpc_edge
    async def ReportDeployments(self, request, context):
        await self._service.report(metadata_token(context), [
            DeploymentStatus(s.key, tuple(s.ready_addresses), s.starting_replicas, s.failure, s.desired_replicas)
            for s in request.statuses], scaler_target=request.scaler_target)
        return pb.ReportDeploymentsReply()
