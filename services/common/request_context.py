"""The request's identity for logs, traces and answers: set at each service's edge, read anywhere below.

A contextvar, so concurrent requests on one event loop never see each other's id (each aiohttp request
and each grpc.aio RPC runs in its own context; the edges reset what they set).
"""

from __future__ import annotations

import contextvars
import os
import re

REQUEST_ID_HEADER = "x-request-id"          # HTTP header and gRPC metadata key alike
OVERHEAD_HEADER = "x-podium-overhead-ms"    # the router's time outside the model, per answer
TRACEPARENT = "traceparent"                 # W3C trace context

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("podium_request_id", default="")
traceparent_var: contextvars.ContextVar[str] = contextvars.ContextVar("podium_traceparent", default="")

# A caller's id is echoed in headers and logs: printable token characters only, so it can never split a
# header, forge a log field or carry a payload.
_SANE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def choose_request_id(given: str | None) -> str:
    """The caller's id when it is a sane token of at most 128 characters, else 128 random bits in hex (the
    length of a uuid4's hex; urandom directly costs a quarter of uuid4's object on the query path)."""
    if given and _SANE_ID.fullmatch(given):
        return given
    return os.urandom(16).hex()


def current_request_id() -> str:
    return request_id_var.get()
