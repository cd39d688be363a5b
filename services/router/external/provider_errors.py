"""A provider's failure as the PodiumError the caller sees. Pure.

Provider 429 → 429 REQUEST_LIMIT_EXCEEDED with the provider's Retry-After; 401/403 → 403 saying the
endpoint's credentials were refused (the provider's own words are dropped: they may quote the key);
timeouts → 504; 5xx → 502 BAD_GATEWAY; other 4xx → 400 with the provider's message. Every message names
the provider, and has the key itself cut out in case a provider echoed it. A provider's body is never
relayed: only the message of a JSON error in a provider's shape, cut short and stripped of control
characters and markup; anything else (an HTML page, an internal service's answer) is summarized by its status.
"""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime

import orjson

from services.common.errors import BadGateway, BadRequest, DeadlineExceeded, PermissionDenied, PodiumError, RateLimited

MAX_DETAIL_CHARS = 200
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f<>]+")
MAX_RETRY_AFTER_S = 3600


def provider_error(provider: str, endpoint: str, status: int, body: bytes, retry_after: str | None,
                   secret: str, now_s: float) -> PodiumError:
    detail = redact(_detail(body), secret)
    if status == 429:
        return RateLimited(f"Provider {provider} is rate limiting endpoint '{endpoint}': {detail}",
                           retry_after_s=parse_retry_after(retry_after, now_s))
    if status in (401, 403):
        return PermissionDenied(f"Provider {provider} refused the credentials configured for endpoint "
                                f"'{endpoint}' (HTTP {status}); check the endpoint's {provider} API key")
    if status in (408, 504):
        return DeadlineExceeded(f"Provider {provider} timed out answering endpoint '{endpoint}' (HTTP {status})")
    if status >= 500:
        return BadGateway(f"Provider {provider} failed answering endpoint '{endpoint}' (HTTP {status}): {detail}")
    return BadRequest(f"Provider {provider} rejected the request (HTTP {status}): {detail}")


def redact(text: str, secret: str) -> str:
    return text.replace(secret, "[REDACTED]") if secret else text


def _detail(body: bytes) -> str:
    """The message of OpenAI's `{"error": {"message"}}` or Anthropic's `{"type": "error", "error": {...}}`."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return _sanitized(error["message"])
        if isinstance(error, str):
            return _sanitized(error)
        if isinstance(parsed.get("message"), str):
            return _sanitized(parsed["message"])
    return "no details"


def _sanitized(text: str) -> str:
    text = " ".join(_UNPRINTABLE.sub(" ", text).split())
    return (text[:MAX_DETAIL_CHARS - 1] + "…" if len(text) > MAX_DETAIL_CHARS else text) or "no details"


def parse_retry_after(value: str | None, now_s: float) -> int:
    """Whole seconds from `Retry-After` (seconds or an HTTP date), at least 1, at most an hour."""
    seconds = 1.0
    if value:
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - now_s
            except (TypeError, ValueError):
                seconds = 1.0
    return int(min(MAX_RETRY_AFTER_S, max(1, -(-seconds // 1))))
