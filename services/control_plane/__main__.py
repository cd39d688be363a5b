"""Control-plane process: settings → stores → cores → gRPC adapters → serve."""

from __future__ import annotations

import asyncio
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from podium_api.v1 import control_plane_pb2_grpc, identity_pb2_grpc, management_pb2_grpc
from services.common.gc_tuning import freeze_startup_objects
from services.common.grpc_server import SERVER_OPTIONS
from services.common.logging import configure_logging
from services.common.readiness import announce_ready
from services.common.master_keys import load_cipher
from services.common.tls import TlsFiles, add_server_port
from services.control_plane.backends import ScalerClients
from services.common.egress import EgressPolicy, parse_networks
from services.control_plane.core import EndpointService
from services.control_plane.quotas import Quotas
from services.control_plane.crypto import KeyRing
from services.control_plane.grants import GrantsService
from services.control_plane.grpc_api import ControlPlaneServicer, ManagementServicer
from services.control_plane.grpc_identity import IdentityServicer
from services.control_plane.identity import AuthSettings, IdentityService
from services.control_plane.identity_store import IdentityStore
from services.control_plane.model_tasks import ModelTasks
from services.control_plane.operations import Operations
from services.control_plane.outcomes_reader import OutcomesReader
from services.control_plane.aliases import AliasFollower, AliasResolver
from services.control_plane.rollouts import RolloutService
from services.control_plane.secrets_store import SecretsService
from services.control_plane.settings import ControlPlaneSettings
from services.common.sql import wait_until_reachable
from services.control_plane.store import EndpointStore, open_engine
from services.control_plane.tokens import TokenService


def auth_settings(settings: ControlPlaneSettings) -> AuthSettings:
    return AuthSettings(
        internal_token=settings.internal_token.get_secret_value(), issuer=settings.oauth_issuer,
        jwks=settings.auth_jwks, jwt_issuer=settings.auth_jwt_issuer, jwt_audience=settings.auth_jwt_audience,
        jwt_claim=settings.auth_jwt_claim, bootstrap_admin_token=settings.bootstrap_admin_token.get_secret_value())


async def serve(settings: ControlPlaneSettings) -> None:
    engine = open_engine(settings.resolved_database_url())
    await asyncio.to_thread(wait_until_reachable, engine, settings.database_wait_s)
    master_key = settings.master_key.get_secret_value()
    keyring = await asyncio.to_thread(KeyRing.from_settings, master_key, settings.resolved_key_file())
    cipher = await asyncio.to_thread(load_cipher, master_key, settings.resolved_key_file())
    identity_store = IdentityStore(engine)
    identity = IdentityService(identity_store, keyring, auth_settings(settings))
    await identity.start()
    tokens = TokenService(identity, keyring, settings.oauth_token_lifetime_s,
                          replica_token_lifetime_s=settings.replica_token_ttl_s)
    secrets = SecretsService(identity_store, identity, keyring)
    grants = GrantsService(engine, identity)
    await grants.start()
    tls = TlsFiles.from_settings(settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file)
    scalers = ScalerClients(timeout_s=settings.scaler_timeout_s,
                            internal_token=settings.internal_token.get_secret_value(), tls=tls)
    tasks = ModelTasks(settings.registry_uri, settings.tracking_uri)   # the task agents were logged with
    tasks.warm_up()
    service = EndpointService(EndpointStore(engine), identity, report_expiry_s=settings.report_expiry_s,
                              scalers=scalers, cipher=cipher,
                              quotas=Quotas(settings.quota_endpoints_per_user, settings.quota_concurrency_per_user),
                              egress=EgressPolicy(parse_networks(settings.egress_allowed_networks)),
                              grants=grants, secrets=secrets,
                              tasks=tasks)
    secrets.written_configs = service.written_configs   # `resolve` checks the configs' writers again
    secrets.deployment_entities = service.deployment_entities   # a replica's variables, by its config's writer
    tokens.deployment_entities = service.deployment_entities     # a replica's credential, of its config's writer
    identity.is_live_deployment = lambda key: bool(service.deployment_entities(key))
    await service.start()
    outcomes = OutcomesReader(settings.redis_url) if settings.redis_url else None
    rollouts = RolloutService(service, outcomes, interval_s=settings.rollout_interval_s)
    aliases = AliasResolver(settings.registry_uri, settings.tracking_uri, settings.alias_timeout_s)
    operations = Operations(identity, tokens, secrets, service, grants, rollouts, aliases)

    server = grpc.aio.server(options=SERVER_OPTIONS)
    management_pb2_grpc.add_ManagementServicer_to_server(ManagementServicer(operations), server)
    control_plane_pb2_grpc.add_ControlPlaneServicer_to_server(ControlPlaneServicer(service), server)
    identity_pb2_grpc.add_IdentityServicer_to_server(IdentityServicer(identity, tokens, secrets), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = add_server_port(server, f"{settings.control_plane_host}:{settings.control_plane_port}", tls)
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    freeze_startup_objects()
    announce_ready("control_plane", grpc_target=f"{settings.control_plane_host}:{port}")
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    rolling = asyncio.create_task(rollouts.run(stop))
    following = asyncio.create_task(AliasFollower(service, aliases, interval_s=settings.alias_interval_s).run(stop))
    await stop.wait()
    await rolling
    await following
    aliases.close()
    await server.stop(grace=2)
    await scalers.close()
    if outcomes is not None:
        await outcomes.close()
    engine.dispose()


def main() -> None:
    settings = ControlPlaneSettings.from_environment()
    configure_logging("control_plane")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
