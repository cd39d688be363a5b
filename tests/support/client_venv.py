"""The Python of a user's client environment (tests/support/client_requirements.txt): a venv of its own at
`.venv-clients/` in the checkout, built once and reused while the requirements file is unchanged.

The clients in it pin older openai/numpy than Podium does, so they cannot share Podium's venv; tests run small
scripts with this venv's python (`run_client`) and read what they print."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = Path(__file__).with_name("client_requirements.txt")
VENV = REPO / ".venv-clients"
INSTALL_TIMEOUT_S = 900.0


def requirements_hash() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def client_python() -> Path:
    """The venv's python, after building the venv if it is missing or was built from another requirements file."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    stamp = VENV / "podium-requirements.sha256"
    python = VENV / "bin" / "python"
    # Two test sessions on one checkout (xdist workers, a second terminal) build it once between them.
    with open(REPO / ".venv-clients.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        wanted = requirements_hash()
        if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
            return python
        shutil.rmtree(VENV, ignore_errors=True)
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=120)
        # Every package is pinned and every pin is a wheel: pip resolves nothing and builds nothing.
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--only-binary", ":all:", "-r", str(REQUIREMENTS)],
                       check=True, timeout=INSTALL_TIMEOUT_S)
        stamp.write_text(wanted + "\n")   # written last: a build cut short is rebuilt next time
        print(f"built {VENV} in {time.monotonic() - started:.0f} s", file=sys.stderr)
        return python


def run_client(script: str, env: dict[str, str] | None = None, timeout_s: float = 120.0):
    """Runs `script` with the client venv's python in a clean environment (no Podium on its path); returns the
    JSON value of each line it printed. Raises AssertionError with its stderr when it fails."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("PYTHON", "DATABRICKS_", "OPENAI_", "MLFLOW_", "VIRTUAL_ENV"))}
    clean.update(env or {})
    with tempfile.TemporaryDirectory(prefix="podium-client-") as cwd:   # whatever a client writes stays there
        result = subprocess.run([str(client_python()), "-c", textwrap.dedent(script)], capture_output=True,
                                text=True, timeout=timeout_s, env=clean, cwd=cwd)
    assert result.returncode == 0, f"client script failed ({result.returncode}):\n{result.stderr[-4000:]}"
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
