"""`podium endpoints rollout NAME [status|pause|resume|promote|abort]`: an endpoint's canary rollout
(docs/progressive-delivery.md)."""

from __future__ import annotations

import argparse
from urllib.parse import quote

from podium.cli import exits
from podium.cli.output import format_time_ms, print_fields, print_table

ENDPOINTS = "/api/2.0/serving-endpoints"
ACTIONS = ("status", "pause", "resume", "promote", "abort")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    rollout = sub.add_parser(
        "rollout", parents=[common], help="show or steer an endpoint's canary rollout",
        description="status (the default) shows the rollout's step, its latest judgement and its event log; "
                    "pause holds the current step, resume starts its window again, promote makes the new config "
                    "serve alone now, abort rolls back to the old one.")
    rollout.add_argument("name")
    rollout.add_argument("operation", nargs="?", default="status", choices=ACTIONS)
    rollout.set_defaults(handler=rollout_command)


def rollout_command(ctx) -> int:
    path = f"{ENDPOINTS}/{quote(ctx.args.name, safe='')}/rollout"
    if ctx.args.operation == "status":
        ctx.show(ctx.client.get(path), render_rollout)
    else:
        ctx.show(ctx.client.post(f"{path}/{ctx.args.operation}", {}), render_rollout)
    return exits.OK


def render_rollout(answer: dict) -> None:
    rollout = answer.get("rollout")
    if not rollout:
        print(f"Endpoint '{answer.get('name', '')}' has had no rollout.")
        return
    steps = " → ".join(f"{s['traffic_percentage']}%" for s in rollout["plan"]["steps"])
    print_fields([
        ("Endpoint", answer.get("name")), ("Config version", rollout["config_version"]),
        ("Phase", rollout["phase"]), ("Step", f"{rollout['step']} of {rollout['steps']} ({steps})"),
        ("New config's share", f"{rollout['candidate_traffic_percentage']}%"),
        ("Step started", format_time_ms(rollout["step_started_timestamp"])), ("Why", rollout["reason"] or "-"),
        ("Gates", describe_gates(rollout["plan"].get("gates") or {})),
    ])
    judgement = rollout.get("last_judgement")
    if judgement:
        print(f"\nLatest judgement (step {judgement['step']}, {judgement['window_s']} s window): "
              f"{judgement['decision']}: {judgement['reason']}")
        print_table(["SIDE", "REQUESTS", "ERRORS", "ERROR RATE", "P99 MS"], [
            [side, judgement[side]["requests"], judgement[side]["errors"], f"{judgement[side]['error_rate']:.2%}",
             judgement[side]["p99_latency_ms"]] for side in ("candidate", "incumbent")])
        shadow = judgement.get("shadow")
        if shadow:
            print(f"Shadow comparisons of the new config: {shadow['agreement']:.1%} agreement over "
                  f"{shadow['comparisons']} (equal {shadow['equal']}, numeric difference "
                  f"{shadow['numeric_difference']}, different {shadow['different']}, failed {shadow['errors']}"
                  f"{_judged(shadow)})")
    if answer.get("events"):
        print()
        print_table(["TIME", "CONFIG", "PHASE", "STEP", "MESSAGE"], [
            [format_time_ms(e["timestamp"]), e["config_version"], e["phase"], e["step"], e["message"]]
            for e in answer["events"]])


def describe_gates(gates: dict) -> str:
    """The plan's gates in words, as rollout_policy.gate_failures judges them; "-" when the answer has none."""
    parts = []
    if "max_error_rate_increase" in gates:
        parts.append(f"error rate at most {gates['max_error_rate_increase']:.1%} above the incumbent's")
    if "max_p99_latency_ratio" in gates:
        parts.append(f"p99 at most {gates['max_p99_latency_ratio']:g} × the incumbent's + "
                     f"{gates.get('p99_latency_slack_ms', 0):g} ms")
    if gates.get("min_shadow_agreement") is not None:
        parts.append(f"shadow agreement at least {gates['min_shadow_agreement']:.1%} "
                     f"(judged from {gates.get('min_shadow_comparisons', 0)} comparisons)")
    return "; ".join(parts) or "-"


def _judged(shadow: dict) -> str:
    """The shadow judge endpoint's verdicts on differing text answers, when it has one."""
    counts = [shadow.get(k, 0) for k in ("judge_agree", "judge_disagree", "judge_errors")]
    return f"; judged: agree {counts[0]}, disagree {counts[1]}, not judged {counts[2]}" if any(counts) else ""
