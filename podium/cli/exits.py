"""The CLI's exit codes: one per kind of outcome a script may want to branch on (docs/cli.md lists them)."""

from __future__ import annotations

from podium.cli.client import ApiError

OK = 0
API_ERROR = 1          # any other error answer (5xx, an unexpected code)
USAGE = 2              # bad arguments, or a spec that is not readable JSON (nothing was sent)
NOT_FOUND = 3          # 404: no such endpoint, scope, token... (or no such API on this server)
AUTH = 4               # 401 / 403: no valid token, or not allowed
CONFLICT = 5           # 409: the name is taken, or the resource changed meanwhile
INVALID = 6            # 400: the server refused the request as invalid (its message names the field)
UPDATE_FAILED = 7      # the endpoint's config update failed (UPDATE_FAILED / UPDATE_CANCELED)
TIMED_OUT = 8          # still not ready when --timeout ran out
UNREACHABLE = 9        # no server configured, or none answering at the target



class UsageError(Exception):
    """A problem with what the user typed, found before anything was sent: exit USAGE."""


_BY_STATUS = {400: INVALID, 401: AUTH, 403: AUTH, 404: NOT_FOUND, 409: CONFLICT}


def for_api_error(error: ApiError) -> int:
    if error.status == 0:
        return UNREACHABLE if error.error_code == "UNREACHABLE" else TIMED_OUT
    return _BY_STATUS.get(error.status, API_ERROR)
