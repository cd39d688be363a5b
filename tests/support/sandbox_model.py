"""A custom MLflow pyfunc model (logged from code) that tries, in load_context and in predict, what a
tenant's model code must not do on Podium, and answers with what it could do: one JSON object per row,
{"load": {attempt: outcome}, "predict": {...}}, each outcome "allowed ..." or "refused ...".

The paths to try come in its `targets` artifact (the platform's data directory, its key, databases and
podium.json), written by the test that logs it."""

from __future__ import annotations

import json
import os
import subprocess

import mlflow


def _attempt(action) -> str:
    try:
        result = action()
    except Exception as exc:  # noqa: BLE001 - what happened is the answer
        return f"refused {type(exc).__name__}: {exc}"[:200]
    return f"allowed {result!r}"[:200]


def probe(targets: dict) -> dict:
    data_dir = targets["data_dir"]
    outcomes = {"uid": str(os.getuid())}
    for path in targets["secrets"]:
        outcomes[f"read {os.path.relpath(path, data_dir)}"] = _attempt(lambda p=path: len(open(p, "rb").read()))
    outcomes["list data dir"] = _attempt(lambda: len(os.listdir(data_dir)))
    outcomes["write data dir"] = _attempt(lambda: open(os.path.join(data_dir, "pwned"), "w").write("x"))
    outcomes["write outside"] = _attempt(lambda: open(targets["outside_file"], "w").write("x"))
    outcomes["chmod podium.json"] = _attempt(lambda: os.chmod(os.path.join(data_dir, "podium.json"), 0o644))
    outcomes["spawn id"] = _attempt(lambda: subprocess.run(["id"], capture_output=True, timeout=10).stdout)
    outcomes["read parent environ"] = _attempt(lambda: len(open(f"/proc/{os.getppid()}/environ", "rb").read()))
    outcomes["signal parent"] = _attempt(lambda: os.kill(os.getppid(), 0))
    outcomes["write scratch"] = _attempt(
        lambda: open(os.path.join(os.environ.get("TMPDIR", "/tmp"), "mine"), "w").write("x"))
    return outcomes


class SandboxProbe(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        with open(context.artifacts["targets"]) as f:
            self.targets = json.load(f)
        self.at_load = probe(self.targets)

    def predict(self, context, model_input, params=None):
        answer = json.dumps({"load": self.at_load, "predict": probe(self.targets)})
        return [answer] * len(model_input)


mlflow.models.set_model(SandboxProbe())
