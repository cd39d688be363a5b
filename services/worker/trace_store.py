"""The MLflow traces a replica collects for the calls that ask for theirs (`return_trace`,
services/worker/generative.py), kept until the call's answer takes them."""

from __future__ import annotations

import threading


class CollectedTraces:
    """Finished traces (Trace.to_dict()) by request id, from the thread that ends a root span to the one that
    answers. Bounded, entries expiring: a trace whose root span ends after its call returned (a generator the
    model left open) is never taken."""

    def __init__(self):
        from cachetools import TTLCache

        self._kept = TTLCache(maxsize=1000, ttl=300)
        self._lock = threading.Lock()   # TTLCache is not thread-safe

    def put(self, request_id: str, trace: dict) -> None:
        with self._lock:
            self._kept[request_id] = trace

    def pop(self, request_id: str) -> dict | None:
        with self._lock:
            return self._kept.pop(request_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._kept)
