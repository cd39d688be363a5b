"""What a query answers, whichever path served it (a worker replica, or an external model's provider)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson

from services.common.errors import PodiumError, error_from_code
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


class StreamRequired(Exception):
    """A replica's model streams and the request asks it to (`"stream": true`): it goes over the replica's
    event stream instead."""


def answer_metadata(result: QueryResult) -> tuple[tuple[str, str], ...]:
    """What every query answer carries besides its body: the request's id and Podium's overhead (as HTTP
    headers on REST, initial metadata on gRPC)."""
    if result.overhead_ms is None:
        return ((REQUEST_ID_HEADER, result.request_id),)
    return (REQUEST_ID_HEADER, result.request_id), (OVERHEAD_HEADER, f"{result.overhead_ms:.3f}")


def model_error(http_status: int, body: bytes) -> PodiumError:
    """The error a model server answered, as MLflow's scoring server phrased it."""
    try:
        error = orjson.loads(body)
        code, message = str(error.get("error_code", "BAD_REQUEST")), str(error.get("message", ""))
    except (orjson.JSONDecodeError, AttributeError):
        code, message = "BAD_REQUEST", body.decode(errors="replace")
    return error_from_code(code, message, http_status=http_status)
