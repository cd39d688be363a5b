"""The router's per-endpoint metrics and their Prometheus export, without processes."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from services.router.metrics import EndpointMetrics


def _samples(text: bytes) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode()) for s in family.samples}


def test_export_holds_only_that_endpoint_per_served_entity():
    metrics = EndpointMetrics()
    metrics.observe("a", "m-1", 200, 12.0)
    metrics.observe("a", "m-1", 400, 3.0)
    metrics.observe("a", "m-2", 503, 7000.0)
    metrics.observe("b", "x-1", 200, 1.0)
    samples = _samples(metrics.export("a"))
    m1 = (("endpoint_name", "a"), ("served_entity_name", "m-1"))
    m2 = (("endpoint_name", "a"), ("served_entity_name", "m-2"))
    assert samples[("request_count_total", m1)] == 2 and samples[("request_count_total", m2)] == 1
    assert samples[("request_4xx_count_total", m1)] == 1 and samples[("request_5xx_count_total", m1)] == 0
    assert samples[("request_5xx_count_total", m2)] == 1
    assert samples[("request_latency_ms_sum", m1)] == 15.0
    assert samples[("request_latency_ms_bucket", tuple(sorted(m2 + (("le", "5000.0"),))))] == 0
    assert samples[("request_latency_ms_bucket", tuple(sorted(m2 + (("le", "10000.0"),))))] == 1
    assert not [k for k in samples if ("endpoint_name", "b") in k[1]]
    assert not [k for k in samples if k[0].endswith("_created")]


def test_keep_only_drops_deleted_endpoints():
    metrics = EndpointMetrics()
    metrics.observe("a", "m-1", 200, 1.0)
    metrics.observe("gone", "m-1", 200, 1.0)
    metrics.keep_only(["a"])
    assert _samples(metrics.export("gone")) == {}
    assert _samples(metrics.export("a"))
    metrics.observe("gone", "m-1", 200, 1.0)  # recreated later: counts start again
    assert _samples(metrics.export("gone"))[
        ("request_count_total", (("endpoint_name", "gone"), ("served_entity_name", "m-1")))] == 1


def test_export_adds_the_routers_load_gauges_per_served_entity():
    metrics = EndpointMetrics()
    metrics.observe("a", "m-1", 200, 1.0)
    samples = _samples(metrics.export("a", {"m-1": (3, 0), "m-2": (5, 4)}))
    m1 = (("endpoint_name", "a"), ("served_entity_name", "m-1"))
    m2 = (("endpoint_name", "a"), ("served_entity_name", "m-2"))
    assert samples[("podium_router_in_flight_requests", m1)] == 3
    assert samples[("podium_router_queued_requests", m1)] == 0
    assert (samples[("podium_router_in_flight_requests", m2)], samples[("podium_router_queued_requests", m2)]) == (5, 4)
    assert not [k for k in _samples(metrics.export("a")) if k[0].startswith("podium_router_")]   # no load given
