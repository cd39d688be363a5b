"""What a query answers, whichever path served it (a worker replica, or an external model's provider)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from services.common.request_context import OVERHEAD_HEADER, REQUEST_ID_HEADER

CLIENT_CLOSED = 499  # the caller went away before the answer (nginx's convention, as Databricks' Cancelled)


@dataclass(frozen=True)
class QueryResult:
    body: bytes
    content_type: str
    served_entity_name: str
    stream: AsyncIterator[bytes] | None = None   # set: server-sent events to relay as they come (body is empty)
    request_id: str = ""                         # the request's x-request-id (services/common/request_context.py)
    model_ms: float | None = None                # the model's time: the worker's, or the provider call's
    overhead_ms: float | None = None             # the router's wall time minus model_ms


def answer_metadata(result: QueryResult) -> tuple[tuple[str, str], ...]:
    """What every query answer carries besides its body: the request's id and Podium's overhead (as HTTP
    headers on REST, initial metadata on gRPC)."""
    if result.overhead_ms is None:
        return ((REQUEST_ID_HEADER, result.request_id),)
    return (REQUEST_ID_HEADER, result.request_id), (OVERHEAD_HEADER, f"{result.overhead_ms:.3f}")
