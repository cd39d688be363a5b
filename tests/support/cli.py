"""Running the `podium` command as a user would: a subprocess, this checkout first on the path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TARGET_VARS = ("PODIUM_HOST", "PODIUM_TOKEN", "PODIUM_PROFILE", "PODIUM_CONFIG_FILE", "DATABRICKS_HOST",
               "DATABRICKS_TOKEN", "DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CONFIG_FILE", "PODIUM_DATA_DIR")


def podium(*args: str, home: Path, data_dir: Path | None = None, env: dict[str, str] | None = None,
           stdin: str | None = None, timeout_s: float = 240.0) -> subprocess.CompletedProcess:
    """`python -m podium.cli ARGS` with HOME (so ~/.databrickscfg and ~/.podium) under the test's control."""
    full_env = {k: v for k, v in os.environ.items() if k not in TARGET_VARS}
    full_env["HOME"] = str(home)
    full_env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    if data_dir is not None:
        full_env["PODIUM_DATA_DIR"] = str(data_dir)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "podium.cli", *args], capture_output=True, text=True, env=full_env,
                          input=stdin if stdin is not None else "", timeout=timeout_s)


def json_error(result: subprocess.CompletedProcess) -> dict:
    """The JSON error object `--json` writes on stderr's last line."""
    return json.loads(result.stderr.strip().splitlines()[-1])
