"""The router's Prometheus registry: one per process, served at GET /metrics on the metrics port and, per
endpoint, as Databricks' `GET /api/2.0/serving-endpoints/{name}/metrics` export.

Service-wide series (podium_router_*): requests, errors by error_code, latency and Podium's overhead per
endpoint and served entity, and (read from the admission tracker at scrape time) requests in flight and
queued for a replica. The Databricks export is a view of the same series under Databricks' names
(request_count_total, request_4xx_count_total, request_5xx_count_total, request_latency_ms), counters since
the router started, and the endpoint's shadow comparisons (podium_router_shadow_*, shadow.py). Labels stay
bounded: only endpoints that exist are recorded (a caller's typo never makes a series) and series of deleted
endpoints are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from services.common.errors import WIRE_STATUS
from services.common.outcomes import Outcomes

KNOWN_CODES = frozenset(WIRE_STATUS) | {"CANCELLED"}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LABELS = ("endpoint_name", "served_entity_name")
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
OVERHEAD_BUCKETS_MS = (0.25, 0.5, 1, 2, 5, 10, 25, 100, 1000)
# Podium's name → the Databricks export's name
REQUESTS, ERRORS, LATENCY = "podium_router_requests", "podium_router_errors", "podium_router_request_latency_ms"

# (endpoint_name, served_entity_name, in_flight, queued) per served entity, read at scrape time
LoadReader = Callable[[], Iterable[tuple[str, str, int, int]]]


def status_class(http_status: int) -> str:
    return "5xx" if http_status >= 500 else "4xx"


class EndpointMetrics:
    """The router's registry. `observe` is on the query path: label children are cached per series, so a
    query costs dictionary lookups and two increments, never a label resolution."""

    def __init__(self, load: LoadReader | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(REQUESTS, "Queries answered", LABELS, registry=self.registry)
        self._errors = Counter(ERRORS, "Queries answered with an error, by error_code", LABELS +
                               ("error_code", "status_class"), registry=self.registry)
        self._latency = Histogram(LATENCY, "Query latency in the router (wall time), in milliseconds",
                                  LABELS, buckets=LATENCY_BUCKETS_MS, registry=self.registry)
        self._overhead = Histogram("podium_router_overhead_ms", "Router wall time minus the worker's model "
                                   "time, in milliseconds", buckets=OVERHEAD_BUCKETS_MS, registry=self.registry)
        if load is not None:
            self.registry.register(_LoadCollector(load))
        self._children: dict[tuple[str, str], tuple] = {}
        self._error_children: dict[tuple[str, str, str, str], Counter] = {}
        # Per deployment key, published to Redis for the control plane's rollouts (metrics_publisher.py).
        self.outcomes: dict[str, Outcomes] = {}

    def observe(self, endpoint_name: str, served_entity_name: str, http_status: int, latency_ms: float,
                error_code: str = "", *, deployment_key: str = "") -> None:
        """`deployment_key`: also counted in the deployment's outcomes, which canary rollouts judge."""
        if deployment_key:
            self._observe_outcome(deployment_key, http_status, latency_ms)
        labels = (endpoint_name, served_entity_name)
        children = self._children.get(labels)
        if children is None:
            children = self._children[labels] = (self._requests.labels(*labels), self._latency.labels(*labels))
        children[0].inc()
        children[1].observe(latency_ms)
        if http_status >= 400:
            # A model's own error may name any code: only Podium's known codes become series (bounded labels).
            code = error_code if error_code in KNOWN_CODES else "OTHER"
            key = (endpoint_name, served_entity_name, code, status_class(http_status))
            child = self._error_children.get(key)
            if child is None:
                child = self._error_children[key] = self._errors.labels(*key)
            child.inc()

    def _observe_outcome(self, deployment_key: str, http_status: int, latency_ms: float) -> None:
        outcomes = self.outcomes.get(deployment_key)
        if outcomes is None:
            outcomes = self.outcomes[deployment_key] = Outcomes()
        outcomes.add(http_status, latency_ms)

    def retain_outcomes(self, deployment_keys: set[str]) -> None:
        """Forgets the outcomes of deployments no longer routed to."""
        for key in [k for k in self.outcomes if k not in deployment_keys]:
            del self.outcomes[key]

    def observe_overhead(self, overhead_ms: float) -> None:
        self._overhead.observe(overhead_ms)

    def keep_only(self, endpoint_names: Iterable[str]) -> None:
        """Drops the series of endpoints that no longer exist."""
        keep = set(endpoint_names)
        for labels in [s for s in self._children if s[0] not in keep]:
            del self._children[labels]
            self._requests.remove(*labels)
            self._latency.remove(*labels)
        for key in [k for k in self._error_children if k[0] not in keep]:
            del self._error_children[key]
            self._errors.remove(*key)

    def export(self, endpoint_name: str, load: Mapping[str, tuple[int, int]] | None = None) -> bytes:
        """One endpoint's series under Databricks' names, in the Prometheus text exposition; `load` is (in
        flight, queued) per served entity as the router counts them now (Podium's two gauges)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_DatabricksView(self, endpoint_name, load or {}))
        return generate_latest(registry)

    def collect_databricks(self, endpoint_name: str):
        """The Databricks families of one endpoint, from this registry's series."""
        def mine(sample) -> bool:
            return sample.labels.get("endpoint_name") == endpoint_name and not sample.name.endswith("_created")

        requests = Metric("request_count", "Requests answered", "counter")
        errors = {"4xx": Metric("request_4xx_count", "Requests answered with a 4xx status", "counter"),
                  "5xx": Metric("request_5xx_count", "Requests answered with a 5xx status", "counter")}
        latency = Metric("request_latency_ms", "Round-trip latency in the router, in milliseconds", "histogram")
        error_sums: dict[tuple[str, str, str], float] = {}
        for family in self._requests.collect():
            for s in family.samples:
                if mine(s):
                    requests.add_sample("request_count_total", s.labels, s.value)
                    for cls in ("4xx", "5xx"):   # 0 rather than no series before the first error
                        error_sums[(cls, s.labels["endpoint_name"], s.labels["served_entity_name"])] = 0.0
        for family in self._errors.collect():
            for s in family.samples:
                key = (s.labels.get("status_class", ""), s.labels.get("endpoint_name"),
                       s.labels.get("served_entity_name", ""))
                if mine(s) and s.name.endswith("_total") and key in error_sums:
                    error_sums[key] += s.value
        for (cls, endpoint, entity), value in error_sums.items():
            errors[cls].add_sample(f"request_{cls}_count_total",
                                   {"endpoint_name": endpoint, "served_entity_name": entity}, value)
        for family in self._latency.collect():
            for s in family.samples:
                if mine(s):
                    latency.add_sample(s.name.replace(LATENCY, "request_latency_ms"), s.labels, s.value)
        return [requests, errors["4xx"], errors["5xx"], latency, *self._shadow_families(endpoint_name)]

    def _shadow_families(self, endpoint_name: str) -> list[Metric]:
        """The endpoint's shadow comparisons, under their own names (services/router/shadow.py registers
        them in this registry); none for an endpoint without a shadow served entity."""
        out = []
        for family in self.registry.collect():
            if not family.name.startswith("podium_router_shadow_"):
                continue
            samples = [s for s in family.samples
                       if s.labels.get("endpoint_name") == endpoint_name and not s.name.endswith("_created")]
            if samples:
                metric = Metric(family.name, family.documentation, family.type)
                for sample in samples:
                    metric.add_sample(sample.name, sample.labels, sample.value)
                out.append(metric)
        return out


class _DatabricksView:
    def __init__(self, metrics: EndpointMetrics, endpoint_name: str, load: Mapping[str, tuple[int, int]]):
        self._metrics = metrics
        self._endpoint_name = endpoint_name
        self._load = load

    def collect(self):
        yield from self._metrics.collect_databricks(self._endpoint_name)
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


class _LoadCollector:
    """In-flight and queued queries per served entity, read from the admission tracker when scraped (the
    query path pays nothing for them)."""

    def __init__(self, load: LoadReader):
        self._load = load

    def describe(self):
        return []

    def collect(self):
        in_flight = GaugeMetricFamily("podium_router_in_flight_requests", "Queries inside this router (being "
                                      "served or waiting for a replica)", labels=LABELS)
        queued = GaugeMetricFamily("podium_router_queued_requests", "Queries waiting in the admission queue for "
                                   "a replica", labels=LABELS)
        for endpoint, entity, n_in_flight, n_queued in self._load():
            in_flight.add_metric((endpoint, entity), n_in_flight)
            queued.add_metric((endpoint, entity), n_queued)
        return [in_flight, queued]
