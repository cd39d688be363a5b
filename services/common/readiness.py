"""The handshake between a service process and whoever started it, on the child's stdout.

A service binds its ports (port 0 = the OS picks) and prints JSON lines: optionally
`{"event": "listening", ...}` first, then exactly one final line, `{"event": "ready", <addresses>}` or
`{"event": "failed", "reason": ...}` (and exits). The parent reads them with a deadline: no sleeps, no
port races. After the final line stdout is pointed at stderr, so nothing else ever lands in the pipe.

A worker's ready line also says whether its model batches (`"is_batching": true`): the scaler sizes a
replica that does not for fewer concurrent requests. Containers and pods have no such pipe, so the worker says
it in gRPC health too: the service named BATCHING_HEALTH_SERVICE is SERVING where the model batches and
NOT_SERVING where it does not (set before the worker's own health turns SERVING).
"""

from __future__ import annotations

import json
import os
import sys

BATCHING_HEALTH_SERVICE = "podium.worker.batching"


def announce_listening(service: str, **addresses: object) -> None:
    _write({"event": "listening", "service": service, **addresses})


def announce_ready(service: str, **addresses: object) -> None:
    _write({"event": "ready", "service": service, **addresses})
    _detach_stdout()


def announce_failed(service: str, reason: str) -> None:
    _write({"event": "failed", "service": service, "reason": reason})
    _detach_stdout()


def _write(event: dict) -> None:
    try:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        # Nobody reads any more (e.g. the scaler that started this worker restarted and adopts it by
        # health checks instead): the service runs on regardless.
        pass


def _detach_stdout() -> None:
    # Nobody reads stdout after the handshake: later writes go to stderr (the service's log) so a
    # chatty library can never fill the pipe and block the process.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
