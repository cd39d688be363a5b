"""The UI's server-sent-events reader (services/router/ui/static/sse.js), run in Node on the router's own events."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from services.router.external.sse import DONE, data_event, error_event

SSE_JS = Path(__file__).resolve().parents[3] / "services" / "router" / "ui" / "static" / "sse.js"


def test_events_split_across_reads_and_chat_deltas(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the browser tests cover sse.js where Chromium runs")
    chunk = {"choices": [{"index": 0, "delta": {"content": "echo:"}, "finish_reason": None}]}
    last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": {"completion_tokens": 2}}
    wire = (data_event(chunk) + data_event(last) + error_event("model crashed") + DONE).decode()
    cut = wire.index("\n\n") + 5   # the second event arrives in two reads
    script = tmp_path / "run.mjs"
    script.write_text(f"""
import {{ splitEvents, chatDelta }} from {json.dumps(SSE_JS.as_uri())};
const [first, rest] = splitEvents({json.dumps(wire[:cut])});
const [second, tail] = splitEvents(rest + {json.dumps(wire[cut:])});
const deltas = [...first, ...second].filter((d) => d !== '[DONE]').map((d) => chatDelta(JSON.parse(d)));
console.log(JSON.stringify({{ first: first.length, second: second.length, tail, deltas, done: second.at(-1) }}));
""")
    out = json.loads(subprocess.run([node, str(script)], capture_output=True, text=True, check=True, timeout=30).stdout)
    assert (out["first"], out["second"], out["tail"], out["done"]) == (1, 3, "", "[DONE]")
    assert out["deltas"][0] == {"text": "echo:", "finish": None, "usage": None}
    assert out["deltas"][1] == {"text": "", "finish": "stop", "usage": {"completion_tokens": 2}}
    assert out["deltas"][2] == {"text": "", "error": "model crashed"}
