"""OpenTelemetry tracing: off (no spans, near-zero cost) unless an exporter is configured.

`configure_tracing` exports over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set (read by each service's
settings); tests hand `use_provider` an SDK provider with an in-memory exporter. One trace per request:
the router opens `router.query` under the caller's `traceparent` (if any), passes its own `traceparent`
to the worker in gRPC metadata, and the worker's `worker.predict` continues that trace.
"""

from __future__ import annotations

import contextlib
import logging

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

_NO_SPAN = contextlib.nullcontext()   # what every span helper returns while tracing is off
_PROPAGATOR = TraceContextTextMapPropagator()
_tracer: trace.Tracer | None = None


def configure_tracing(service: str, otlp_endpoint: str) -> None:
    """Exports spans over OTLP/HTTP to `otlp_endpoint` (e.g. http://collector:4318); "" = tracing off."""
    if not otlp_endpoint:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"podium-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces")))
    use_provider(provider)
    log.info("tracing: exporting spans over OTLP to %s", otlp_endpoint)


def use_provider(provider: trace.TracerProvider | None) -> None:
    """Traces with this provider from now on (None: tracing off again)."""
    global _tracer
    _tracer = provider.get_tracer("podium") if provider is not None else None


def server_span(name: str, traceparent: str = "", attributes: dict | None = None):
    """A span for an inbound request, continuing the caller's W3C trace when `traceparent` is valid."""
    if _tracer is None:
        return _NO_SPAN
    parent = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None
    return _tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)


def span(name: str, attributes: dict | None = None, client: bool = False):
    """A child of the current span (a step of the request, or an outbound hop with `client`)."""
    if _tracer is None:
        return _NO_SPAN
    return _tracer.start_as_current_span(name, kind=SpanKind.CLIENT if client else SpanKind.INTERNAL,
                                         attributes=attributes)


def current_traceparent() -> str:
    """The current span as a W3C `traceparent` value, for an outbound call; "" when there is none."""
    if _tracer is None:
        return ""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return ""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
