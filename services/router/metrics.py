"""This router's request metrics per endpoint and served entity, exported in the Prometheus text format.

The names are the ones Databricks' `GET .../metrics` exports (request_count_total, request_4xx_count_total,
request_5xx_count_total, request_latency_ms), so dashboards and scrape configs written for it work; here
they are counters since the router started. Two gauges are Podium's own, read at export time from the
router's load tracker: podium_router_in_flight_requests (being served or waiting) and
podium_router_queued_requests (waiting for a replica, e.g. during a cold start). Labels stay bounded: only endpoints that exist are recorded
(a caller's typo never makes a series) and series of deleted endpoints are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LABELS = ("endpoint_name", "served_entity_name")
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)


def status_counters(http_status: int) -> tuple[bool, bool]:
    """(is a 4xx, is a 5xx) for one answered request."""
    return 400 <= http_status < 500, http_status >= 500


class EndpointMetrics:
    def __init__(self):
        self._registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter("request_count", "Requests answered", LABELS, registry=self._registry)
        self._errors_4xx = Counter("request_4xx_count", "Requests answered with a 4xx status", LABELS,
                                   registry=self._registry)
        self._errors_5xx = Counter("request_5xx_count", "Requests answered with a 5xx status", LABELS,
                                   registry=self._registry)
        self._latency = Histogram("request_latency_ms", "Round-trip latency in the router, in milliseconds",
                                  LABELS, buckets=LATENCY_BUCKETS_MS, registry=self._registry)
        self._series: set[tuple[str, str]] = set()

    def observe(self, endpoint_name: str, served_entity_name: str, http_status: int, latency_ms: float) -> None:
        labels = (endpoint_name, served_entity_name)
        self._series.add(labels)
        self._requests.labels(*labels).inc()
        is_4xx, is_5xx = status_counters(http_status)
        # Touch both error counters so a scrape shows 0 rather than no series before the first error.
        self._errors_4xx.labels(*labels).inc(1 if is_4xx else 0)
        self._errors_5xx.labels(*labels).inc(1 if is_5xx else 0)
        self._latency.labels(*labels).observe(latency_ms)

    def keep_only(self, endpoint_names: Iterable[str]) -> None:
        """Drops the series of endpoints that no longer exist."""
        keep = set(endpoint_names)
        for labels in [s for s in self._series if s[0] not in keep]:
            self._series.discard(labels)
            for metric in (self._requests, self._errors_4xx, self._errors_5xx, self._latency):
                metric.remove(*labels)

    def export(self, endpoint_name: str, load: Mapping[str, tuple[int, int]] | None = None) -> bytes:
        """The Prometheus text exposition of one endpoint's series; `load` is (in flight, queued) per served
        entity, as the router counts them now."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_OneEndpoint(self._registry, endpoint_name, load or {}))
        return generate_latest(registry)


class _OneEndpoint:
    """A collector view of the router's registry restricted to one endpoint, without `_created` series."""

    def __init__(self, source: CollectorRegistry, endpoint_name: str, load: Mapping[str, tuple[int, int]]):
        self._source = source
        self._endpoint_name = endpoint_name
        self._load = load

    def collect(self):
        for family in self._source.collect():
            metric = Metric(family.name, family.documentation, family.type, family.unit)
            metric.samples = [s for s in family.samples if s.labels.get("endpoint_name") == self._endpoint_name
                              and not s.name.endswith("_created")]
            yield metric
        if not self._load:
            return
        in_flight = GaugeMetricFamily("podium_router_in_flight_requests",
                                      "Requests in this router now: being served or waiting for a replica", labels=LABELS)
        queued = GaugeMetricFamily("podium_router_queued_requests", "Requests in this router waiting for a replica",
                                   labels=LABELS)
        for entity, (flying, waiting) in sorted(self._load.items()):
            in_flight.add_metric([self._endpoint_name, entity], flying)
            queued.add_metric([self._endpoint_name, entity], waiting)
        yield in_flight
        yield queued
