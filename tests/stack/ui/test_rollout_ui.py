"""A canary rollout in the web UI, in real Chromium: while a rollout runs under load, the endpoint page's
rollout card charts both sides (the new config and the serving one) from the rollout's judgements since it
began (drawn on the page's first load), then the ones it reads, shows the gates, and the latest decision and
why; and, in Node, the series those charts draw from successive judgements, and how a full history thins."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import requests

from tests.stack.ui.test_browser import page, sign_in  # noqa: F401  (`page` is a fixture)
from tests.support.flaky_model import register_flaky_model
from tests.support.stack import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.browser]

METRICS_JS = Path(__file__).resolve().parents[3] / "services" / "router" / "ui" / "static" / "metrics.js"
NAME = "ui-canary"
MODEL = "main.default.ui_canary"


def _query_until(stack, stop: threading.Event) -> None:
    with requests.Session() as session:
        while not stop.is_set():
            try:
                session.post(f"{stack.url}/serving-endpoints/{NAME}/invocations", timeout=30,
                             headers={"Authorization": f"Bearer {stack.admin_token}"},
                             json={"dataframe_split": {"columns": ["x"], "data": [[1.0]]}})
            except requests.RequestException:
                pass   # the test asserts on the page, not on these answers


def test_a_running_rollout_charts_both_sides_and_shows_the_decision(page, stack, screenshot):  # noqa: F811
    from playwright.sync_api import expect

    incumbent, candidate = (register_flaky_model(stack.info, MODEL, 0.0, label) for label in ("v1", "v2"))
    entity = {"entity_name": MODEL, "max_batch_size": 1}
    stack.serve(NAME, [{**entity, "entity_version": incumbent.version}])
    stop = threading.Event()
    load = threading.Thread(target=_query_until, args=(stack, stop), daemon=True)
    load.start()
    try:
        # A first step long enough to stay RUNNING (holding, its gates passing) while the page is read.
        plan = {"steps": [{"traffic_percentage": 50, "min_duration_s": 600, "min_requests": 5}, 100],
                "gates": {"max_error_rate_increase": 0.5, "p99_latency_slack_ms": 5000}}
        reply = stack.api("PUT", f"/api/2.0/serving-endpoints/{NAME}/config",
                          json={"served_entities": [{**entity, "entity_version": candidate.version}],
                                "rollout_plan": plan})
        assert reply.status_code == 200, reply.text

        def judged():
            rollout = stack.api("GET", f"/api/2.0/serving-endpoints/{NAME}/rollout").json()["rollout"]
            judgement = rollout["last_judgement"]
            return rollout["phase"] == "RUNNING" and judgement and judgement["candidate"]["requests"] >= 5
        wait_for(judged, timeout_s=240, what="the rollout to run and judge its first step")

        def history_s() -> float:
            judgements = stack.api("GET", f"/api/2.0/serving-endpoints/{NAME}/rollout").json()["judgements"]
            return (judgements[-1]["timestamp"] - judgements[0]["timestamp"]) / 1000 if judgements else 0.0
        # Judgements over 8 s before the page opens: on its first load its charts span them (a page that began
        # at its own opening would span one refresh, 1.5 s).
        wait_for(lambda: history_s() >= 8, timeout_s=60, what="8 s of judgements")

        sign_in(page, stack)
        page.goto(stack.url + f"/ui/#/endpoints/{NAME}")
        card = page.locator("#rollout")
        span = card.locator("figure[data-chart='rate'] text[data-span-s]")
        expect(span).to_have_count(1)   # the first drawing
        assert int(span.get_attribute("data-span-s")) >= 7, span.get_attribute("data-span-s")
        expect(card.locator("#rollout-phase")).to_have_text("RUNNING")
        expect(card.locator("#rollout-gates")).to_contain_text("error rate at most 50.0% above the serving config's")
        expect(card.locator("#rollout-decision")).to_contain_text(re.compile(r"HOLD after [\d.]+ s of step 1: "
                                                                             r"step 1: gates pass; \d+ of 600 s"))
        for chart in ("rate", "errorRate", "p99"):
            for side in ("candidate", "incumbent"):
                # A drawn line (two points at least, so an L segment), not the "collecting judgements" note.
                expect(card.locator(f"figure[data-chart='{chart}'] path[data-series='{side}']")).to_have_attribute(
                    "d", re.compile(r"^M[\d.]+,[\d.]+L"))
        expect(card.locator("#rollout-charts [data-side]")).to_have_text(["New config", "Serving config"])
        screenshot(page, "21-endpoint-rollout")
        assert page.errors == []
    finally:
        stop.set()
        load.join(60)
        stack.api("POST", f"/api/2.0/serving-endpoints/{NAME}/rollout/abort")
        stack.api("DELETE", f"/api/2.0/serving-endpoints/{NAME}")


def _judgement(step: int, window_s: float, candidate: tuple[int, int], incumbent: tuple[int, int]) -> dict:
    return {"step": step, "window_s": window_s, "decision": "HOLD", "reason": "",
            "candidate": {"requests": candidate[0], "errors": candidate[1], "p99_latency_ms": 25.0},
            "incumbent": {"requests": incumbent[0], "errors": incumbent[1], "p99_latency_ms": 10.0}}


def test_the_charts_series_are_differences_of_judgements_within_a_step(tmp_path):
    """metrics.js's RolloutHistory, in Node: each judgement counts from its step's start."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the browser test above covers the charts where Chromium runs")
    reads = [(1000, _judgement(1, 2.0, (10, 1), (90, 0))),
             (1500, _judgement(1, 2.0, (10, 1), (90, 0))),      # the same judgement read again: no new point
             (2000, _judgement(1, 4.0, (30, 1), (270, 9))),
             (3000, _judgement(2, 1.0, (5, 0), (5, 0))),        # a new step: counted from its start
             (4000, _judgement(1, 4.0, (30, 1), (270, 9)))]     # paused: the judgement of an earlier step, ignored
    script = tmp_path / "run.mjs"
    script.write_text(f"""
import {{ RolloutHistory }} from {json.dumps(METRICS_JS.as_uri())};
const history = new RolloutHistory(2);
for (const [at, judgement] of {json.dumps(reads)}) history.add(at, judgement);
console.log(JSON.stringify({{ candidate: history.series('candidate'), incumbent: history.series('incumbent') }}));
""")
    series = json.loads(subprocess.run([node, str(script)], capture_output=True, text=True, check=True,
                                       timeout=30).stdout)
    assert series["candidate"] == {"rate": [[1000, 5], [2000, 10], [3000, 5]],
                                   "errorRate": [[1000, 10], [2000, 0], [3000, 0]],
                                   "p99": [[1000, 25], [2000, 25], [3000, 25]]}
    assert series["incumbent"]["rate"] == [[1000, 45], [2000, 90], [3000, 5]]
    assert series["incumbent"]["errorRate"] == [[1000, 0], [2000, 5], [3000, 0]]


def test_a_full_history_keeps_its_first_and_latest_judgements(tmp_path):
    """metrics.js's RolloutHistory, in Node: full, every other judgement goes, so the charts still start at the
    rollout's start; `latest` is the control plane's time of the newest one (to read only newer ones)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    reads = [(1000 * i, {**_judgement(1, float(i), (i, 0), (i, 0)), "timestamp": 1000 * i}) for i in range(1, 8)]
    script = tmp_path / "run.mjs"
    script.write_text(f"""
import {{ RolloutHistory }} from {json.dumps(METRICS_JS.as_uri())};
const history = new RolloutHistory(2, 4);
const empty = history.latest;
for (const [at, judgement] of {json.dumps(reads)}) history.add(at, judgement);
console.log(JSON.stringify({{ empty, latest: history.latest, at: history.samples.map((s) => s.at) }}));
""")
    out = json.loads(subprocess.run([node, str(script)], capture_output=True, text=True, check=True,
                                    timeout=30).stdout)
    assert out["empty"] is None and out["latest"] == 7000
    assert out["at"][0] == 1000 and out["at"][-1] == 7000 and len(out["at"]) <= 4, out
