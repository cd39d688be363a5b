"""A misspelt PODIUM_* name stops a service, and `podium up`, before they start anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("PODIUM_")}
    return subprocess.run([sys.executable, *args], env={**clean, **env}, capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def test_a_service_refuses_an_unknown_name_at_start():
    done = _run(["-m", "services.control_plane"], PODIUM_CONTROL_PLANE_PROT="7070")
    assert done.returncode == 1
    assert "unknown setting PODIUM_CONTROL_PLANE_PROT" in done.stderr
    assert "did you mean PODIUM_CONTROL_PLANE_PORT?" in done.stderr


def test_podium_up_refuses_an_unknown_name_before_starting_anything(tmp_path):
    done = _run(["-m", "podium.cli", "up", "--data-dir", str(tmp_path), "--port", "0"], PODIUM_ROUTR_PORT="1")
    assert done.returncode == 1
    assert "unknown setting PODIUM_ROUTR_PORT" in done.stderr and "PODIUM_ROUTER_PORT" in done.stderr
    assert not (tmp_path / "podium.json").exists() and not (tmp_path / "logs").exists()
