"""JSON field checks shared by the request validators (spec.py, spec_gateway.py). Pure.

Each takes the value and the field's dotted path, and raises MalformedRequest (wrong JSON shape) or
InvalidParameter (right shape, bad value) naming that path, so every 400 says which field is wrong.
"""

from __future__ import annotations

from typing import Any

from services.common.errors import InvalidParameter, MalformedRequest


def require_object(value: Any, field: str) -> dict:
    if not isinstance(value, dict):
        raise MalformedRequest(f"{field} must be a JSON object")
    return value


def require_list(value: Any, field: str) -> list:
    if not isinstance(value, list):
        raise MalformedRequest(f"{field} must be a JSON array")
    return value


def require_str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidParameter(f"{field} must be a string")
    return value


def require_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidParameter(f"{field} must be true or false")
    return value


def require_non_negative_int(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidParameter(f"{field} must be a non-negative integer")
    return value


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
