"""Server-sent events, both ways. Pure.

Providers send events as `event:` / `data:` lines ended by a blank line, with `:` comments as keep-alives.
Podium sends only `data: <json>` events and ends with `data: [DONE]`: mlflow's predict_stream rejects
every other kind of line (reference §7.10), and the openai SDK reads this shape too.
"""

from __future__ import annotations

import orjson

DONE = b"data: [DONE]\n\n"


class SseParser:
    """Feeds lines in, returns (event name, data) once a blank line completes an event."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: bytes) -> tuple[str, str] | None:
        text = line.decode("utf-8", errors="replace").rstrip("\r\n")
        if not text:
            if not self._data and not self._event:
                return None
            event = (self._event, "\n".join(self._data))
            self._event, self._data = "", []
            return event
        if text.startswith(":"):
            return None  # a comment (keep-alive): never forwarded
        name, _, value = text.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


def data_event(payload: dict) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def error_event(message: str, error_type: str = "provider_error", code: str | None = None) -> bytes:
    """A mid-stream failure as the openai SDK reads it (it raises APIError on `{"error": ...}`)."""
    return data_event({"error": {"message": message, "type": error_type, "code": code}})
