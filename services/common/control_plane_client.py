"""The one client of the control plane's gRPC API, used by the router and the scaler.

Every call has a deadline; a failed call comes back as the PodiumError the control plane raised. User-facing
calls carry the caller's own credential (the control plane decides what it may do); internal calls carry
Podium's internal service credential. With TLS the channel also presents this service's certificate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import grpc

from podium_api.v1 import control_plane_pb2 as pb
from podium_api.v1 import control_plane_pb2_grpc, identity_pb2, identity_pb2_grpc
from podium_api.v1 import management_pb2, management_pb2_grpc
from services.common.deployments import Deployment, DeploymentStatus, EndpointRoutes, RouteTarget
from services.common.gateway_routes import external_from_json, gateway_from_json
from services.common.grpc_edge import bearer_metadata, error_from_rpc
from services.common.grpc_server import CHANNEL_OPTIONS
from services.common.principals import Principal
from services.common.tls import TlsFiles, open_channel


class ControlPlaneClient:
    def __init__(self, target: str, timeout_s: float = 10.0, *, internal_token: str = "",
                 tls: TlsFiles | None = None):
        self._channel = open_channel(target, tls, CHANNEL_OPTIONS)
        self._stub = control_plane_pb2_grpc.ControlPlaneStub(self._channel)
        self._identity = identity_pb2_grpc.IdentityStub(self._channel)
        self._management = management_pb2_grpc.ManagementStub(self._channel)
        self._timeout_s = timeout_s
        self._internal = bearer_metadata(internal_token)

    async def _call(self, method, request, token: str | None = None):
        metadata = self._internal if token is None else bearer_metadata(token)
        try:
            return await method(request, timeout=self._timeout_s, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, "control plane") from None

    # ---- the management API (JSON documents in the Databricks shapes), as the calling user ----

    async def manage(self, token: str, operation: str, *, params: Mapping[str, str] | None = None,
                     query: Mapping[str, str] | None = None, body: bytes = b"") -> bytes:
        """The JSON answer of one management operation (protos/podium_api/v1/management.proto)."""
        request = management_pb2.ManagementCall(operation=operation, params=params or {}, query=query or {},
                                                body=body)
        return (await self._call(self._management.Call, request, token)).json

    # ---- sign-in: no bearer credential (the OAuth client secret is the credential) ----

    async def issue_oauth_token(self, client_id: str, client_secret: str, scope: str) -> dict:
        request = identity_pb2.IssueOAuthTokenRequest(client_id=client_id, client_secret=client_secret, scope=scope)
        reply = await self._call(self._identity.IssueOAuthToken, request, "")
        return {"access_token": reply.access_token, "token_type": reply.token_type,
                "expires_in": reply.expires_in, "scope": reply.scope}

    # ---- internal (Podium's service credential) ----

    async def authenticate(self, token: str) -> Principal:
        reply = await self._call(self._identity.Authenticate, identity_pb2.AuthenticateRequest(token=token))
        return Principal(id=reply.id, name=reply.name, kind=reply.kind, display_name=reply.display_name,
                         group_ids=frozenset(reply.group_ids), group_names=frozenset(reply.group_names),
                         is_admin=reply.is_admin,
                         expires_at=reply.expires_at if reply.HasField("expires_at") else None,
                         endpoint_scope=frozenset(reply.endpoint_scope.endpoints)
                         if reply.HasField("endpoint_scope") else None)

    async def resolve_secrets(self, texts: list[str], endpoint_name: str) -> list[str]:
        """`{{secrets/<scope>/<key>}}` references replaced by their values, for endpoint `endpoint_name`'s
        provider calls (external-model credentials)."""
        reply = await self._call(self._identity.ResolveSecrets,
                                 identity_pb2.ResolveSecretsRequest(texts=texts, endpoint_name=endpoint_name))
        return list(reply.texts)

    async def resolve_environment(self, deployment_key: str) -> dict[str, str]:
        """The deployment's `environment_vars`, secret references resolved (for its replica's process only)."""
        reply = await self._call(self._identity.ResolveEnvironment,
                                 identity_pb2.ResolveEnvironmentRequest(deployment_key=deployment_key))
        return dict(reply.environment_vars)

    async def issue_replica_credential(self, deployment_key: str, endpoints: list[str]) -> tuple[str, str, str]:
        """(client id, client secret, token id) of an OAuth client credential whose access tokens may query
        just `endpoints`, for one replica of the deployment."""
        reply = await self._call(self._identity.IssueReplicaCredential, identity_pb2.IssueReplicaCredentialRequest(
            deployment_key=deployment_key, endpoints=endpoints))
        return reply.client_id, reply.client_secret, reply.token_id

    async def revoke_replica_credential(self, token_id: str) -> None:
        await self._call(self._identity.RevokeReplicaCredential,
                         identity_pb2.RevokeReplicaCredentialRequest(token_id=token_id))

    async def list_deployments(self) -> list[Deployment]:
        reply = await self._call(self._stub.ListDeployments, pb.ListDeploymentsRequest())
        return [Deployment(d.key, d.endpoint_name, d.served_entity_name, d.model_uri, d.min_concurrency,
                           d.max_concurrency, d.scale_to_zero_enabled, dict(d.environment_vars),
                           workload_type=d.workload_type or "CPU", is_serving=d.is_serving,
                           max_batch_size=d.max_batch_size, max_batch_wait_ms=d.max_batch_wait_ms)
                for d in reply.deployments]

    async def report_deployments(self, statuses: list[DeploymentStatus], scaler_target: str = "") -> None:
        request = pb.ReportDeploymentsRequest(scaler_target=scaler_target, statuses=[
            pb.DeploymentStatus(key=s.key, ready_addresses=list(s.ready_addresses),
                                starting_replicas=s.starting_replicas, failure=s.failure,
                                desired_replicas=s.desired_replicas) for s in statuses])
        await self._call(self._stub.ReportDeployments, request)

    async def watch_routing_table(self) -> AsyncIterator[list[EndpointRoutes]]:
        """Yields routing tables until the stream breaks (the caller reconnects)."""
        call = self._stub.WatchRoutingTable(pb.WatchRoutingTableRequest(), metadata=self._internal)
        try:
            async for table in call:
                yield [EndpointRoutes(e.name, e.id, tuple(
                    RouteTarget(r.served_entity_name, r.traffic_percentage, r.deployment_key,
                                tuple(r.replica_addresses), external_from_json(r.external_model_json),
                                r.shadow_percentage, r.shadow_judge_endpoint)
                    for r in e.routes), gateway_from_json(e.gateway_json),
                    tuple((g.principal_id, g.permission_level) for g in e.acl)) for e in table.endpoints]
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._channel.close()
