"""What a query answers, whichever path served it (a worker replica, or an external model's provider)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

CLIENT_CLOSED = 499  # the caller went away before the answer (nginx's convention, as Databricks' Cancelled)


@dataclass(frozen=True)
class QueryResult:
    body: bytes
    content_type: str
    served_entity_name: str
    stream: AsyncIterator[bytes] | None = None   # set: server-sent events to relay as they come (body is empty)
    request_id: str = ""                         # set where the AI gateway recorded the request
