"""The plain records that cross the internal hops (control plane ↔ router, control plane ↔ scaler).

The gRPC adapters convert them to and from podium_api messages, so cores never see protobuf.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from services.common.gateway_routes import ExternalModelTarget, GatewayPolicy


@dataclass(frozen=True)
class Deployment:
    """A served entity that should be running: what the scaler starts replicas of."""

    key: str
    endpoint_name: str
    served_entity_name: str
    model_uri: str
    min_concurrency: int
    max_concurrency: int
    scale_to_zero_enabled: bool = False
    environment_vars: dict[str, str] = field(default_factory=dict)
    workload_type: str = "CPU"
    is_serving: bool = False   # in the serving config, not only in a pending one
    # > 1: the worker merges concurrent requests into one predict call; 1: never; 0: the worker's default
    # for the model it loads (services/worker/row_exact.py says which models batch by default).
    max_batch_size: int = 0
    max_batch_wait_ms: float = 0.0  # how long a batch waits for more requests once it has one (0: never)


@dataclass(frozen=True)
class DeploymentStatus:
    """What the scaler observed of one deployment."""

    key: str
    ready_addresses: tuple[str, ...] = ()
    starting_replicas: int = 0
    failure: str = ""   # non-empty: the deployment cannot start, and why
    desired_replicas: int = 0   # what the autoscaler wants now (0: scaled to zero)


@dataclass(frozen=True)
class RouteTarget:
    served_entity_name: str
    traffic_percentage: int
    deployment_key: str
    replica_addresses: tuple[str, ...]
    external_model: ExternalModelTarget | None = None   # set: a provider serves it, there are no replicas
    shadow_percentage: int = 0   # > 0: a shadow entity, sent a copy of this share of the queries (router/shadow.py)
    shadow_judge_endpoint: str = ""   # a shadow's judge endpoint: whether its differing text answers agree


@dataclass(frozen=True)
class EndpointRoutes:
    """One endpoint in the routing table: empty routes while it has no serving config yet."""

    name: str
    id: str
    routes: tuple[RouteTarget, ...]
    gateway: GatewayPolicy | None = None   # None: a plain custom-model endpoint (the fast path)
    acl: tuple[tuple[str, str], ...] = ()   # (principal id, permission level): the endpoint's direct grants


def model_uri(entity_name: str, entity_version: str) -> str:
    """models:/<name>/<version> for a version number, models:/<name>@<alias> otherwise."""
    if re.fullmatch(r"[0-9]+", entity_version):
        return f"models:/{entity_name}/{entity_version}"
    return f"models:/{entity_name}@{entity_version}"
