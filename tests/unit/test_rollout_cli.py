"""`podium endpoints rollout`: what its status shows, from an answer of GET .../rollout."""

from __future__ import annotations

from podium.cli.rollouts import render_rollout

ANSWER = {"name": "iris", "rollout": {
    "config_version": 4, "phase": "ROLLED_BACK", "step": 1, "steps": 3, "candidate_traffic_percentage": 0,
    "step_started_timestamp": 1_700_000_000_000, "reason": "step 1 (5 %) failed its gates: error rate 20.0%",
    "plan": {"steps": [{"traffic_percentage": 5}, {"traffic_percentage": 50}, {"traffic_percentage": 100}]},
    "last_judgement": {"step": 1, "decision": "ROLLBACK", "reason": "step 1 (5 %) failed its gates", "window_s": 3.2,
                       "candidate": {"requests": 40, "errors": 8, "error_rate": 0.2, "p99_latency_ms": 20.0},
                       "incumbent": {"requests": 800, "errors": 0, "error_rate": 0.0, "p99_latency_ms": 15.0}}},
    "events": [{"timestamp": 1_700_000_000_000, "config_version": 4, "phase": "ROLLED_BACK", "step": 1,
                "message": "step 1 (5 %) failed its gates"}]}


def test_status_shows_the_phase_the_steps_the_judgement_and_the_events(capsys):
    render_rollout(ANSWER)
    out = capsys.readouterr().out
    assert "ROLLED_BACK" in out and "1 of 3 (5% → 50% → 100%)" in out and "error rate 20.0%" in out
    assert "ROLLBACK" in out and "20.00%" in out and "candidate" in out and "incumbent" in out
    assert "step 1 (5 %) failed its gates" in out.splitlines()[-1]


def test_an_endpoint_without_rollouts_says_so(capsys):
    render_rollout({"name": "iris", "rollout": None, "events": []})
    assert capsys.readouterr().out.strip() == "Endpoint 'iris' has had no rollout."


def test_status_shows_the_gates_and_the_shadow_part_of_the_judgement(capsys):
    rollout = {**ANSWER["rollout"], "phase": "RUNNING", "reason": "step 1: 12 of 200 shadow comparisons",
               "plan": {**ANSWER["rollout"]["plan"], "gates": {
                   "max_error_rate_increase": 0.02, "max_p99_latency_ratio": 1.5, "p99_latency_slack_ms": 20.0,
                   "min_shadow_agreement": 0.98, "min_shadow_comparisons": 200}},
               "last_judgement": {**ANSWER["rollout"]["last_judgement"], "decision": "HOLD",
                                  "reason": "step 1: 12 of 200 shadow comparisons",
                                  "shadow": {"comparisons": 12, "equal": 9, "numeric_difference": 2, "different": 0,
                                             "errors": 1, "agreement": 0.9167}}}
    render_rollout({"name": "iris", "rollout": rollout, "events": []})
    out = capsys.readouterr().out
    [gates] = [line for line in out.splitlines() if line.startswith("Gates:")]
    assert "error rate at most 2.0% above the incumbent's" in gates
    assert "p99 at most 1.5 × the incumbent's + 20 ms" in gates
    assert "shadow agreement at least 98.0% (judged from 200 comparisons)" in gates
    assert "HOLD: step 1: 12 of 200 shadow comparisons" in out
    assert ("Shadow comparisons of the new config: 91.7% agreement over 12 "
            "(equal 9, numeric difference 2, different 0, failed 1)") in out


def test_without_shadow_comparisons_no_shadow_line_is_shown(capsys):
    render_rollout(ANSWER)
    out = capsys.readouterr().out
    assert "Shadow comparisons" not in out and "Gates:" in out
