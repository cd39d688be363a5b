"""deploy/kubernetes/*.yaml and deploy/docker-compose.yml, checked without a cluster or an engine: they
parse, their selectors, ports, Secrets and service accounts point at things that exist, and every PODIUM_*
variable they set is one the service it is given to reads (a misspelt setting is silently ignored)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import AliasChoices

from services.control_plane.settings import ControlPlaneSettings
from services.router.settings import RouterSettings
from services.scaler.settings import ScalerSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SETTINGS = {"control_plane": ControlPlaneSettings, "router": RouterSettings, "scaler": ScalerSettings}
# Secrets the operator creates (deploy/README.md) and the keys each must hold.
SECRETS = {"podium-tls", "podium-worker-tls", "podium-master-key", "podium-tokens", "podium-database"}
# Read by deploy/entrypoint.sh or the init step, not by a settings class.
ENTRYPOINT_VARS = {"PODIUM_TOKENS_FILE"}


def env_names(settings_class) -> set[str]:
    """Every environment variable a settings class reads."""
    prefix = settings_class.model_config.get("env_prefix", "")
    names = set()
    for name, field in settings_class.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(choice) for choice in alias.choices}
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def manifests() -> list[dict]:
    documents = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def by_kind(kind: str) -> list[dict]:
    return [d for d in manifests() if d["kind"] == kind]


def test_every_object_is_namespaced_and_named():
    for document in manifests():
        assert document["apiVersion"] and document["metadata"]["name"]
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "podium", document["metadata"]["name"]


def test_deployment_selectors_match_their_pods():
    for deployment in by_kind("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_services_select_a_deployment_and_target_its_ports():
    deployments = by_kind("Deployment")
    for service in by_kind("Service"):
        selector = service["spec"]["selector"]
        (target,) = [d for d in deployments if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        ports = {p["name"] for c in target["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (service["metadata"]["name"], port)


def test_routers_are_two_behind_one_service():
    (router,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "router"]
    assert router["spec"]["replicas"] == 2
    assert [s for s in by_kind("Service") if s["metadata"]["name"] == "router"]


def _podium_containers():
    for deployment in by_kind("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            if container.get("args") and container["args"][0] in SETTINGS:
                yield deployment, container


def test_env_names_exist_in_the_service_settings():
    seen = set()
    for _, container in _podium_containers():
        service = container["args"][0]
        seen.add(service)
        unknown = {e["name"] for e in container["env"]} - env_names(SETTINGS[service]) - ENTRYPOINT_VARS
        assert not unknown, (service, unknown)
    assert seen == set(SETTINGS)


def test_volumes_and_env_sources_name_known_secrets():
    for deployment, container in _podium_containers():
        spec = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes
        for volume in volumes.values():
            if "secret" in volume:
                assert volume["secret"]["secretName"] in SECRETS
        for source in container.get("envFrom", []):
            assert source["secretRef"]["name"] in SECRETS


def test_scaler_may_manage_exactly_what_the_kubernetes_runtime_touches():
    (scaler,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "scaler"]
    account = scaler["spec"]["template"]["spec"]["serviceAccountName"]
    assert account in {a["metadata"]["name"] for a in by_kind("ServiceAccount")}
    (binding,) = [b for b in by_kind("RoleBinding") if b["subjects"][0]["name"] == account]
    (role,) = [r for r in by_kind("Role") if r["metadata"]["name"] == binding["roleRef"]["name"]]
    granted = {(resource, verb) for rule in role["rules"] for resource in rule["resources"] for verb in rule["verbs"]}
    # what services/scaler/kubernetes_runtime.py calls
    needed = {("deployments", "list"), ("deployments", "create"), ("deployments/scale", "patch"),
              ("services", "create"), ("pods", "list"), ("pods", "patch")}
    assert needed <= granted
    env = {e["name"]: e["value"] for e in scaler["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PODIUM_REPLICA_BACKEND"] == "kubernetes"
    secret = env["PODIUM_KUBERNETES_WORKER_SECRETS"].split(":")[0]
    assert secret in SECRETS


# ---- the compose file ----

def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def _resolve(value: str) -> str:
    """A compose value with ${VAR:-default} / ${VAR-default} replaced by its default."""
    return re.sub(r"\$\{[A-Z_]+:?-([^}]*)\}", r"\1", str(value))


def test_compose_env_names_exist_in_the_service_settings():
    services = compose()["services"]
    for name, service in services.items():
        command = service.get("command") or []
        if command and command[0] in SETTINGS:
            unknown = set(service.get("environment", {})) - env_names(SETTINGS[command[0]])
            assert not unknown, (name, unknown)
    assert {s.get("command", [None])[0] for s in services.values()} >= set(SETTINGS)


def test_compose_shape_two_routers_one_port_tls_on():
    services = compose()["services"]
    routers = [n for n, s in services.items() if s.get("command") == ["router"]]
    assert len(routers) == 2
    published = [n for n, s in services.items() if s.get("ports")]
    assert set(published) == {"haproxy", "mlflow"}
    assert all(_resolve(p).startswith("127.0.0.1:") for p in services["mlflow"]["ports"])
    haproxy = (DEPLOY / "haproxy.cfg").read_text()
    for router in routers:
        assert f"server {router} {router}:8443" in haproxy and f"server {router} {router}:8444" in haproxy
    for name, service in services.items():
        env = service.get("environment", {})
        if service.get("command", [None])[0] in SETTINGS:
            assert env.get("PODIUM_TLS_CERT_FILE"), f"{name} runs without internal TLS"
    assert services["scaler"]["environment"]["PODIUM_REPLICA_BACKEND"] == "docker"
    assert _resolve(services["scaler"]["environment"]["PODIUM_DOCKER_NETWORK"]) == \
        _resolve(compose()["networks"]["workers"]["name"])
    worker_volume = _resolve(services["scaler"]["environment"]["PODIUM_DOCKER_WORKER_VOLUMES"]).split(":")[0]
    assert worker_volume == _resolve(compose()["volumes"]["worker-tls"]["name"])


@pytest.mark.parametrize("service", ["control_plane", "router", "scaler"])
def test_settings_classes_know_their_own_names(service):
    # the oracle above must itself see aliases and prefixes
    names = env_names(SETTINGS[service])
    assert "PODIUM_TLS_CA_FILE" in names and ("PODIUM_REDIS_URL" in names or service == "control_plane")
