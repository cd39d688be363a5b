"""Every error a caller may see, and the one table that maps it onto HTTP and gRPC.

No aiohttp and no grpc here: the edges (services/common/grpc_edge.py, services/router/rest.py) read
WIRE_STATUS to render a PodiumError, so REST and gRPC can never disagree about a status.
"""

from __future__ import annotations


class PodiumError(Exception):
    """An error with a Databricks-style `error_code`, safe to show to the caller."""

    code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, retry_after_s: int | None = None, http_status: int | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        # Set only where a model server chose the status (e.g. 415 for an unknown content type).
        self.http_status = http_status or WIRE_STATUS.get(self.code, (500, ""))[0]


class BadRequest(PodiumError):
    code = "BAD_REQUEST"


class MalformedRequest(PodiumError):
    code = "MALFORMED_REQUEST"


class InvalidParameter(PodiumError):
    code = "INVALID_PARAMETER_VALUE"


class UnsupportedGrantType(InvalidParameter):
    """An OAuth token request for a grant other than client_credentials."""

    oauth_error = "unsupported_grant_type"


class Unauthenticated(PodiumError):
    code = "UNAUTHENTICATED"


class PermissionDenied(PodiumError):
    code = "PERMISSION_DENIED"


class EndpointNotFound(PodiumError):
    code = "RESOURCE_DOES_NOT_EXIST"


class ResourceDoesNotExist(PodiumError):
    """Any other resource (a principal, a token, a secret scope) that does not exist."""

    code = "RESOURCE_DOES_NOT_EXIST"


class NotFound(PodiumError):
    code = "NOT_FOUND"


class AlreadyExists(PodiumError):
    code = "RESOURCE_ALREADY_EXISTS"


class Conflict(PodiumError):
    code = "RESOURCE_CONFLICT"


class RateLimited(PodiumError):
    code = "REQUEST_LIMIT_EXCEEDED"


class Unavailable(PodiumError):
    code = "TEMPORARILY_UNAVAILABLE"


class ReplicaUnreachable(Unavailable):
    """A replica failed at the transport level: unreachable (it processed nothing), or gone mid-call
    (`may_have_run`: it had the request and may have been running the model when it died)."""

    def __init__(self, message: str, *, may_have_run: bool = False, retry_after_s: int | None = None):
        super().__init__(message, retry_after_s=retry_after_s)
        self.may_have_run = may_have_run


class DeadlineExceeded(PodiumError):
    code = "DEADLINE_EXCEEDED"


class BadGateway(PodiumError):
    """An external model provider failed (5xx, or a broken connection); the message names the provider."""

    code = "BAD_GATEWAY"


class PayloadTooLarge(PodiumError):
    code = "RESOURCE_EXHAUSTED"


class QuotaExceeded(PodiumError):
    """A platform quota (endpoints or provisioned concurrency per user) would be exceeded; the message names
    the limit. 400 QUOTA_EXCEEDED, as Databricks answers workspace limits: not 429, which clients (the
    databricks-sdk among them) retry for minutes although waiting cannot help."""

    code = "QUOTA_EXCEEDED"


class MethodNotAllowed(PodiumError):
    code = "NOT_IMPLEMENTED"


# error_code → (HTTP status, grpc.StatusCode name). The only table; both edges read it.
# RESOURCE_ALREADY_EXISTS is 409 as Databricks answers it (mlflow reports it as 400 whatever we send).
WIRE_STATUS: dict[str, tuple[int, str]] = {
    "BAD_REQUEST": (400, "INVALID_ARGUMENT"),
    "MALFORMED_REQUEST": (400, "INVALID_ARGUMENT"),
    "INVALID_PARAMETER_VALUE": (400, "INVALID_ARGUMENT"),
    "QUOTA_EXCEEDED": (400, "RESOURCE_EXHAUSTED"),
    "UNAUTHENTICATED": (401, "UNAUTHENTICATED"),
    "PERMISSION_DENIED": (403, "PERMISSION_DENIED"),
    "RESOURCE_DOES_NOT_EXIST": (404, "NOT_FOUND"),
    "NOT_FOUND": (404, "NOT_FOUND"),
    "RESOURCE_ALREADY_EXISTS": (409, "ALREADY_EXISTS"),
    "RESOURCE_CONFLICT": (409, "FAILED_PRECONDITION"),
    "RESOURCE_EXHAUSTED": (413, "RESOURCE_EXHAUSTED"),
    "REQUEST_LIMIT_EXCEEDED": (429, "RESOURCE_EXHAUSTED"),
    "NOT_IMPLEMENTED": (405, "UNIMPLEMENTED"),
    "INTERNAL_ERROR": (500, "INTERNAL"),
    "TEMPORARILY_UNAVAILABLE": (503, "UNAVAILABLE"),
    "DEADLINE_EXCEEDED": (504, "DEADLINE_EXCEEDED"),
    "BAD_GATEWAY": (502, "UNAVAILABLE"),
}

_BY_CODE: dict[str, type[PodiumError]] = {}


def _index(cls: type[PodiumError]) -> None:
    for sub in cls.__subclasses__():
        _BY_CODE.setdefault(sub.code, sub)
        _index(sub)


_index(PodiumError)
_BY_CODE["INTERNAL_ERROR"] = PodiumError


def error_from_code(code: str, message: str, http_status: int | None = None) -> PodiumError:
    """Rebuilds a typed error from a code that crossed a hop (e.g. control plane → router)."""
    error = _BY_CODE.get(code, PodiumError)(message, http_status=http_status)
    if code not in _BY_CODE:
        error.code = code if code in WIRE_STATUS or http_status else "INTERNAL_ERROR"
    return error


def grpc_status_name(code: str, http_status: int | None = None) -> str:
    if code in WIRE_STATUS:
        return WIRE_STATUS[code][1]
    for http, grpc_name in WIRE_STATUS.values():
        if http == http_status:
            return grpc_name
    return "INVALID_ARGUMENT" if http_status and 400 <= http_status < 500 else "INTERNAL"
