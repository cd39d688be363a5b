"""Canary rollouts, decided: the rollout plan's validation, the live-metrics window of each side, the gates
and the step decision, and the traffic split while a rollout runs. Pure: time and counters come in.

A rollout plan (a Podium extension of the endpoint config, `config.rollout_plan`) is a list of steps, each a
share of the endpoint's traffic for the new config (the candidate) held for at least `min_duration_s` and
until the candidate has answered `min_requests` queries in the step; the old config (the incumbent) takes
the rest. Gates compare the candidate with the incumbent over the same window: a gate that fails rolls
back at once (as soon as the step has its requests, before its duration is over); a step whose gates pass
once its duration is over moves on, and the last one promotes.

The optional shadow gate (`gates.min_shadow_agreement`) reads the comparisons of the shadow copies the
candidate's deployments answered in the window: a candidate that was a shadow entity of the serving config
keeps getting copies of the queries the incumbent answers while the canary runs. An answer agrees when it is
equal or differs only numerically (the same class, shape and labels), or when the shadow's judge endpoint
judged its differing text to agree; a different answer, one the judge found to disagree, or a failed copy
disagrees. A text answer the judge could not judge is no comparison: it neither agrees nor disagrees.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.common.errors import InvalidParameter
from services.common.outcomes import BUCKETS, LATENCY_EDGES_MS, SHADOW_VERDICTS, shadow_key

MAX_STEPS = 10
MAX_STEP_DURATION_S = 7 * 24 * 3600.0
DEFAULT_MIN_DURATION_S = 60.0
DEFAULT_MIN_REQUESTS = 100
DEFAULT_GATES = {"max_error_rate_increase": 0.05, "max_p99_latency_ratio": 2.0, "p99_latency_slack_ms": 50.0}
# Off unless min_shadow_agreement is given; then judged once the window holds this many comparisons.
SHADOW_GATES = ("min_shadow_agreement", "min_shadow_comparisons")
DEFAULT_MIN_SHADOW_COMPARISONS = 20

HOLD, ADVANCE, PROMOTE, ROLLBACK = "HOLD", "ADVANCE", "PROMOTE", "ROLLBACK"


# ---- the plan ----

def validate_rollout_plan(value: Any, field: str) -> dict:
    """{"steps": [{"traffic_percentage", "min_duration_s", "min_requests"}...], "gates": {...}}.

    A step is an object, or a bare percentage taking the plan's `min_step_duration_s` and
    `min_step_requests`; percentages rise strictly, from 1 to 100."""
    if not isinstance(value, dict):
        raise InvalidParameter(f"{field} must be an object")
    unknown = sorted(set(value) - {"steps", "gates", "min_step_duration_s", "min_step_requests"})
    if unknown:
        raise InvalidParameter(f"{field}: unknown field '{unknown[0]}'")
    duration = _number(value.get("min_step_duration_s", DEFAULT_MIN_DURATION_S), f"{field}.min_step_duration_s",
                       MAX_STEP_DURATION_S)
    requests = _count(value.get("min_step_requests", DEFAULT_MIN_REQUESTS), f"{field}.min_step_requests")
    raw_steps = value.get("steps")
    if not isinstance(raw_steps, list) or not 1 <= len(raw_steps) <= MAX_STEPS:
        raise InvalidParameter(f"{field}.steps must be a list of 1 to {MAX_STEPS} steps")
    steps = [_step(s, f"{field}.steps[{i}]", duration, requests) for i, s in enumerate(raw_steps)]
    shares = [s["traffic_percentage"] for s in steps]
    if any(b <= a for a, b in zip(shares, shares[1:])):
        raise InvalidParameter(f"{field}.steps: traffic percentages must rise from step to step")
    return {"steps": steps, "gates": _gates(value.get("gates") or {}, f"{field}.gates")}


def _step(step: Any, field: str, duration: float, requests: int) -> dict:
    if isinstance(step, int) and not isinstance(step, bool):
        step = {"traffic_percentage": step}
    if not isinstance(step, dict):
        raise InvalidParameter(f"{field} must be a traffic percentage or an object")
    unknown = sorted(set(step) - {"traffic_percentage", "min_duration_s", "min_requests"})
    if unknown:
        raise InvalidParameter(f"{field}: unknown field '{unknown[0]}'")
    share = step.get("traffic_percentage")
    if not isinstance(share, int) or isinstance(share, bool) or not 1 <= share <= 100:
        raise InvalidParameter(f"{field}.traffic_percentage must be an integer from 1 to 100")
    return {"traffic_percentage": share,
            "min_duration_s": _number(step.get("min_duration_s", duration), f"{field}.min_duration_s",
                                      MAX_STEP_DURATION_S),
            "min_requests": _count(step.get("min_requests", requests), f"{field}.min_requests")}


def _gates(gates: Any, field: str) -> dict:
    if not isinstance(gates, dict):
        raise InvalidParameter(f"{field} must be an object")
    known = set(DEFAULT_GATES) | set(SHADOW_GATES)
    unknown = sorted(set(gates) - known)
    if unknown:
        raise InvalidParameter(f"{field}: unknown gate '{unknown[0]}' (known: {', '.join(sorted(known))})")
    out = {name: _number(gates.get(name, default), f"{field}.{name}", math.inf)
           for name, default in DEFAULT_GATES.items()}
    if out["max_p99_latency_ratio"] < 1:
        raise InvalidParameter(f"{field}.max_p99_latency_ratio must be at least 1")
    if "min_shadow_agreement" in gates:
        out["min_shadow_agreement"] = _number(gates["min_shadow_agreement"], f"{field}.min_shadow_agreement", 1)
        out["min_shadow_comparisons"] = _count(gates.get("min_shadow_comparisons", DEFAULT_MIN_SHADOW_COMPARISONS),
                                               f"{field}.min_shadow_comparisons")
    elif "min_shadow_comparisons" in gates:
        raise InvalidParameter(f"{field}.min_shadow_comparisons is read only with min_shadow_agreement")
    return out


def _number(value: Any, field: str, limit: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= limit:
        raise InvalidParameter(f"{field} must be a number from 0{'' if math.isinf(limit) else f' to {limit:g}'}")
    return float(value)


def _count(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidParameter(f"{field} must be a non-negative integer")
    return value


# ---- the window ----

@dataclass(frozen=True)
class WindowStats:
    """What one side answered over a step's window."""

    requests: int = 0
    errors: int = 0
    latency_buckets: tuple[int, ...] = (0,) * BUCKETS

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p99_ms(self) -> float:
        """The upper edge of the bucket holding the 99th percentile (the last edge for the open bucket)."""
        total = sum(self.latency_buckets)
        if not total:
            return 0.0
        rank, seen = math.ceil(0.99 * total), 0
        for index, count in enumerate(self.latency_buckets):
            seen += count
            if seen >= rank:
                return float(LATENCY_EDGES_MS[min(index, len(LATENCY_EDGES_MS) - 1)])
        return float(LATENCY_EDGES_MS[-1])

    def as_dict(self) -> dict:
        return {"requests": self.requests, "errors": self.errors, "error_rate": round(self.error_rate, 4),
                "p99_latency_ms": self.p99_ms}


Counters = Mapping[str, Mapping[str, Sequence[int]]]   # router id -> deployment key -> [requests, errors, buckets]


@dataclass(frozen=True)
class ShadowStats:
    """How the shadow copies one side's deployments answered over a step's window compared with the live
    answers."""

    equal: int = 0
    numeric_difference: int = 0
    different: int = 0
    errors: int = 0
    judge_agree: int = 0       # differing text answers the judge endpoint found to agree
    judge_disagree: int = 0
    judge_errors: int = 0      # ... it could not judge: not comparisons (neither agree nor disagree)

    @property
    def comparisons(self) -> int:
        return self.equal + self.numeric_difference + self.different + self.errors + self.judge_agree + \
            self.judge_disagree

    @property
    def agreement(self) -> float:
        agreed = self.equal + self.numeric_difference + self.judge_agree
        return agreed / self.comparisons if self.comparisons else 0.0

    def as_dict(self) -> dict:
        return {"comparisons": self.comparisons, "equal": self.equal, "numeric_difference": self.numeric_difference,
                "different": self.different, "errors": self.errors, "judge_agree": self.judge_agree,
                "judge_disagree": self.judge_disagree, "judge_errors": self.judge_errors,
                "agreement": round(self.agreement, 4)}


def window_stats(now: Counters, baseline: Counters, keys: Iterable[str]) -> WindowStats:
    """The sum over routers of what the deployments `keys` answered since `baseline` was read.

    A router absent from the baseline started since: all its counts are new. A counter below its baseline
    belongs to a router that restarted under the same id: its counts are taken as they are."""
    totals = _window(now, baseline, set(keys), 2 + BUCKETS)
    return WindowStats(totals[0], totals[1], tuple(totals[2:]))


def shadow_window_stats(now: Counters, baseline: Counters, keys: Iterable[str]) -> ShadowStats:
    """The sum over routers of the shadow comparisons of the deployments `keys` since `baseline` was read
    (the same arithmetic as window_stats)."""
    return ShadowStats(*_window(now, baseline, {shadow_key(k) for k in keys}, len(SHADOW_VERDICTS)))


def _window(now: Counters, baseline: Counters, keys: set[str], width: int) -> list[int]:
    totals = [0] * width
    for router, deployments in now.items():
        for key, counts in deployments.items():
            if key not in keys:
                continue
            before = baseline.get(router, {}).get(key)
            if before is not None and len(before) < len(counts):   # stored before the judge verdicts existed
                before = [*before, *[0] * (len(counts) - len(before))]
            if before is None or len(before) != len(counts) or any(c < b for c, b in zip(counts, before)):
                before = [0] * len(counts)
            for index, (count, base) in enumerate(zip(counts, before)):
                totals[index] += count - base
    return totals


# ---- the decision ----

@dataclass(frozen=True)
class Decision:
    action: str          # HOLD, ADVANCE, PROMOTE or ROLLBACK
    reason: str


def gate_failures(gates: Mapping[str, float], candidate: WindowStats, incumbent: WindowStats,
                  shadow: ShadowStats | None = None) -> list[str]:
    """Why the candidate fails its gates against the incumbent (empty: it passes). The shadow gate is judged
    only once `shadow` holds its comparisons (is_shadow_pending says when it does not)."""
    failures = []
    increase = candidate.error_rate - incumbent.error_rate
    if increase > gates["max_error_rate_increase"]:
        failures.append(f"error rate {candidate.error_rate:.1%} against the incumbent's {incumbent.error_rate:.1%} "
                        f"(at most {gates['max_error_rate_increase']:.1%} more allowed)")
    if incumbent.requests:   # no incumbent traffic in the window (a 100 % step): nothing to compare with
        limit = incumbent.p99_ms * gates["max_p99_latency_ratio"] + gates["p99_latency_slack_ms"]
        if candidate.p99_ms > limit:
            failures.append(f"p99 latency {candidate.p99_ms:g} ms against the incumbent's {incumbent.p99_ms:g} ms "
                            f"(at most {limit:g} ms allowed)")
    minimum = gates.get("min_shadow_agreement")
    if (minimum is not None and incumbent.requests and shadow is not None
            and shadow.comparisons >= max(1, gates["min_shadow_comparisons"]) and shadow.agreement < minimum):
        failures.append(f"shadow agreement {shadow.agreement:.1%} over {shadow.comparisons} comparisons with the "
                        f"incumbent's answers (at least {minimum:.1%} required)")
    return failures


def is_shadow_pending(gates: Mapping[str, float], incumbent: WindowStats, shadow: ShadowStats | None) -> bool:
    """Whether the shadow gate is set and still lacks its comparisons. Without incumbent traffic in the
    window (a 100 % step) no copy is compared with the candidate, so there is nothing to wait for."""
    if gates.get("min_shadow_agreement") is None or not incumbent.requests:
        return False
    return (shadow.comparisons if shadow else 0) < max(1, gates["min_shadow_comparisons"])


def judge_step(plan: Mapping, step: int, step_elapsed_s: float, candidate: WindowStats,
               incumbent: WindowStats, shadow: ShadowStats | None = None) -> Decision:
    """What to do with a running rollout at step `step`, `step_elapsed_s` after the step began; `shadow`: the
    comparisons of the candidate's shadow copies over the same window."""
    current = plan["steps"][step]
    if candidate.requests < current["min_requests"]:
        return Decision(HOLD, f"step {step + 1}: {candidate.requests} of {current['min_requests']} requests")
    failures = gate_failures(plan["gates"], candidate, incumbent, shadow)
    if failures:
        return Decision(ROLLBACK, f"step {step + 1} ({current['traffic_percentage']} %) failed its gates: "
                        + "; ".join(failures))
    if is_shadow_pending(plan["gates"], incumbent, shadow):
        unjudged = (f" ({shadow.judge_errors} not judged: the judge endpoint failed)"
                    if shadow and shadow.judge_errors else "")
        return Decision(HOLD, f"step {step + 1}: {shadow.comparisons if shadow else 0} of "
                        f"{plan['gates']['min_shadow_comparisons']} shadow comparisons{unjudged}")
    if step_elapsed_s < current["min_duration_s"]:
        return Decision(HOLD, f"step {step + 1}: gates pass; {step_elapsed_s:.0f} of "
                        f"{current['min_duration_s']:g} s")
    if step + 1 < len(plan["steps"]):
        return Decision(ADVANCE, f"step {step + 1} ({current['traffic_percentage']} %) passed its gates")
    return Decision(PROMOTE, f"every step passed its gates (the last at {current['traffic_percentage']} %)")


# ---- the traffic split ----

def blend_routes(incumbent: Sequence[tuple[str, int]], candidate: Sequence[tuple[str, int]],
                 candidate_share: int) -> tuple[list[int], list[int]]:
    """Integer percentages of each incumbent route and each candidate route: the candidate's routes share
    exactly `candidate_share` % as their own percentages say, the incumbent's the rest."""
    return _apportion([p for _, p in incumbent], 100 - candidate_share), _apportion([p for _, p in candidate],
                                                                                     candidate_share)


def _apportion(percentages: Sequence[int], total: int) -> list[int]:
    """`total` split in proportion to `percentages` (which sum to 100), by largest remainder (ties to the
    first): a route at 0 % stays at 0 %."""
    exact = [p * total / 100 for p in percentages]
    shares = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - shares[i]), i))
    for index in by_remainder[:total - sum(shares)]:
        shares[index] += 1
    return shares
