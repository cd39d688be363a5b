"""The UI's chat box reads MLflow agents (services/router/ui/static/sse.js), run in Node on what the agents of
tests/support/agent_code.py answer and stream in-process."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import agent_models

pytestmark = pytest.mark.stack

SSE_JS = Path(__file__).resolve().parents[2] / "services" / "router" / "ui" / "static" / "sse.js"
REQUESTS = {
    "responses": {"input": [{"role": "user", "content": "from the ui"}]},
    "chat_agent": {"messages": [{"role": "user", "content": "from the ui"}]},
    "chat_model": {"messages": [{"role": "user", "content": "from the ui"}]},
}


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> dict:
    import mlflow

    paths = {kind: tmp_path_factory.mktemp(kind) / "m" for kind in REQUESTS}
    for kind, path in paths.items():
        mlflow.pyfunc.save_model(str(path), python_model=str(agent_models.AGENT_CODE), model_config={"kind": kind},
                                 pip_requirements=["mlflow"])
    mlflow.tracing.disable()   # the agents trace each call: nothing to export from here
    try:
        out = {}
        for kind, request in REQUESTS.items():
            pyfunc = mlflow.pyfunc.load_model(str(paths[kind]))
            out[kind] = {"events": agent_models.in_process_stream(pyfunc, request),
                         "answer": json.loads(agent_models.scoring_server_answer(pyfunc, request)[1])}
    finally:
        mlflow.tracing.enable()
    return out


def test_chat_box_reads_agent_streams_and_answers(answers, tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the browser tests cover sse.js where Chromium runs")
    script = tmp_path / "run.mjs"
    script.write_text(f"""
import {{ answerText, chatDelta }} from {json.dumps(SSE_JS.as_uri())};
const answers = {json.dumps(answers)};
const out = {{}};
for (const [kind, got] of Object.entries(answers)) {{
  out[kind] = {{ streamed: got.events.map((e) => chatDelta(e).text).join(''), whole: answerText(got.answer) }};
}}
console.log(JSON.stringify(out));
""")
    result = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    read = json.loads(result.stdout)
    for kind in REQUESTS:
        assert read[kind] == {"streamed": "echo: from the ui", "whole": "echo: from the ui"}, kind
