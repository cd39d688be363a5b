"""JSON field checks shared by the request validators (spec.py, spec_options.py, spec_external.py). Pure.

Each takes the value and the field's dotted path, and raises MalformedRequest (wrong JSON shape) or
InvalidParameter (right shape, bad value) naming that path, so every 400 says which field is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.common.errors import InvalidParameter, MalformedRequest, PodiumError


def _type_check(accepts: Callable[[Any], bool], error: type[PodiumError], must_be: str) -> Callable[[Any, str], Any]:
    """A check that returns the value it `accepts`, and otherwise raises `error`: "<field> must be <must_be>"."""
    def require(value: Any, field: str) -> Any:
        if not accepts(value):
            raise error(f"{field} must be {must_be}")
        return value
    return require


# A wrong JSON type for a container is a malformed request; for a scalar, an invalid parameter value.
require_object = _type_check(lambda v: isinstance(v, dict), MalformedRequest, "a JSON object")
require_list = _type_check(lambda v: isinstance(v, list), MalformedRequest, "a JSON array")
require_str = _type_check(lambda v: isinstance(v, str), InvalidParameter, "a string")
require_bool = _type_check(lambda v: isinstance(v, bool), InvalidParameter, "true or false")
require_non_negative_int = _type_check(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                                       InvalidParameter, "a non-negative integer")   # JSON true is no count


def require_enum(value: Any, allowed: tuple[str, ...], field: str) -> str:
    if value not in allowed:
        raise InvalidParameter(f"{field} '{value}' must be one of {', '.join(allowed)}")
    return value


def require_str_list(value: Any, field: str) -> list[str]:
    items = require_list(value, field)
    for i, item in enumerate(items):
        require_str(item, f"{field}[{i}]")
    return items


def reject_unknown(value: dict, known: tuple[str, ...], field: str) -> None:
    """A misspelt field would otherwise be dropped without a word: name it instead."""
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise InvalidParameter(f"{field}: unknown field '{unknown[0]}' (expected {', '.join(known)})")
