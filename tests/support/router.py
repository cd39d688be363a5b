"""A router core with no control plane: its routing table set by the test, one admin credential."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from services.common.deployments import EndpointRoutes, RouteTarget
from services.common.errors import Unauthenticated
from services.common.principals import USER, Principal
from services.router.admission import Admission, LoadTracker
from services.router.auth import TokenCache
from services.router.backends import RoutingTableFollower, WorkerPool
from services.router.core import Gateway
from services.router.metrics import EndpointMetrics


def table(*addresses: str) -> list[EndpointRoutes]:
    return [EndpointRoutes("e", "id-e", (RouteTarget("m-1", 100, "key-1", tuple(addresses)),))]


TOKEN = "dapi" + "7" * 64
ADMIN = Principal(id="1", name="tester", kind=USER, is_admin=True)


async def authenticate(token: str) -> Principal:
    """What the control plane would answer for this test's one credential (this router has no control plane)."""
    if token != TOKEN:
        raise Unauthenticated("Invalid access token.")
    return ADMIN


class StandaloneRouter:
    """Endpoint `e` with one served entity, `key-1`, on the replicas `route_to` names (none at first)."""

    def __init__(self, queue_limit: int, timeout_s: float):
        self.woken: list[str] = []
        self.tracker = LoadTracker()
        self.admission = Admission(self.tracker, queue_limit=queue_limit, timeout_s=timeout_s,
                                   on_queued=self.woken.append)
        self.pool = WorkerPool()
        self.routing = RoutingTableFollower(control_plane=None, pool=self.pool, on_change=self.admission.routes_changed)
        self.routing._apply(table())  # the endpoint exists; its served entity has no replica (scaled to zero)
        self.gateway = Gateway(None, self.routing, self.pool, TokenCache(authenticate), forward_timeout_s=5,
                               metrics=EndpointMetrics(), signatures=None, admission=self.admission)

    def route_to(self, *addresses: str) -> None:
        self.routing._apply(table(*addresses))


async def invoke(client: TestClient):
    reply = await client.post("/serving-endpoints/e/invocations", data=b'{"inputs": [[1]]}',
                              headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    return reply.status, reply.headers.get("Retry-After"), await reply.json()
