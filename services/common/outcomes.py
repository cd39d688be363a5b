"""Per-deployment query outcomes that routers publish to Redis and the control plane's rollouts read: the
key names, the latency buckets and the encoding, no I/O.

Each router writes one key, `podium:outcomes:<router id>`, holding for every deployment key its counters
since the router started: requests answered, of those answered with a 5xx status, and a latency histogram
over LATENCY_EDGES_MS (one count per bucket, the last one unbounded). Counters only grow, so a reader takes
the difference between two reads of the same router as what happened in between; the key has a TTL of a
few publish intervals, so a dead router's counters leave with it.

Beside them, under `shadow_key(deployment key)`, the same value holds the comparisons of the shadow copies
that deployment answered (ShadowOutcomes: equal, numeric difference, different, error, and a judge
endpoint's verdicts on differing text answers: agree, disagree, could not judge), which a rollout's
`gates.min_shadow_agreement` judges. A shorter list (a router from before the judge verdicts) reads as zeros
for the verdicts it lacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

OUTCOMES_KEY_PREFIX = "podium:outcomes:"
SHADOW_PREFIX = "shadow:"          # deployment keys are hex digests: no clash with a deployment's own counters
SHADOW_VERDICTS = ("equal", "numeric_difference", "different", "error", "judge_agree", "judge_disagree",
                   "judge_error")
_SHADOW_VERDICTS_BEFORE_JUDGES = 4
# Fine enough to tell a p99 of 20 ms from one of 30 ms; the last bucket holds everything slower.
LATENCY_EDGES_MS = (1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000,
                    3000, 5000, 10000, 30000)
BUCKETS = len(LATENCY_EDGES_MS) + 1


@dataclass
class Outcomes:
    """One deployment's counters in one router (mutable: the router's query path adds to it)."""

    requests: int = 0
    errors: int = 0                   # answered with a 5xx status
    latency_buckets: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    def add(self, http_status: int, latency_ms: float) -> None:
        self.requests += 1
        if http_status >= 500:
            self.errors += 1
        self.latency_buckets[bucket_of(latency_ms)] += 1

    def as_list(self) -> list[int]:
        return [self.requests, self.errors, *self.latency_buckets]


@dataclass
class ShadowOutcomes:
    """How the shadow copies one deployment answered compared with the live answers, in one router."""

    counts: list[int] = field(default_factory=lambda: [0] * len(SHADOW_VERDICTS))

    def add(self, verdict: str) -> None:
        self.counts[SHADOW_VERDICTS.index(verdict)] += 1

    def as_list(self) -> list[int]:
        return list(self.counts)


def shadow_key(deployment_key: str) -> str:
    return SHADOW_PREFIX + deployment_key


def bucket_of(latency_ms: float) -> int:
    for index, edge in enumerate(LATENCY_EDGES_MS):
        if latency_ms <= edge:
            return index
    return len(LATENCY_EDGES_MS)


def outcomes_key(router_id: str) -> str:
    return OUTCOMES_KEY_PREFIX + router_id


def encode_outcomes(outcomes: "dict[str, Outcomes | ShadowOutcomes]") -> bytes:
    return orjson.dumps({key: o.as_list() for key, o in outcomes.items()})


def decode_outcomes(raw: bytes | str) -> dict[str, list[int]]:
    """{deployment key: [requests, errors, bucket counts...], shadow_key(deployment key): [one count per
    SHADOW_VERDICTS]}; an unreadable value counts as nothing."""
    try:
        data = orjson.loads(raw)
        out = {}
        for key, values in data.items():
            if not isinstance(values, list):
                continue
            if str(key).startswith(SHADOW_PREFIX):
                if _SHADOW_VERDICTS_BEFORE_JUDGES <= len(values) <= len(SHADOW_VERDICTS):
                    out[str(key)] = [int(v) for v in values] + [0] * (len(SHADOW_VERDICTS) - len(values))
            elif len(values) == 2 + BUCKETS:
                out[str(key)] = [int(v) for v in values]
        return out
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return {}
