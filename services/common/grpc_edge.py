"""The gRPC edge: PodiumError ↔ gRPC status, on the server and on the client side."""

from __future__ import annotations

import functools
import logging

import grpc

from services.common.request_context import (
    REQUEST_ID_HEADER, TRACEPARENT, choose_request_id, request_id_var, traceparent_var,
)
from services.common.errors import (
    WIRE_STATUS, DeadlineExceeded, PodiumError, Unavailable, error_from_code, grpc_status_name,
)

log = logging.getLogger(__name__)

ERROR_CODE_KEY = "error-code"
HTTP_STATUS_KEY = "http-status"


def grpc_edge(method):
    """Wraps a grpc.aio servicer method: a PodiumError becomes its status; anything else INTERNAL.

    The call's `x-request-id` (the caller's when sane, else a new one) and `traceparent` are set in the
    request context for the core, its logs and its outbound calls; a failure carries the id back in its
    trailing metadata.
    """

    @functools.wraps(method)
    async def wrapper(self, request, context):
        given_id = traceparent = ""
        for key, value in context.invocation_metadata() or ():
            if key == REQUEST_ID_HEADER:
                given_id = value
            elif key == TRACEPARENT:
                traceparent = value
        request_id = choose_request_id(given_id)
        id_token, parent_token = request_id_var.set(request_id), traceparent_var.set(traceparent)
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise  # already a gRPC status: keep it
        except PodiumError as exc:
            failure = exc
        except Exception:
            log.exception("unhandled error in %s", method.__name__)
            failure = PodiumError("internal error")  # never leak internals to the caller
        finally:
            request_id_var.reset(id_token)
            traceparent_var.reset(parent_token)
        await abort_with(context, failure, request_id)

    return wrapper


async def abort_with(context, failure: PodiumError, request_id: str = "") -> None:
    """Ends the call with the error's gRPC status, its `error-code` (and the request id) in the trailers."""
    trailing = ((ERROR_CODE_KEY, failure.code),) + (((REQUEST_ID_HEADER, request_id),) if request_id else ())
    if failure.http_status != WIRE_STATUS.get(failure.code, (None,))[0]:   # a status its code alone does not say
        trailing += ((HTTP_STATUS_KEY, str(failure.http_status)),)
    await context.abort(grpc.StatusCode[grpc_status_name(failure.code, failure.http_status)], failure.message,
                        trailing_metadata=trailing)


def error_from_rpc(exc: grpc.aio.AioRpcError, peer: str) -> PodiumError:
    """Turns a failed call to another Podium service back into the PodiumError it carried."""
    trailers = dict(exc.trailing_metadata() or ())
    if ERROR_CODE_KEY in trailers:
        status = trailers.get(HTTP_STATUS_KEY, "")
        return error_from_code(trailers[ERROR_CODE_KEY], exc.details() or "",
                               http_status=int(status) if status.isdigit() else None)
    if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"{peer} did not answer in time")
    if exc.code() == grpc.StatusCode.UNAVAILABLE:
        return Unavailable(f"{peer} is unavailable", retry_after_s=1)
    return PodiumError(f"{peer} failed: {exc.code().name}")


def metadata_token(context) -> str:
    """The credential of `authorization: Bearer <credential>` metadata; "" when absent or not Bearer.

    Only extracted here: the cores decide whether it is any good.
    """
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            scheme, _, credential = value.partition(" ")
            return credential.strip() if scheme.lower() == "bearer" else ""
    return ""


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Outgoing call metadata carrying a credential."""
    return (("authorization", f"Bearer {token}"),) if token else ()
