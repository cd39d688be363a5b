"""JSON-lines logging, configured once from each service's __main__.

Every line carries the request it was logged for (`request_id`, from services/common/request_context.py)
and, while tracing is on, the current span's `trace_id` and `span_id`, so a log line finds its trace.
`OutageLog` logs a dependency that fails on every call (Redis, say) once per outage.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from opentelemetry import trace

from services.common.request_context import request_id_var


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = f"{span_context.trace_id:032x}"
            entry["span_id"] = f"{span_context.span_id:016x}"
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class OutageLog:
    """A dependency's outage in the log once: a warning when its calls start failing, a line when one
    succeeds again, and nothing for the calls between."""

    def __init__(self, logger: logging.Logger):
        self._log = logger
        self._is_out = False

    def failed(self, message: str, *args) -> None:
        if not self._is_out:
            self._log.warning(message, *args)
        self._is_out = True

    def succeeded(self, message: str, *args) -> None:
        if self._is_out:
            self._log.info(message, *args)
        self._is_out = False


def configure_logging(service: str, level: str = "INFO") -> None:
    """Logs go to stderr as JSON lines; stdout is kept for the one machine-readable `ready` line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("podium").info("starting %s", service)
