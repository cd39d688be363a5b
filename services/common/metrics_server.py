"""Each service's Prometheus `/metrics`, on a port of its own bound to 127.0.0.1 by default.

Why a separate port rather than /metrics on the router's public port: a scraper rarely carries a bearer
credential, and per-endpoint counts are not for every caller; a port on the loopback interface (or a
private network, by setting the host) is reachable by the node's Prometheus or agent only, needs no
credential, and is the same for services that have no HTTP port at all (worker, scaler, control plane).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

REGISTRY = web.AppKey("registry", CollectorRegistry)


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(request.app[REGISTRY]), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def start_metrics_server(registry: CollectorRegistry, host: str, port: int,
                               extra_routes: Callable[[web.Application], None] | None = None
                               ) -> tuple[web.AppRunner, str]:
    """Serves GET /metrics from `registry`; returns the runner (to clean up) and `host:port` it bound."""
    app = web.Application()
    app[REGISTRY] = registry
    app.router.add_get("/metrics", _metrics)
    if extra_routes is not None:
        extra_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound = runner.addresses[0]
    return runner, f"{bound[0]}:{bound[1]}"
