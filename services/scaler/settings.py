"""Scaler settings: env vars PODIUM_*, documented in the README's settings table."""

from __future__ import annotations

from pathlib import Path

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ScalerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PODIUM_", frozen=True, extra="ignore")

    data_dir: Path = Path.home() / ".podium"
    control_plane_target: str = "127.0.0.1:7070"
    redis_url: str = Field("", validation_alias=AliasChoices("PODIUM_REDIS_URL", "REDIS_URL"))
    scaler_interval_s: float = Field(1.0, gt=0)          # one reconcile pass per interval (and on wake-ups)
    worker_start_timeout_s: float = Field(300.0, gt=0)   # a replica not ready by then is replaced
    worker_host: str = "127.0.0.1"
    scaler_host: str = "127.0.0.1"    # where the scaler serves its replicas' logs (gRPC)
    scaler_port: int = 0              # 0 = the OS picks; reported to the control plane on every pass
    # Prometheus GET /metrics and GET /targets (workers' metrics addresses): 0 = the OS picks (announced in
    # the ready line); -1 = off. Loopback by default: only this machine's Prometheus or agent reaches it.
    scaler_metrics_host: str = "127.0.0.1"
    scaler_metrics_port: int = Field(0, ge=-1)
    # The host the control plane dials for replica logs when the scaler binds 0.0.0.0 (containers: the
    # service's DNS name); empty = scaler_host.
    scaler_advertise_host: str = ""
    # Consecutive start failures after which a deployment is reported failed instead of retried.
    worker_max_start_failures: int = Field(3, ge=1)
    # "local": workers run in the platform's environment; "virtualenv": each model in one built from its
    # logged requirements (cached under <data_dir>/envs by their hash).
    worker_env_manager: Literal["local", "virtualenv"] = "local"
    worker_env_build_timeout_s: float = Field(1800.0, gt=0)   # one environment build, pip included
    # GPUs for GPU workload types: "auto" (nvidia-smi), "none", or ids such as "0,1".
    gpus: str = "auto"
    # The scaler's own CUDA_VISIBLE_DEVICES, if set, limits what "auto" offers.
    cuda_visible_devices: str | None = Field(None, validation_alias="CUDA_VISIBLE_DEVICES")
    # Fork CPU replicas in the platform's environment from a warm template process that has imported
    # MLflow and cached the model (fast starts); false: every replica is a fresh `python -m services.worker`.
    worker_template: bool = True
    registry_uri: str = Field("", validation_alias=AliasChoices("PODIUM_REGISTRY_URI", "MLFLOW_REGISTRY_URI"))
    tracking_uri: str = Field("", validation_alias=AliasChoices("PODIUM_TRACKING_URI", "MLFLOW_TRACKING_URI"))
    # The process whose exit ends the replicas (`podium up` sets its own pid); 0 = this scaler.
    supervisor_pid: int = Field(0, ge=0)

    # Autoscaling (services/scaler/policy.py).
    target_concurrency_per_replica: float = Field(4.0, gt=0)
    scale_to_zero_after_s: float = Field(1800.0, ge=0)   # idle this long: a scale_to_zero_enabled entity goes to 0
    scale_up_window_s: float = Field(0.0, ge=0)          # scale up to the lowest recommendation in this window
    scale_down_window_s: float = Field(60.0, ge=0)       # scale down to the highest recommendation in this window
    scale_max_step: int = Field(4, ge=1)                 # replicas added or removed per decision
    # Heartbeats: a replica that has not answered a health check for the expiry leaves the routing table.
    heartbeat_interval_s: float = Field(1.0, gt=0)
    heartbeat_expiry_s: float = Field(3.0, gt=0)
    worker_stop_grace_s: float = Field(15.0, gt=0)       # in-flight requests get this long on scale-down

    # Where replicas run: "local" processes on this machine, "docker" containers through the Docker Engine
    # API (extra [docker]), or a Deployment and Service per served entity on "kubernetes" (extra [kubernetes]).
    replica_backend: Literal["local", "docker", "kubernetes"] = "local"
    worker_image: str = "podium:latest"     # docker/kubernetes: the image the worker replicas run
    worker_port: int = Field(8500, gt=0)    # docker/kubernetes: the port a worker container or pod serves on
    # docker: the engine (empty: DOCKER_HOST or the local socket), the workers' network, the name that
    # labels this stack's containers (a restarted scaler adopts those), the DNS domain each replica answers
    # under on the network (its certificate names *.<domain>), and volumes mounted into every worker
    # ("name:/path[:ro]", comma-separated), e.g. the TLS certificates.
    docker_host: str = ""
    docker_network: str = "podium-workers"
    docker_stack: str = "podium"
    docker_worker_domain: str = "workers.podium.internal"
    docker_worker_volumes: str = ""
    # kubernetes: in-cluster config, else KUBECONFIG; the workers' namespace; Secrets mounted into every
    # worker pod ("secret:/path", comma-separated), e.g. the workers' TLS certificate.
    kubernetes_namespace: str = "podium"
    kubernetes_cluster_domain: str = "cluster.local"
    kubernetes_worker_secrets: str = ""

    internal_token: SecretStr = SecretStr("")   # Podium's service credential, for the control plane
    # Handed to the workers it starts: the SHA-256 of the router's worker credential (never the credential).
    worker_caller_token_sha256: str = ""
    # TLS: Podium's CA and the scaler's certificate (control-plane calls), and the workers' certificate.
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    worker_tls_cert_file: Path | None = None
    worker_tls_key_file: Path | None = None
    # The CA file as the workers see it (containers mount their own copy); default tls_ca_file.
    worker_tls_ca_file: Path | None = None
