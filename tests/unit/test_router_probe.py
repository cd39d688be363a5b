"""§7.5: the SDK's `/.well-known/databricks-config` probe (before every mlflow call) is answered at once,
by the router alone, even while the control plane cannot be reached."""

from __future__ import annotations

import time

from aiohttp.test_utils import TestClient, TestServer

from services.common.control_plane_client import ControlPlaneClient
from services.router.auth import TokenCache
from services.router.backends import RoutingTableFollower, WorkerPool
from services.router.core import Gateway
from services.router.metrics import EndpointMetrics
from services.router.rest import build_app


async def test_probe_needs_no_control_plane_and_no_token():
    control_plane = ControlPlaneClient("127.0.0.1:1", timeout_s=5)  # nothing listens on port 1
    pool = WorkerPool()
    gateway = Gateway(control_plane, RoutingTableFollower(control_plane, pool), pool,
                      TokenCache(control_plane.authenticate), forward_timeout_s=5,
                      metrics=EndpointMetrics(), signatures=None)
    try:
        async with TestClient(TestServer(build_app(gateway, 1024))) as client:
            started = time.monotonic()
            for _ in range(50):
                reply = await client.get("/.well-known/databricks-config")  # no Authorization header
                assert reply.status == 200 and isinstance(await reply.json(), dict)
            assert time.monotonic() - started < 5.0  # generous: a hop to the control plane would not fit
            anonymous = await client.get("/api/2.0/serving-endpoints/anything")
            assert anonymous.status == 401   # refused by the router itself: no credential to verify
            management = await client.get("/api/2.0/serving-endpoints/anything",
                                          headers={"Authorization": "Bearer dapi" + "0" * 64})
            assert management.status == 503  # verifying it needs the control plane, which really is unreachable
            assert (await management.json())["error_code"] == "TEMPORARILY_UNAVAILABLE"
    finally:
        await control_plane.close()
