"""The UI's metrics module (services/router/ui/static/metrics.js), run in Node on the router's real export."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from services.router.metrics import EndpointMetrics

METRICS_JS = Path(__file__).resolve().parents[3] / "services" / "router" / "ui" / "static" / "metrics.js"


def test_rates_and_latency_quantiles_from_two_samples(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the browser tests cover metrics.js where Chromium runs")
    metrics = EndpointMetrics()
    metrics.observe("e", "e-1", 200, 1.0)
    first = metrics.export("e").decode()
    for _ in range(98):
        metrics.observe("e", "e-1", 200, 12.0)
    metrics.observe("e", "e-1", 400, 3000.0)
    metrics.observe("e", "e-2", 500, 40.0)
    second = metrics.export("e", {"e-1": (3, 2), "e-2": (1, 0)}).decode()
    script = tmp_path / "run.mjs"
    script.write_text(f"""
import {{ parsePrometheus, MetricsHistory }} from {json.dumps(METRICS_JS.as_uri())};
const history = new MetricsHistory();
history.add(0, parsePrometheus({json.dumps(first)}));
history.add(2000, parsePrometheus({json.dumps(second)}));
const charts = Object.fromEntries(history.derive().map((c) => [c.title, c.points]));
console.log(JSON.stringify({{ ...charts, summary: history.summary() }}));
""")
    charts = json.loads(subprocess.run([node, str(script)], capture_output=True, text=True, check=True, timeout=30).stdout)
    assert charts["Requests / s"] == [[2000, 50]]          # 100 requests over 2 s, both served entities
    assert charts["4xx answers / s"] == [[2000, 0.5]]
    assert charts["5xx answers / s"] == [[2000, 0.5]]
    # 98 of the 100 in (10, 25] ms: p50 interpolates inside it; p99 falls in (25, 50].
    assert charts["Latency p50 (ms)"][0][1] == pytest.approx(10 + 15 * 50 / 98)
    assert charts["Latency p99 (ms)"] == [[2000, 50]]
    assert not any(title.endswith("_created") for title in charts)
    # The router's load gauges, summed over served entities (the second sample only: the first had none).
    assert charts["Queue depth"] == [[0, None], [2000, 2]] and charts["In flight"][-1] == [2000, 4]
    # The endpoints list's columns: over the whole window, the same figures as the one interval here.
    summary = charts["summary"]
    assert summary["rps"] == 50 and summary["seconds"] == 2
    assert summary["p50"] == pytest.approx(10 + 15 * 50 / 98) and summary["p99"] == 50
