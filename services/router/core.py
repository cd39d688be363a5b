"""The router's one core: where a query or a management call is decided. REST and gRPC both call it."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from services.common.errors import EndpointNotFound, ReplicaUnreachable, Unavailable, error_from_code
from services.router.policy.replica_choice import pick_replica
from services.router.policy.traffic import pick_served_entity

if TYPE_CHECKING:  # the core is handed its backends; it never imports gRPC itself
    from services.common.control_plane_client import ControlPlaneClient
    from services.router.backends import RoutingTableFollower, WorkerPool

log = logging.getLogger(__name__)

DEFAULT_CALLER = "admin"


@dataclass(frozen=True)
class QueryResult:
    body: bytes
    content_type: str
    served_entity_name: str


class Gateway:
    def __init__(self, control_plane: "ControlPlaneClient", routing: "RoutingTableFollower", pool: "WorkerPool",
                 *, forward_timeout_s: float, rng: random.Random | None = None):
        self._control_plane = control_plane
        self._routing = routing
        self._pool = pool
        self._forward_timeout_s = forward_timeout_s
        self._rng = rng or random.Random()

    # ---- data plane ----

    async def query(self, endpoint_name: str, body: bytes, content_type: str) -> QueryResult:
        """Forwards the caller's bytes to a replica of the served entity the traffic split picks."""
        endpoint = self._routing.endpoints.get(endpoint_name)
        if endpoint is None:
            raise EndpointNotFound(f"Endpoint with name '{endpoint_name}' does not exist")
        route = pick_served_entity(endpoint.routes, self._rng.random())
        if route is None:
            raise Unavailable(f"Endpoint '{endpoint_name}' is not ready yet", retry_after_s=5)
        tried: set[str] = set()
        # A replica that cannot be reached processed nothing: try one other before giving up.
        for _attempt in range(2):
            candidates = [a for a in route.replica_addresses if a not in tried]
            address = pick_replica(candidates, self._pool.in_flight, self._rng.randint)
            if address is None:
                break
            tried.add(address)
            try:
                reply = await self._pool.predict(address, body, content_type or "application/json",
                                                 self._forward_timeout_s)
            except ReplicaUnreachable:
                log.warning("replica %s of %s unreachable", address, route.served_entity_name)
                continue
            if reply.http_status != 200:
                raise _model_error(reply.http_status, reply.body)
            return QueryResult(reply.body, reply.content_type or "application/json", route.served_entity_name)
        raise Unavailable(f"No ready replica of served entity '{route.served_entity_name}' of endpoint "
                          f"'{endpoint_name}'", retry_after_s=2)

    # ---- management: passed to the control plane, which validates and decides ----

    async def create_endpoint(self, body: bytes) -> bytes:
        return await self._control_plane.create_endpoint(body, DEFAULT_CALLER)

    async def get_endpoint(self, name: str) -> bytes:
        return await self._control_plane.get_endpoint(name)

    async def list_endpoints(self) -> bytes:
        return await self._control_plane.list_endpoints()

    async def update_config(self, name: str, body: bytes) -> bytes:
        return await self._control_plane.update_config(name, body)

    async def delete_endpoint(self, name: str) -> None:
        await self._control_plane.delete_endpoint(name)


def _model_error(http_status: int, body: bytes):
    """The error a model server answered, as MLflow's scoring server phrased it."""
    try:
        error = orjson.loads(body)
        code, message = str(error.get("error_code", "BAD_REQUEST")), str(error.get("message", ""))
    except (orjson.JSONDecodeError, AttributeError):
        code, message = "BAD_REQUEST", body.decode(errors="replace")
    return error_from_code(code, message, http_status=http_status)
