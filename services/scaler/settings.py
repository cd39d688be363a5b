"""Scaler settings: env vars PODIUM_<FIELD> (services/common/settings.py), listed in docs/settings.md."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from services.common.settings import ClusterSettings, RegistrySettings
from services.worker.settings import WorkerServingSettings


class ScalerSettings(ClusterSettings, RegistrySettings, WorkerServingSettings):
    scaler_interval_s: float = Field(1.0, gt=0)
    """Seconds between scaler passes (a router's wake-up or a replica change runs one at once)."""
    worker_start_timeout_s: float = Field(300.0, gt=0)
    """A replica not ready by then is replaced."""
    scaler_host: str = "127.0.0.1"
    """The interface the scaler serves its replicas' logs on (gRPC)."""
    scaler_port: int = 0
    """The scaler's gRPC port; 0 = the OS picks. Reported to the control plane on every pass."""
    scaler_metrics_host: str = "127.0.0.1"
    """The interface of Prometheus GET /metrics and GET /targets (the workers' metrics addresses); loopback
    by default: only this machine's Prometheus or agent reaches it."""
    scaler_metrics_port: int = Field(0, ge=-1)
    """The /metrics port: 0 = the OS picks (announced in the ready line); -1 = off."""
    scaler_advertise_host: str = ""
    """The host the control plane dials for replica logs when the scaler binds 0.0.0.0 (containers: the
    service's DNS name); empty = scaler_host."""
    worker_max_start_failures: int = Field(3, ge=1)
    """Consecutive start failures after which a deployment is reported failed instead of retried."""
    worker_env_manager: Literal["local", "virtualenv"] = "local"
    """"local": workers run in the platform's environment; "virtualenv": each model in one built from its
    logged requirements (cached under <data_dir>/envs by their hash)."""
    worker_env_build_timeout_s: float = Field(1800.0, gt=0)
    """Deadline of one environment build, pip included."""
    gpus: str = "auto"
    """GPUs for GPU workload types: "auto" (nvidia-smi), "none", or ids such as "0,1"."""
    cuda_visible_devices: str | None = Field(None, validation_alias="CUDA_VISIBLE_DEVICES")
    """The scaler's own CUDA_VISIBLE_DEVICES (the standard variable), if set, limits what "auto" offers."""
    worker_template: bool = True
    """Fork CPU replicas in the platform's environment from a warm template process that has imported MLflow
    and cached the model (fast starts); false: every replica is a fresh `python -m services.worker`."""
    supervisor_pid: int = Field(0, ge=0)
    """The process whose exit ends the replicas (`podium up` sets its own pid); 0 = this scaler."""
    replica_router_url: str = ""
    """The router's URL as replicas reach it: DATABRICKS_HOST of a model logged with serving endpoints as
    resources, beside a credential that may query just those (`podium up` sets it); empty = none issued."""

    # ---- autoscaling (services/scaler/policy.py) ----
    target_concurrency_per_replica: float = Field(4.0, gt=0)
    """Requests in flight per replica the scaler sizes for."""
    unbatched_concurrency_per_replica: float = Field(1.0, gt=0)
    """Requests in flight per replica the scaler sizes for where the model does not batch (CPU workloads: one
    model call at a time, about one core); it sets the entity's replica maximum and scale-up only, its floor
    still comes from PODIUM_TARGET_CONCURRENCY_PER_REPLICA."""
    scale_to_zero_after_s: float = Field(1800.0, ge=0)
    """Idle this long, a scale_to_zero_enabled served entity goes to 0 replicas."""
    scale_up_window_s: float = Field(0.0, ge=0)
    """Scale up to the lowest recommendation in this window."""
    scale_down_window_s: float = Field(60.0, ge=0)
    """Scale down to the highest recommendation in this window."""
    scale_max_step: int = Field(4, ge=1)
    """Replicas added or removed per decision."""
    heartbeat_interval_s: float = Field(1.0, gt=0)
    """Replicas are health-checked this often."""
    heartbeat_expiry_s: float = Field(3.0, gt=0)
    """A replica that has not answered a health check for this long leaves the routing table."""
    worker_stop_grace_s: float = Field(15.0, gt=0)
    """In-flight requests get this long on scale-down."""

    # ---- where replicas run ----
    replica_backend: Literal["local", "docker", "kubernetes"] = "local"
    """"local" processes on this machine, "docker" containers through the Docker Engine API (extra
    [docker]), or a Deployment and Service per served entity on "kubernetes" (extra [kubernetes])."""
    worker_image: str = "podium:latest"
    """docker/kubernetes: the image the worker replicas run."""
    worker_container_port: int = Field(8500, gt=0)
    """docker/kubernetes: the port a worker container or pod serves on (its /metrics on the next one)."""
    docker_host: str = ""
    """docker: the engine; empty = DOCKER_HOST or the local socket."""
    docker_network: str = "podium-workers"
    """docker: the workers' network (routers and the scaler join it)."""
    docker_stack: str = "podium"
    """docker: labels this stack's worker containers; a restarted scaler adopts those."""
    docker_worker_domain: str = "workers.podium.internal"
    """docker: each replica answers as <replica id>.<domain> on the network (its certificate names
    *.<domain>)."""
    docker_worker_volumes: str = ""
    """docker: volumes mounted into every worker ("name:/path[:ro]", comma-separated), e.g. the TLS files."""
    kubernetes_namespace: str = "podium"
    """kubernetes (in-cluster config, else KUBECONFIG): where worker Deployments and Services go."""
    kubernetes_cluster_domain: str = "cluster.local"
    """kubernetes: pods are dialled as a-b-c-d.<namespace>.pod.<domain>."""
    kubernetes_worker_secrets: str = ""
    """kubernetes: Secrets mounted into every worker pod ("secret:/path", comma-separated), e.g. the workers'
    TLS certificate."""
