"""Model code runs sandboxed: a custom pyfunc that tries, while loading and while predicting, to read the
platform's master key, podium.json and databases, to write outside its own directory, to change a file's
mode, to run `id`, and to read or signal its parent, is refused each (and still serves). Both ways a local
replica starts are covered: forked from the warm template, and a fresh process (a served entity with
environment_vars). The exploit of the environment_vars that reach an interpreter's start is refused at
create, naming the variable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pandas as pd
import pytest

from tests.support.models import use_registry

pytestmark = pytest.mark.stack

REPO_ROOT = Path(__file__).resolve().parents[2]
PROBE_FILE = Path(__file__).resolve().parent.parent / "support" / "sandbox_model.py"


@pytest.fixture(scope="module")
def probe_model(stack, tmp_path_factory) -> str:
    import mlflow

    use_registry(stack.info)
    data_dir = Path(stack.data_dir)
    secrets = [data_dir / "podium.json", data_dir / "keys" / "master-key.json",
               *sorted(p for p in data_dir.rglob("*") if p.suffix in (".db", ".sqlite", ".sqlite3"))]
    assert len(secrets) >= 3, secrets   # the key, podium.json and at least one database
    workdir = tmp_path_factory.mktemp("probe")
    outside = workdir / f"escape-{uuid.uuid4().hex}"
    targets = workdir / "targets.json"
    targets.write_text(json.dumps({"data_dir": str(data_dir), "secrets": [str(p) for p in secrets],
                                   "outside_file": str(outside)}))
    with mlflow.start_run():
        logged = mlflow.pyfunc.log_model(name="model", python_model=str(PROBE_FILE),
                                         artifacts={"targets": str(targets)}, pip_requirements=["pandas"],
                                         registered_model_name="main.default.sandbox_probe")
    return str(logged.registered_model_version)


def _probe(stack, name: str) -> dict:
    reply = stack.api("POST", f"/serving-endpoints/{name}/invocations",
                      json={"dataframe_split": pd.DataFrame({"x": [1]}).to_dict(orient="split")})
    assert reply.status_code == 200, reply.text
    return json.loads(reply.json()["predictions"][0])


@pytest.mark.parametrize("environment_vars", [
    pytest.param({}, id="forked from the warm template"),
    pytest.param({"PROBE_GREETING": "hello"}, id="a fresh process"),
])
def test_model_code_is_refused_what_the_platform_keeps(stack, probe_model, environment_vars):
    name = f"sandbox-{'fresh' if environment_vars else 'fork'}"
    stack.serve(name, [{"entity_name": "main.default.sandbox_probe", "entity_version": probe_model,
                        "workload_size": "Small", "scale_to_zero_enabled": False,
                        "environment_vars": environment_vars}])
    try:
        outcomes = _probe(stack, name)
        for phase in ("load", "predict"):
            seen = outcomes[phase]
            attempts = {k: v for k, v in seen.items() if k not in ("uid", "write scratch")}
            assert attempts and all(v.startswith("refused") for v in attempts.values()), (phase, seen)
            assert seen["write scratch"].startswith("allowed"), (phase, seen)   # its own directory only
            assert {"read podium.json", "read keys/master-key.json", "spawn id", "write outside"} <= seen.keys()
        assert json.loads((Path(stack.data_dir) / "podium.json").read_text())["admin_token"]
        assert not (Path(stack.data_dir) / "pwned").exists()
    finally:
        stack.api("DELETE", f"/api/2.0/serving-endpoints/{name}")


def test_interpreter_start_variables_are_refused_at_create(stack, probe_model, tmp_path):
    exploit = {"PYTHONWARNINGS": "all:0:antigravity.x:0:0",
               "BROWSER": f'/bin/sh -c "(id; cat {stack.data_dir}/podium.json) > {tmp_path}/out" #%s'}
    reply = stack.api("POST", "/api/2.0/serving-endpoints", json={"name": "sandbox-exploit", "config": {
        "served_entities": [{"entity_name": "main.default.sandbox_probe", "entity_version": probe_model,
                             "workload_size": "Small", "scale_to_zero_enabled": False,
                             "environment_vars": exploit}]}})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error_code"] == "INVALID_PARAMETER_VALUE" and "PYTHONWARNINGS" in reply.json()["message"]
    for name in ("LD_PRELOAD", "PODIUM_WORKER_CALLER_TOKEN_SHA256", "PYTHONPATH"):
        reply = stack.api("POST", "/api/2.0/serving-endpoints", json={"name": "sandbox-exploit", "config": {
            "served_entities": [{"entity_name": "main.default.sandbox_probe", "entity_version": probe_model,
                                 "environment_vars": {name: "x"}}]}})
        assert reply.status_code == 400 and name in reply.json()["message"], reply.text
    assert not (tmp_path / "out").exists()


_CONFINED_REPLICA = """
import json, os, sys
from pathlib import Path
from services.worker import sandbox

data_dir, model, scratch = (Path(a) for a in sys.argv[1:4])
sandbox.interpreter_paths = lambda: []   # its Python may live under /root here; the check is told it does not


def attempt(action):
    try:
        action()
    except OSError as exc:
        return f"refused {exc}"
    return "allowed"


confinement = sandbox.confine(model_path=str(model), scratch_dir=str(scratch), max_processes=64)
outcomes = {"pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
            "model": (Path(confinement.model_path) / "MLmodel").read_text()}
for name in ("podium.json", "keys/master-key.json", "mlflow.db"):
    outcomes[name] = attempt(lambda n=name: (data_dir / n).read_text())
outcomes["write scratch"] = attempt(lambda: (scratch / "tmp" / "x").write_text("x"))
outcomes["write data dir"] = attempt(lambda: (data_dir / "pwned").write_text("x"))
outcomes["setuid 0"] = attempt(lambda: os.setuid(0))
print(json.dumps(outcomes))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="a uid of its own needs root")
def test_a_root_platform_gives_each_replica_a_uid_of_its_own(tmp_path):
    """The confinement a root platform gives a replica when its Python is readable by other uids: a fresh
    interpreter (single-threaded, as a replica is when it confines itself) confines itself and reports what
    it can still do with the modules it has already imported."""
    data_dir = tmp_path / "data"
    (data_dir / "keys").mkdir(parents=True)
    model = data_dir / "cache" / "models" / "abc"
    model.mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    for name in ("podium.json", "keys/master-key.json", "mlflow.db"):
        (data_dir / name).write_text("secret")
    os.chmod(data_dir / "mlflow.db", 0o644)   # even a database left world-readable: the directory is closed
    os.chmod(data_dir, 0o700)
    scratch = Path(tempfile.mkdtemp(prefix="podium-test-scratch-"))   # where the scaler makes them: /tmp
    try:
        replica = subprocess.run([sys.executable, "-c", _CONFINED_REPLICA, str(data_dir), str(model), str(scratch)],
                                 capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert replica.returncode == 0, replica.stderr
    outcomes = json.loads(replica.stdout.strip().splitlines()[-1])
    assert outcomes["uid"] == outcomes["gid"] == 2_000_000_000 + outcomes["pid"] and outcomes["groups"] == []
    assert outcomes["model"] == "flavors: {}\n"           # through its scratch directory
    assert outcomes["write scratch"] == "allowed"
    for attempt in ("podium.json", "keys/master-key.json", "mlflow.db", "write data dir", "setuid 0"):
        assert outcomes[attempt].startswith("refused"), (attempt, outcomes)
