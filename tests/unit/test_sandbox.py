"""The sandbox's pure parts: which environment_vars a served entity may set, the environments and specs
replicas get (Podium's variables win), the container and pod sandboxes, the Landlock rights. The sandbox
itself, confining a real replica, is tests/stack/test_sandbox.py."""

from __future__ import annotations

import importlib.util
import os

import pytest

from services.common.errors import InvalidParameter
from services.common.model_environment import allowed_environment_vars, environment_var_refusal
from services.common.settings import env_names
from services.control_plane.spec import validate_create
from services.scaler.replica_specs import (
    SCRATCH_MOUNT, WORKER_UID, ContainerOptions, KubernetesOptions, container_spec, k8s_deployment,
    worker_environment,
)
from services.scaler.runtime import WorkerSpec
from services.worker import sandbox, syscall_filter
from services.worker.settings import WorkerSettings


@pytest.mark.parametrize("name, refused", [
    ("PYTHONWARNINGS", True), ("PYTHONPATH", True), ("PYTHONSTARTUP", True), ("pythonhome", True),
    ("LD_PRELOAD", True), ("LD_LIBRARY_PATH", True), ("GLIBC_TUNABLES", True), ("GCONV_PATH", True),
    ("OPENSSL_CONF", True), ("SSLKEYLOGFILE", True), ("PODIUM_WORKER_CALLER_TOKEN_SHA256", True),
    ("PODIUM_WORKER_SANDBOX", True), ("MLFLOW_TRACKING_URI", True), ("CUDA_VISIBLE_DEVICES", True),
    ("", True), ("A=B", True),
    # A model's own settings: after the sandbox, model code could set these itself anyway.
    ("BROWSER", False), ("OMP_NUM_THREADS", False), ("PODIUM_TEST_GREETING", False), ("HF_HOME", False),
    ("TOKENIZERS_PARALLELISM", False), ("MY_PYTHON_FLAG", False),
])
def test_environment_var_refusal(name, refused):
    assert (environment_var_refusal(name) is not None) is refused


def test_every_worker_setting_is_refused_as_an_environment_var():
    for name, field in WorkerSettings.model_fields.items():
        for variable in env_names(field, name):
            assert environment_var_refusal(variable) is not None, variable


def test_the_reported_exploit_is_refused_at_create_naming_the_variable():
    body = {"name": "e", "config": {"served_entities": [{
        "entity_name": "c.s.m", "entity_version": "1", "workload_size": "Small", "scale_to_zero_enabled": False,
        "environment_vars": {"PYTHONWARNINGS": "all:0:antigravity.x:0:0", "BROWSER": "/bin/sh -c id #%s"}}]}}
    with pytest.raises(InvalidParameter, match=r"environment_vars\.PYTHONWARNINGS is reserved"):
        validate_create(body)
    body["config"]["served_entities"][0]["environment_vars"] = {"BROWSER": "x", "OMP_NUM_THREADS": "2"}
    assert validate_create(body)["config"]["served_entities"][0]["environment_vars"] == \
        {"BROWSER": "x", "OMP_NUM_THREADS": "2"}


def test_podium_variables_win_and_refused_names_never_reach_a_container():
    base = WorkerSettings.env_for(worker_caller_token_sha256="a" * 64, registry_uri="http://mlflow:5000")
    stored = {"PODIUM_WORKER_CALLER_TOKEN_SHA256": "b" * 64, "PODIUM_REGISTRY_URI": "sqlite:////x.db",
              "PYTHONWARNINGS": "all:0:antigravity.x:0:0", "LD_PRELOAD": "/x.so", "GREETING": "hi"}
    env = worker_environment(base, stored, "models:/m/1", 8500, 0, memory_limit_bytes=1 << 33)
    assert env["PODIUM_WORKER_CALLER_TOKEN_SHA256"] == "a" * 64 and env["PODIUM_REGISTRY_URI"] == "http://mlflow:5000"
    assert "PYTHONWARNINGS" not in env and "LD_PRELOAD" not in env and env["GREETING"] == "hi"
    assert env["PODIUM_WORKER_SCRATCH_DIR"] == SCRATCH_MOUNT and env["PODIUM_WORKER_MEMORY_LIMIT_BYTES"] == str(1 << 33)
    assert allowed_environment_vars(stored) == {"GREETING": "hi"}


@pytest.mark.parametrize("max_concurrency, gpu_count, limit", [
    (4, 0, 8 << 30), (16, 0, 32 << 30), (64, 0, 128 << 30), (0, 0, 4 << 30), (1, 0, 4 << 30), (4, 1, 0),
])
def test_memory_limit_from_the_workload_size(max_concurrency, gpu_count, limit):
    assert WorkerSpec("k", "models:/m/1", {}, gpu_count, max_concurrency=max_concurrency).memory_limit_bytes() == limit


def test_container_is_sandboxed():
    options = ContainerOptions("podium:latest", "podium-workers", volumes=("tls:/tls:rw",))
    spec = container_spec("r1", "k", "models:/m/1", {}, 0, options, memory_limit_bytes=1 << 33)
    assert spec["command"] == ["python", "-m", "services.worker.sandbox"]
    assert spec["user"] == f"{WORKER_UID}:{WORKER_UID}" and spec["read_only"] is True
    assert spec["cap_drop"] == ["ALL"] and spec["security_opt"] == ["no-new-privileges:true"]
    assert spec["mem_limit"] == 1 << 33 and spec["pids_limit"] > 0
    assert SCRATCH_MOUNT in spec["tmpfs"] and f"uid={WORKER_UID}" in spec["tmpfs"][SCRATCH_MOUNT]
    assert spec["volumes"] == {"tls": {"bind": "/tls", "mode": "ro"}}   # no data volume, nothing writable
    assert "mem_limit" not in container_spec("r1", "k", "models:/m/1", {}, 0, options)


def test_pod_is_sandboxed():
    deployment = k8s_deployment("k" * 20, "models:/m/1", {}, 0, 1, KubernetesOptions("podium:latest"),
                                memory_limit_bytes=1 << 33)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    context = container["securityContext"]
    assert context["runAsNonRoot"] and context["runAsUser"] == WORKER_UID
    assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]} and context["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"]
    assert container["resources"]["limits"]["memory"] == str(1 << 33)
    assert {"name": "scratch", "mountPath": SCRATCH_MOUNT} in container["volumeMounts"]
    assert {"emptyDir"} <= pod["volumes"][0].keys()


@pytest.mark.parametrize("abi, has_refer, has_truncate, has_ioctl", [
    (1, False, False, False), (2, True, False, False), (3, True, True, False), (5, True, True, True),
    (7, True, True, True),
])
def test_landlock_handles_every_right_the_kernel_knows(abi, has_refer, has_truncate, has_ioctl):
    handled = sandbox.handled_access(abi)
    assert handled & sandbox.EXECUTE and handled & sandbox.WRITE_FILE and handled & sandbox.MAKE_SYM
    assert (bool(handled & sandbox.REFER), bool(handled & sandbox.TRUNCATE), bool(handled & sandbox.IOCTL_DEV)) == \
        (has_refer, has_truncate, has_ioctl)


def test_landlock_rules_write_only_the_scratch_and_execute_only_the_interpreter():
    rules = sandbox.landlock_rules("/models/abc", "/tmp/podium-r1", "cpu")
    writable = {path for path, rights in rules if rights & (sandbox.WRITE_FILE | sandbox.MAKE_REG)}
    assert writable == {"/tmp/podium-r1", "/dev/shm", "/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"}
    executable = [path for path, rights in rules if rights & sandbox.EXECUTE]
    assert executable and all("python" in p or "ld-linux" in p for p in executable)
    assert ("/models/abc", sandbox.READ) in rules and not any(p == "/proc" for p, _ in rules)
    assert not any(p == "/dev" for p, _ in rules)   # devices only for a GPU replica
    assert any(p == "/dev" for p, _ in sandbox.landlock_rules("/m", "/s", "cuda"))


def _run_filter(program, nr: int, arch: int, arg0: int = 0) -> int:
    """A classic-BPF interpreter for the instructions `seccomp_program` emits (ld abs, jeq, jge, ret)."""
    data = {0: nr, 4: arch, 16: arg0}
    accumulator, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code == 0x20:
            accumulator = data[k]
        elif code in (0x15, 0x35):
            hit = accumulator == k if code == 0x15 else accumulator >= k
            pc += jt if hit else jf
        elif code == 0x06:
            return k
        pc += 1


@pytest.mark.parametrize("may_change_modes, nr, arch, arg0, allowed", [
    (False, 90, 0xC000003E, 0, False),             # chmod, a replica that stays uid 0 (or the platform's uid)
    (True, 90, 0xC000003E, 0, True),               # chmod of its own files, a replica with a uid of its own
    (True, 250, 0xC000003E, 0, False),             # keyctl
    (True, 41, 0xC000003E, 1, False),              # socket(AF_UNIX)
    (True, 41, 0xC000003E, 2, True),               # socket(AF_INET)
    (True, 53, 0xC000003E, 1, True),               # socketpair(AF_UNIX): asyncio's self-pipe
    (True, 0, 0xC000003E, 0, True),                # read
    (True, 0x40000000 | 90, 0xC000003E, 0, False),  # the x32 ABI
    (True, 0, 0x40000003, 0, False),               # another architecture (i386)
])
def test_seccomp_filter(may_change_modes, nr, arch, arg0, allowed):
    verdict = _run_filter(syscall_filter.seccomp_program("x86_64", may_change_modes), nr, arch, arg0)
    assert verdict == (0x7FFF0000 if allowed else 0x00050001)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another uid needs root")
def test_a_replica_with_its_own_uid_reads_its_model_through_its_scratch(tmp_path):
    data_dir = tmp_path / "data"
    model = data_dir / "cache" / "models" / "abc"
    (model / "artifacts").mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    (model / "artifacts" / "weights.json").write_text("{}")
    os.chmod(model / "MLmodel", 0o600)
    os.chmod(data_dir, 0o700)              # only the platform walks the data directory
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    readable = sandbox._open_model_to(model, scratch, 2_000_123_456)
    assert readable == scratch / "model"
    assert (readable / "artifacts" / "weights.json").read_text() == "{}"
    assert os.stat(readable / "MLmodel").st_mode & 0o004                  # readable by the replica's uid
    assert os.stat(readable / "artifacts").st_uid == 2_000_123_456        # its directories are its own
    assert not os.stat(readable / "MLmodel").st_mode & 0o002              # the model stays read-only


def test_the_template_imports_the_transformers_classes_the_flavor_names(tmp_path):
    """transformers imports pipelines and model classes lazily: the template looks up the ones MLmodel names
    (the package's own attributes only), so a forked replica does not pay for them."""
    import sys

    import yaml

    pytest.importorskip("transformers")
    from services.worker.template import import_flavor

    (tmp_path / "MLmodel").write_text(yaml.safe_dump({"flavors": {
        "python_function": {"loader_module": "mlflow.transformers"},
        "transformers": {"instance_type": "TextClassificationPipeline", "tokenizer_type": "os.system",
                         "pipeline_model_type": "BertForSequenceClassification"}}}))
    imported = import_flavor(tmp_path)
    assert imported == ["mlflow.transformers", "transformers", "transformers.pipeline",
                        "transformers.TextClassificationPipeline", "transformers.BertForSequenceClassification"]
    assert "transformers.pipelines" in sys.modules and "transformers.models.bert.modeling_bert" in sys.modules


@pytest.mark.parametrize("flavors, imported", [
    ({"python_function": {"loader_module": "mlflow.sklearn"}, "sklearn": {}},
     ["mlflow.sklearn", "sklearn"] + (["skops.io"] if importlib.util.find_spec("skops") else [])),
    ({"python_function": {"loader_module": "antigravity"}}, []),              # not MLflow's: never imported
    ({"python_function": {"loader_module": "mlflow.x; import os"}}, []),
    ({"python_function": {"loader_module": "mlflow.no_such_flavor"}}, []),
])
def test_the_template_imports_only_installed_flavor_modules(tmp_path, flavors, imported):
    import sys

    import yaml

    from services.worker.template import import_flavor

    (tmp_path / "MLmodel").write_text(yaml.safe_dump({"flavors": flavors}))
    assert import_flavor(tmp_path) == imported
    assert "antigravity" not in sys.modules
