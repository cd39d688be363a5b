"""`podium endpoints query` with `"stream": true`: the answer printed as the server-sent events arrive."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from podium.cli import exits
from tests.support.cli import REPO_ROOT, TARGET_VARS, podium
from tests.support.external import create_external_endpoint, external_entity

pytestmark = pytest.mark.stack

NAME = "cli-chat"


@pytest.fixture(scope="module")
def chat_endpoint(stack, fake_providers):
    create_external_endpoint(stack, NAME, external_entity(fake_providers, "openai", "llm/v1/chat"))
    yield NAME
    stack.api("DELETE", f"/api/2.0/serving-endpoints/{NAME}")


def _chat(text: str) -> str:
    return json.dumps({"messages": [{"role": "user", "content": text}], "stream": True})


def test_streamed_chat_prints_the_text_and_who_served_it(stack, chat_endpoint, tmp_path):
    result = podium("endpoints", "query", NAME, _chat("stream me some words"), home=tmp_path, data_dir=stack.data_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "echo: stream me some words\n"
    assert "served by gpt-4o-mini in" in result.stderr and "first event in" in result.stderr


def test_streamed_chat_as_json_lines(stack, chat_endpoint, tmp_path):
    result = podium("endpoints", "query", NAME, _chat("one two"), "--json", home=tmp_path, data_dir=stack.data_dir)
    assert result.returncode == 0, result.stderr
    chunks = [json.loads(line) for line in result.stdout.splitlines()]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "echo: one two"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert result.stderr == ""   # --json: nothing for people mixed in


def test_a_failure_mid_stream_exits_non_zero_with_the_reason(stack, chat_endpoint, tmp_path):
    result = podium("endpoints", "query", NAME, _chat("__midstream_error__"), home=tmp_path, data_dir=stack.data_dir)
    assert result.returncode == exits.API_ERROR
    assert result.stdout.startswith("echo:") and "Error: the stream failed: model crashed" in result.stderr


def test_words_are_printed_before_the_answer_ends(stack, chat_endpoint, fake_providers, tmp_path):
    # The provider sends one word, then holds the rest until released: the CLI must show that word meanwhile.
    env = {k: v for k, v in os.environ.items() if k not in TARGET_VARS}
    env.update(HOME=str(tmp_path), PODIUM_DATA_DIR=str(stack.data_dir), PYTHONPATH=str(REPO_ROOT))
    process = subprocess.Popen([sys.executable, "-m", "podium.cli", "endpoints", "query", NAME, _chat("__hold__")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert process.stdout.read(len("echo:")) == b"echo:"
        fake_providers.release.set()
        rest, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0 and rest == b" __hold__\n"
    assert fake_providers.released_in_time[-1] is True
