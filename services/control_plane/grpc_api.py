"""gRPC adapter of the control plane: parses the wire, calls one core method, renders the wire.

The caller's credential (`authorization` metadata) is only extracted here and handed to the core.
"""

from __future__ import annotations

import orjson

from podium_api.v1 import control_plane_pb2 as pb
from podium_api.v1 import control_plane_pb2_grpc
from services.common.deployments import DeploymentStatus
from services.common.errors import MalformedRequest
from services.common.gateway_routes import external_to_json, gateway_to_json
from services.common.grpc_edge import grpc_edge, metadata_token
from services.control_plane.core import EndpointService


def parse_json(text: str, what: str) -> object:
    try:
        return orjson.loads(text or "null")
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"{what} is not valid JSON: {exc}") from None


def _endpoint_reply(endpoint: dict) -> pb.EndpointReply:
    return pb.EndpointReply(endpoint_json=orjson.dumps(endpoint).decode())


def _json_reply(answer: dict) -> pb.JsonReply:
    return pb.JsonReply(json=orjson.dumps(answer).decode())


class ControlPlaneServicer(control_plane_pb2_grpc.ControlPlaneServicer):
    def __init__(self, service: EndpointService):
        self._service = service

    @grpc_edge
    async def CreateEndpoint(self, request, context):
        endpoint = await self._service.create(metadata_token(context),
                                              parse_json(request.endpoint_json, "endpoint_json"))
        return _endpoint_reply(endpoint)

    @grpc_edge
    async def GetEndpoint(self, request, context):
        return _endpoint_reply(await self._service.get(metadata_token(context), request.name))

    @grpc_edge
    async def ListEndpoints(self, request, context):
        return pb.ListEndpointsReply(endpoints_json=(await self._service.list_json(metadata_token(context))).decode())

    @grpc_edge
    async def UpdateConfig(self, request, context):
        return _endpoint_reply(await self._service.update_config(
            metadata_token(context), request.name, parse_json(request.config_json, "config_json")))

    @grpc_edge
    async def DeleteEndpoint(self, request, context):
        await self._service.delete(metadata_token(context), request.name)
        return pb.DeleteEndpointReply()

    @grpc_edge
    async def PatchTags(self, request, context):
        return _json_reply(await self._service.patch_tags(
            metadata_token(context), request.name, parse_json(request.body_json, "body_json")))

    @grpc_edge
    async def PutAiGateway(self, request, context):
        return _json_reply(await self._service.put_ai_gateway(
            metadata_token(context), request.name, parse_json(request.body_json, "body_json")))

    @grpc_edge
    async def PutRateLimits(self, request, context):
        return _json_reply(await self._service.put_rate_limits(
            metadata_token(context), request.name, parse_json(request.body_json, "body_json")))

    @grpc_edge
    async def UpdateNotifications(self, request, context):
        return _json_reply(await self._service.update_notifications(
            metadata_token(context), request.name, parse_json(request.body_json, "body_json")))

    @grpc_edge
    async def PatchTelemetryConfig(self, request, context):
        return _endpoint_reply(await self._service.patch_telemetry_config(
            metadata_token(context), request.name, parse_json(request.body_json, "body_json")))

    @grpc_edge
    async def GetServedModelLogs(self, request, context):
        answer = await self._service.served_model_logs(metadata_token(context), request.name,
                                                      request.served_model_name, build=False)
        return pb.ServedModelLogsReply(logs=answer["logs"])

    @grpc_edge
    async def GetServedModelBuildLogs(self, request, context):
        answer = await self._service.served_model_logs(metadata_token(context), request.name,
                                                      request.served_model_name, build=True)
        return pb.ServedModelLogsReply(logs=answer["logs"])

    @grpc_edge
    async def WatchRoutingTable(self, request, context):
        async for table in self._service.watch(metadata_token(context)):
            await context.write(pb.RoutingTable(endpoints=[
                pb.EndpointRoutes(name=e.name, id=e.id, routes=[
                    pb.Route(served_entity_name=r.served_entity_name, traffic_percentage=r.traffic_percentage,
                             deployment_key=r.deployment_key, replica_addresses=list(r.replica_addresses),
                             external_model_json=external_to_json(r.external_model))
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
