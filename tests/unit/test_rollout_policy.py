"""Canary rollout policy as tables: plan validation, window arithmetic, gates (the shadow-agreement gate too),
step decisions, the blend."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidParameter
from services.common.outcomes import (
    BUCKETS, LATENCY_EDGES_MS, Outcomes, ShadowOutcomes, bucket_of, decode_outcomes, encode_outcomes, shadow_key,
)
from services.control_plane.rollout_policy import (
    ADVANCE, HOLD, PROMOTE, ROLLBACK, ShadowStats, WindowStats, blend_routes, judge_step, shadow_window_stats,
    validate_rollout_plan, window_stats,
)

PLAN = validate_rollout_plan({"steps": [5, 25, 50, 100], "min_step_duration_s": 10, "min_step_requests": 20}, "p")


def _stats(requests: int, errors: int = 0, latency_ms: float = 10.0) -> WindowStats:
    buckets = [0] * BUCKETS
    buckets[bucket_of(latency_ms)] = requests
    return WindowStats(requests, errors, tuple(buckets))


# ---- the plan ----

def test_bare_percentages_take_the_plan_defaults_and_gates_default():
    assert PLAN["steps"][0] == {"traffic_percentage": 5, "min_duration_s": 10.0, "min_requests": 20}
    assert [s["traffic_percentage"] for s in PLAN["steps"]] == [5, 25, 50, 100]
    assert PLAN["gates"] == {"max_error_rate_increase": 0.05, "max_p99_latency_ratio": 2.0,
                             "p99_latency_slack_ms": 50.0}


def test_a_step_object_overrides_the_defaults():
    plan = validate_rollout_plan({"steps": [{"traffic_percentage": 10, "min_duration_s": 1, "min_requests": 3}, 100],
                                  "gates": {"max_error_rate_increase": 0.01}}, "p")
    assert plan["steps"][0] == {"traffic_percentage": 10, "min_duration_s": 1.0, "min_requests": 3}
    assert plan["steps"][1]["min_requests"] == 100 and plan["gates"]["max_error_rate_increase"] == 0.01


@pytest.mark.parametrize("plan, needle", [
    pytest.param([5, 100], "must be an object", id="not an object"),
    pytest.param({}, "p.steps must be a list", id="no steps"),
    pytest.param({"steps": []}, "p.steps must be a list", id="empty steps"),
    pytest.param({"steps": list(range(1, 12))}, "1 to 10 steps", id="too many steps"),
    pytest.param({"steps": [50, 25]}, "must rise", id="falling"),
    pytest.param({"steps": [25, 25]}, "must rise", id="repeated"),
    pytest.param({"steps": [0]}, "p.steps[0].traffic_percentage", id="zero percent"),
    pytest.param({"steps": [101]}, "p.steps[0].traffic_percentage", id="over 100"),
    pytest.param({"steps": [5.5]}, "p.steps[0] must be", id="fraction"),
    pytest.param({"steps": [{"traffic_percentage": 5, "min_duration_s": -1}]}, "min_duration_s", id="negative s"),
    pytest.param({"steps": [{"traffic_percentage": 5, "min_requests": 1.5}]}, "min_requests", id="fraction count"),
    pytest.param({"steps": [{"traffic_percentage": 5, "wait": 1}]}, "unknown field 'wait'", id="unknown step field"),
    pytest.param({"steps": [5], "gates": {"max_cpu": 1}}, "unknown gate 'max_cpu'", id="unknown gate"),
    pytest.param({"steps": [5], "gates": {"max_p99_latency_ratio": 0.5}}, "at least 1", id="ratio below 1"),
    pytest.param({"steps": [5], "gates": {"max_error_rate_increase": True}}, "max_error_rate_increase", id="bool"),
    pytest.param({"steps": [5], "analysis": {}}, "unknown field 'analysis'", id="unknown plan field"),
    pytest.param({"steps": [5], "gates": {"min_shadow_agreement": 1.5}}, "min_shadow_agreement must be a number "
                 "from 0 to 1", id="agreement over 1"),
    pytest.param({"steps": [5], "gates": {"min_shadow_agreement": "0.9"}}, "min_shadow_agreement", id="text"),
    pytest.param({"steps": [5], "gates": {"min_shadow_agreement": 0.9, "min_shadow_comparisons": 2.5}},
                 "min_shadow_comparisons must be a non-negative integer", id="fraction of comparisons"),
    pytest.param({"steps": [5], "gates": {"min_shadow_comparisons": 5}}, "only with min_shadow_agreement",
                 id="comparisons without agreement"),
])
def test_invalid_plans_are_refused_naming_the_field(plan, needle):
    with pytest.raises(InvalidParameter) as refused:
        validate_rollout_plan(plan, "p")
    assert needle in refused.value.message


def test_the_shadow_gate_is_kept_only_where_given_with_its_default_count():
    plan = validate_rollout_plan({"steps": [5, 100], "gates": {"min_shadow_agreement": 0.9}}, "p")
    assert plan["gates"]["min_shadow_agreement"] == 0.9 and plan["gates"]["min_shadow_comparisons"] == 20
    assert "min_shadow_agreement" not in PLAN["gates"]


# ---- the window ----

def test_window_is_the_difference_since_the_baseline_summed_over_routers():
    now = {"r1": {"cand": [30, 3] + [0] * BUCKETS, "inc": [500, 1] + [0] * BUCKETS, "other": [9, 9] + [0] * BUCKETS},
           "r2": {"cand": [12, 0] + [0] * BUCKETS}}
    baseline = {"r1": {"cand": [10, 1] + [0] * BUCKETS, "inc": [100, 1] + [0] * BUCKETS}}
    candidate = window_stats(now, baseline, {"cand"})
    assert (candidate.requests, candidate.errors) == (32, 2)   # r2 started after the baseline: all of it counts
    assert window_stats(now, baseline, {"inc"}).requests == 400
    assert window_stats(now, baseline, set()).requests == 0


def test_a_counter_below_its_baseline_is_a_restarted_router_counted_from_zero():
    now = {"r1": {"cand": [4, 1] + [0] * BUCKETS}}
    baseline = {"r1": {"cand": [50, 5] + [0] * BUCKETS}}
    stats = window_stats(now, baseline, {"cand"})
    assert (stats.requests, stats.errors) == (4, 1)


@pytest.mark.parametrize("latencies, p99", [
    pytest.param([], 0.0, id="no requests"),
    pytest.param([10] * 100, 10.0, id="all in one bucket"),
    pytest.param([10] * 99 + [400], 10.0, id="one slow in 100 is the 100th percentile"),
    pytest.param([10] * 98 + [400] * 2, 500.0, id="two slow in 100 reach the 99th"),
    pytest.param([10] * 99 + [99999] * 2, 30000.0, id="the open bucket reads as the last edge"),
])
def test_p99_is_the_upper_edge_of_its_bucket(latencies, p99):
    buckets = [0] * BUCKETS
    for latency in latencies:
        buckets[bucket_of(latency)] += 1
    assert WindowStats(len(latencies), 0, tuple(buckets)).p99_ms == p99


def test_outcomes_round_trip_and_garbage_reads_as_nothing():
    outcomes = Outcomes()
    outcomes.add(200, 3.0)
    outcomes.add(500, 40000.0)
    outcomes.add(404, 1.0)
    decoded = decode_outcomes(encode_outcomes({"k": outcomes}))
    assert decoded["k"][:2] == [3, 1] and sum(decoded["k"][2:]) == 3 and decoded["k"][-1] == 1
    assert len(LATENCY_EDGES_MS) + 1 == BUCKETS
    assert decode_outcomes(b"not json") == {} and decode_outcomes(b'{"k": [1, 2]}') == {}


def test_shadow_window_sums_the_candidates_comparisons_since_the_baseline():
    counts = ShadowOutcomes()
    for verdict in ["equal"] * 7 + ["numeric_difference", "different", "error"]:
        counts.add(verdict)
    now = {"r1": decode_outcomes(encode_outcomes({shadow_key("cand"): counts, "cand": Outcomes()})),
           "r2": {shadow_key("other"): [5, 0, 0, 0]}}
    baseline = {"r1": {shadow_key("cand"): [2, 0, 0, 0]}}
    stats = shadow_window_stats(now, baseline, {"cand"})
    assert stats == ShadowStats(5, 1, 1, 1) and stats.comparisons == 8 and stats.agreement == 0.75
    assert window_stats(now, {}, {"cand"}).requests == 0          # the comparisons are not the deployment's queries
    assert decode_outcomes(b'{"shadow:k": [1, 2]}') == {}         # a shadow entry of the wrong width reads as nothing


# ---- the decision ----

@pytest.mark.parametrize("step, elapsed_s, candidate, incumbent, action, needle", [
    pytest.param(0, 60, _stats(19), _stats(400), HOLD, "19 of 20 requests", id="too few requests: hold"),
    pytest.param(0, 60, _stats(19, errors=19), _stats(400), HOLD, "19 of 20", id="failing but too few: hold"),
    pytest.param(0, 1, _stats(20, errors=4), _stats(400), ROLLBACK, "error rate 20.0%",
                 id="20 % errors fails at once, before the duration"),
    pytest.param(0, 1, _stats(20, errors=4), _stats(400, errors=80), HOLD, "gates pass",
                 id="as bad as the incumbent passes"),
    pytest.param(0, 1, _stats(100, errors=5), _stats(400), HOLD, "gates pass", id="5 % more is the limit"),
    pytest.param(0, 1, _stats(100, errors=6), _stats(400), ROLLBACK, "error rate", id="6 % more fails"),
    pytest.param(0, 5, _stats(50), _stats(400), HOLD, "5 of 10 s", id="healthy, duration not over: hold"),
    pytest.param(0, 10, _stats(50), _stats(400), ADVANCE, "step 1 (5 %) passed", id="healthy and over: advance"),
    pytest.param(2, 10, _stats(50), _stats(400), ADVANCE, "step 3 (50 %) passed", id="third step advances"),
    pytest.param(3, 10, _stats(50), _stats(0), PROMOTE, "every step passed", id="last step promotes"),
    pytest.param(1, 10, _stats(50, latency_ms=400), _stats(400, latency_ms=100), ROLLBACK, "p99 latency 500 ms",
                 id="p99 over ratio*incumbent+slack"),
    pytest.param(1, 10, _stats(50, latency_ms=200), _stats(400, latency_ms=100), ADVANCE, "passed",
                 id="p99 within ratio*incumbent+slack"),
    pytest.param(3, 10, _stats(50, latency_ms=5000), _stats(0), PROMOTE, "every step",
                 id="no incumbent traffic: no latency comparison"),
    pytest.param(3, 10, _stats(50, errors=10), _stats(0), ROLLBACK, "error rate", id="100 % step: errors still fail"),
])
def test_judge_step(step, elapsed_s, candidate, incumbent, action, needle):
    decision = judge_step(PLAN, step, elapsed_s, candidate, incumbent)
    assert decision.action == action
    assert needle in decision.reason


SHADOW_PLAN = validate_rollout_plan({"steps": [5, 100], "min_step_duration_s": 10, "min_step_requests": 20,
                                     "gates": {"min_shadow_agreement": 0.9, "min_shadow_comparisons": 10}}, "p")


@pytest.mark.parametrize("step, shadow, incumbent, action, needle", [
    pytest.param(0, None, _stats(400), HOLD, "0 of 10 shadow comparisons", id="no comparisons: hold"),
    pytest.param(0, ShadowStats(9), _stats(400), HOLD, "9 of 10 shadow comparisons", id="too few: hold"),
    pytest.param(0, ShadowStats(1, different=8), _stats(400), HOLD, "9 of 10", id="too few to fail, even all bad"),
    pytest.param(0, ShadowStats(9, 0, 1), _stats(400), ADVANCE, "passed", id="90 % is the limit"),
    pytest.param(0, ShadowStats(5, 4, 1), _stats(400), ADVANCE, "passed",
                 id="numeric differences agree"),
    pytest.param(0, ShadowStats(17, 0, 2, 1), _stats(400), ROLLBACK, "shadow agreement 85.0% over 20 comparisons",
                 id="85 % fails"),
    pytest.param(0, ShadowStats(8, 0, 0, 2), _stats(400), ROLLBACK, "shadow agreement 80.0%",
                 id="failed copies disagree"),
    pytest.param(1, None, _stats(0), PROMOTE, "every step", id="no incumbent traffic: nothing to compare"),
])
def test_judge_step_with_a_shadow_gate(step, shadow, incumbent, action, needle):
    decision = judge_step(SHADOW_PLAN, step, 10, _stats(50), incumbent, shadow)
    assert decision.action == action
    assert needle in decision.reason


def test_a_plan_without_the_shadow_gate_ignores_shadow_disagreement():
    assert judge_step(PLAN, 0, 10, _stats(50), _stats(400), ShadowStats(0, 0, 50)).action == ADVANCE


# ---- the traffic split ----

@pytest.mark.parametrize("incumbent, candidate, share, want", [
    pytest.param([("a", 100)], [("b", 100)], 5, ([95], [5]), id="one to one"),
    pytest.param([("a", 100)], [("b", 100)], 100, ([0], [100]), id="all to the candidate"),
    pytest.param([("a", 70), ("x", 30)], [("b", 100)], 25, ([53, 22], [25]), id="two incumbents share the rest"),
    pytest.param([("a", 50), ("x", 50)], [("b", 50), ("y", 50)], 5, ([48, 47], [3, 2]),
                 id="each side keeps its exact share; ties to the first"),
    pytest.param([("a", 100), ("z", 0)], [("b", 100), ("y", 0)], 33, ([67, 0], [33, 0]), id="0 % stays 0 %"),
])
def test_blend_routes(incumbent, candidate, share, want):
    old, new = blend_routes(incumbent, candidate, share)
    assert (old, new) == want
    assert sum(old) + sum(new) == 100
