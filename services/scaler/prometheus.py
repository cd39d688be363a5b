"""The scaler's Prometheus series and its list of worker scrape targets.

GET /metrics: podium_scaler_replicas_desired and podium_scaler_replicas_ready per served entity, as of the
last reconcile pass (read at scrape time). GET /targets: every running replica's metrics address in
Prometheus' HTTP service-discovery format (`http_sd_configs`), so workers, whose metrics ports are picked
by the OS, are scraped without configuring them one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily

from services.scaler.core import ReplicaCount

LABELS = ("endpoint_name", "served_entity_name")
TARGETS = web.AppKey("targets", Callable)


class ReplicaCollector:
    def __init__(self, counts: Callable[[], Iterable[ReplicaCount]]):
        self._counts = counts

    def describe(self):
        return []

    def collect(self):
        desired = GaugeMetricFamily("podium_scaler_replicas_desired", "Replicas the autoscaler wants", labels=LABELS)
        ready = GaugeMetricFamily("podium_scaler_replicas_ready", "Replicas ready to serve", labels=LABELS)
        for count in self._counts():
            desired.add_metric((count.endpoint_name, count.served_entity_name), count.desired)
            ready.add_metric((count.endpoint_name, count.served_entity_name), count.ready)
        return [desired, ready]


def scaler_registry(counts: Callable[[], Iterable[ReplicaCount]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ReplicaCollector(counts))
    return registry


def scrape_targets(replicas: Iterable[tuple[str, str, str]], counts: Iterable[ReplicaCount]) -> list[dict]:
    """(metrics address, deployment key, replica id) per replica → Prometheus http_sd target groups, labelled
    with the endpoint and served entity they serve."""
    names = {c.key: (c.endpoint_name, c.served_entity_name) for c in counts}
    return [{"targets": [address], "labels": {"endpoint_name": names.get(key, ("", ""))[0],
                                              "served_entity_name": names.get(key, ("", ""))[1],
                                              "podium_deployment": key, "podium_replica": replica_id}}
            for address, key, replica_id in sorted(replicas) if address]


def add_target_route(targets: Callable[[], list[dict]]) -> Callable[[web.Application], None]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(request.app[TARGETS]()), content_type="application/json")

    def add(app: web.Application) -> None:
        app[TARGETS] = targets
        app.router.add_get("/targets", handler)
    return add
