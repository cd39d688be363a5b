"""The load metrics routers publish to Redis and the scaler reads: key names and encoding, no I/O.

Each router writes one key, `podium:load:<router id>`, holding its load per deployment key as JSON, with
a TTL of a few publish intervals: the scaler sums every router's key, and a dead router's load expires
with its key. `podium:scaler:wake` is the channel on which a router says "a request is waiting for a
replica of these deployments" so the scaler runs a pass at once instead of at its next interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

LOAD_KEY_PREFIX = "podium:load:"
WAKE_CHANNEL = "podium:scaler:wake"


@dataclass(frozen=True)
class EntityLoadReport:
    """One router's load for one deployment."""

    mean_in_flight: float = 0.0  # mean requests inside the router over the last publish interval
    in_flight: int = 0           # requests inside the router now (being served or waiting)
    queued: int = 0              # of those, waiting for a replica
    arrivals: int = 0            # requests since the router started (monotonic)


def load_key(router_id: str) -> str:
    return LOAD_KEY_PREFIX + router_id


def encode_load(reports: dict[str, EntityLoadReport]) -> bytes:
    return orjson.dumps({key: [round(r.mean_in_flight, 3), r.in_flight, r.queued, r.arrivals]
                         for key, r in reports.items()})


def decode_load(raw: bytes | str) -> dict[str, EntityLoadReport]:
    """The reports in one router's key; an unreadable value counts as no load (never an exception)."""
    try:
        data = orjson.loads(raw)
        return {str(key): EntityLoadReport(float(v[0]), int(v[1]), int(v[2]), int(v[3]))
                for key, v in data.items()}
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError, IndexError):
        return {}
