"""gRPC adapter of the control plane's Identity service (protos/podium_api/v1/identity.proto)."""

from __future__ import annotations

from podium_api.v1 import identity_pb2 as pb
from podium_api.v1 import identity_pb2_grpc
from services.common.grpc_edge import grpc_edge, metadata_token
from services.control_plane.identity import IdentityService
from services.control_plane.secrets_store import SecretsService
from services.control_plane.tokens import TokenService


class IdentityServicer(identity_pb2_grpc.IdentityServicer):
    def __init__(self, identity: IdentityService, tokens: TokenService, secrets: SecretsService):
        self._identity = identity
        self._tokens = tokens
        self._secrets = secrets

    @grpc_edge
    async def Authenticate(self, request, context):
        caller = await self._identity.authenticate_for_service(metadata_token(context), request.token)
        reply = pb.AuthenticateReply(id=caller.id, name=caller.name, kind=caller.kind,
                                     display_name=caller.display_name, group_ids=sorted(caller.group_ids),
                                     group_names=sorted(caller.group_names), is_admin=caller.is_admin)
        if caller.expires_at is not None:
            reply.expires_at = caller.expires_at
        if caller.endpoint_scope is not None:
            reply.endpoint_scope.endpoints.extend(sorted(caller.endpoint_scope))
        return reply

    @grpc_edge
    async def IssueOAuthToken(self, request, context):
        issued = await self._tokens.issue_oauth_token(request.client_id, request.client_secret, request.scope)
        return pb.IssueOAuthTokenReply(**issued)

    @grpc_edge
    async def ResolveSecrets(self, request, context):
        texts = await self._secrets.resolve(metadata_token(context), list(request.texts), request.endpoint_name)
        return pb.ResolveSecretsReply(texts=texts)

    @grpc_edge
    async def ResolveEnvironment(self, request, context):
        environment = await self._secrets.resolve_environment(metadata_token(context), request.deployment_key)
        return pb.ResolveEnvironmentReply(environment_vars=environment)

    @grpc_edge
    async def IssueReplicaCredential(self, request, context):
        issued = await self._tokens.issue_replica_credential(metadata_token(context), request.deployment_key,
                                                             list(request.endpoints))
        return pb.IssueReplicaCredentialReply(client_id=issued["client_id"], client_secret=issued["client_secret"],
                                              token_id=issued["token_id"])

    @grpc_edge
    async def RevokeReplicaCredential(self, request, context):
        await self._tokens.revoke_replica_credential(metadata_token(context), request.token_id)
        return pb.RevokeReplicaCredentialReply()
