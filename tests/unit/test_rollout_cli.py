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
