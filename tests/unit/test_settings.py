"""Settings in one place: one naming rule, one declaration per name, unknown PODIUM_* names refused at start,
environments that `podium up` and the scaler build named by the classes, and docs/settings.md generated
from them."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from podium import launcher, settings_doc
from podium.certificates import Certificates
from services.common.settings import (
    TOOL_NAMES, PodiumSettings, describe_unknown, env_names, known_names, settings_classes, unknown_names,
)
from services.control_plane.settings import ControlPlaneSettings
from services.router.settings import RouterSettings
from services.scaler.replica_specs import worker_environment
from services.scaler.runtime import WorkerSpec
from services.scaler.settings import ScalerSettings
from services.worker.settings import WorkerSettings

REPO = Path(__file__).resolve().parents[2]
QUOTED_NAME = re.compile(r"""(?<=["'])PODIUM_[A-Z0-9_]*[A-Z0-9](?=["'=])""")


def class_names(settings_class) -> set[str]:
    return {n for name, field in settings_class.model_fields.items() for n in env_names(field, name)}


def test_docs_settings_md_is_generated_from_the_classes():
    assert (REPO / "docs" / "settings.md").read_text() == settings_doc.render(), \
        "docs/settings.md is out of date: run python -m podium.settings_doc"


def test_every_podium_name_follows_the_rule_and_is_declared_once():
    declared: dict[str, set[type]] = {}
    for settings_class in settings_classes().values():
        assert issubclass(settings_class, PodiumSettings)
        for klass in settings_class.__mro__:
            own = getattr(klass, "__pydantic_fields__", {})
            inherited = set().union(*(getattr(b, "__pydantic_fields__", {}).keys() for b in klass.__bases__))
            for name in own.keys() - inherited:
                field = own[name]
                primary = env_names(field, name)[0]
                if primary.startswith("PODIUM_"):
                    assert primary == f"PODIUM_{name.upper()}", (klass.__name__, name)
                    declared.setdefault(primary, set()).add(klass)
                assert field.description, f"{klass.__name__}.{name} has no docstring (docs/settings.md needs one)"
    twice = {name: sorted(c.__name__ for c in classes) for name, classes in declared.items() if len(classes) > 1}
    assert not twice, f"declare a shared field once, in services/common/settings.py: {twice}"


def test_tool_names_are_not_settings():
    assert not TOOL_NAMES.keys() & set().union(*map(class_names, settings_classes().values()))


@pytest.mark.parametrize("environ, unknown", [
    pytest.param({"PODIUM_ROUTER_PORT": "1", "HOME": "/"}, [], id="a setting"),
    pytest.param({"PODIUM_WORKER_TOKEN": "t"}, [], id="another service's setting: one environment is shared"),
    pytest.param({"PODIUM_TOKEN": "t", "PODIUM_TOKENS_FILE": "f"}, [], id="read by the CLI and the entrypoint"),
    pytest.param({"podium_queue_limit": "3"}, [], id="any case, as pydantic-settings reads it"),
    pytest.param({"PODIUM_ROUTR_PORT": "1", "PODIUM_QUEUE_LIMIT": "3"}, ["PODIUM_ROUTR_PORT"], id="misspelt"),
    pytest.param({"MY_PODIUM_THING": "1", "REDIS_URL": "x"}, [], id="not Podium's prefix"),
])
def test_unknown_names(environ, unknown):
    assert unknown_names(environ) == unknown


def test_unknown_name_is_described_with_the_closest_known_one():
    message = describe_unknown(["PODIUM_SCALER_INTERVAL"])
    assert "PODIUM_SCALER_INTERVAL" in message and "did you mean PODIUM_SCALER_INTERVAL_S?" in message
    assert describe_unknown([]) == ""


def test_env_for_refuses_a_field_the_class_lacks():
    with pytest.raises(TypeError, match="router_prot"):
        RouterSettings.env_for(router_prot=1)
    assert ControlPlaneSettings.env_for(control_plane_port=0, master_key=None) == {"PODIUM_CONTROL_PLANE_PORT": "0"}


def _values(tmp_path: Path) -> launcher.StackValues:
    certificates = Certificates(tmp_path / "ca.pem", (tmp_path / "internal.pem", tmp_path / "internal.key"),
                                (tmp_path / "worker.pem", tmp_path / "worker.key"),
                                (tmp_path / "router.pem", tmp_path / "router.key"))
    return launcher.StackValues(tmp_path, "redis://r:6379/0", "sqlite:///t.db", "sqlite:///r.db", "internal",
                                "worker", "admin", master_key="k" * 44, certificates=certificates,
                                router_tls=certificates.router, supervisor_pid=42)


def _read_back(settings_class, env: dict[str, str], monkeypatch, **init):
    for name in list(os.environ):
        if name.upper().startswith("PODIUM_"):
            monkeypatch.delenv(name)
    assert not unknown_names(env)
    own = {n for n in env if n.startswith("PODIUM_")}
    assert own <= class_names(settings_class), own - class_names(settings_class)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return settings_class(**init)


def test_launcher_child_environments_are_named_by_each_service_class(tmp_path, monkeypatch):
    values = _values(tmp_path)
    control_plane = _read_back(ControlPlaneSettings, launcher.control_plane_env(values), monkeypatch)
    assert (control_plane.control_plane_port, control_plane.bootstrap_admin_token.get_secret_value()) == (0, "admin")
    assert control_plane.tls_cert_file == tmp_path / "internal.pem" and control_plane.data_dir == tmp_path
    router = _read_back(RouterSettings, launcher.router_env(values, "cp:1", "0.0.0.0", 0, 0), monkeypatch)
    assert (router.control_plane_target, router.router_host, router.redis_url) == ("cp:1", "0.0.0.0",
                                                                                   "redis://r:6379/0")
    assert router.worker_token.get_secret_value() == "worker" and router.router_tls_key_file == tmp_path / "router.key"
    assert (router.registry_uri, router.tracking_uri) == ("sqlite:///r.db", "sqlite:///t.db")
    scaler = _read_back(ScalerSettings, launcher.scaler_env(values, "cp:1"), monkeypatch)
    assert (scaler.supervisor_pid, scaler.worker_tls_cert_file) == (42, tmp_path / "worker.pem")
    assert scaler.internal_token.get_secret_value() == "internal" and len(scaler.worker_caller_token_sha256) == 64
    # Credentials go only where they are read: the master key to the two services that seal with it.
    assert control_plane.master_key.get_secret_value() == router.master_key.get_secret_value() == "k" * 44
    assert not {"PODIUM_MASTER_KEY", "PODIUM_WORKER_TOKEN", "PODIUM_BOOTSTRAP_ADMIN_TOKEN"} & \
        launcher.scaler_env(values, "cp:1").keys()


def test_worker_environments_the_scaler_builds_are_worker_settings(monkeypatch):
    base = WorkerSettings.env_for(worker_supervisor_pid=7, registry_uri="http://mlflow:5000")
    spec = WorkerSpec("key", "models:/iris/1", {"PODIUM_MODEL_FLAG": "1"}, max_batch_size=8, max_batch_wait_ms=1.5)
    env = worker_environment({**base, **spec.worker_settings()}, spec.environment_vars, spec.model_uri, 8500,
                             gpu_count=0)   # as the Docker and Kubernetes runtimes call it
    # The served entity's own variables may have any name, which is why a worker refuses none.
    assert unknown_names(env) == ["PODIUM_MODEL_FLAG"]
    settings = _read_back(WorkerSettings, {k: v for k, v in env.items() if k not in spec.environment_vars},
                          monkeypatch)
    assert (settings.worker_model_uri, settings.worker_port, settings.worker_max_batch_size) == \
        ("models:/iris/1", 8500, 8)
    assert settings.worker_max_batch_wait_ms == 1.5 and settings.registry_uri == "http://mlflow:5000"
    assert settings.worker_supervisor_pid == 0   # another pid namespace: the scaler ends a container


def test_podium_names_in_code_and_deploy_files_are_known():
    known = known_names()
    unknown = {}
    for path in [*(REPO / "services").rglob("*.py"), *(REPO / "podium").rglob("*.py"), *(REPO / "bench").rglob("*.py")]:
        names = set(QUOTED_NAME.findall(path.read_text())) - known
        if names:
            unknown[str(path.relative_to(REPO))] = names
    for path in (REPO / "deploy").rglob("*"):
        if path.is_file() and path.suffix in {".yml", ".yaml", ".md", ".sh", ""}:
            names = set(re.findall(r"PODIUM_[A-Z0-9_]*[A-Z0-9]", path.read_text())) - known
            if names:
                unknown[str(path.relative_to(REPO))] = names
    assert not unknown
