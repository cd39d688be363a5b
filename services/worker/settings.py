"""Worker settings: env vars PODIUM_<FIELD> (services/common/settings.py), listed in docs/settings.md. The
scaler sets most of them for each replica it starts; the worker's own are named PODIUM_WORKER_*."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from services.common.settings import PodiumSettings, RegistrySettings


class WorkerServingSettings(PodiumSettings):
    """Where a worker listens and whom it answers: read by the worker, and by the scaler, which hands them to
    every worker it starts."""

    worker_host: str = "127.0.0.1"
    """The interface a worker binds (a container or pod: every interface)."""
    worker_caller_token_sha256: str = ""
    """SHA-256 (hex) of the credential the router presents to workers; a worker answers no one else."""
    worker_tls_ca_file: Path | None = None
    """Podium's CA as the workers read it, which must have signed a caller's certificate; the scaler hands on
    its own tls_ca_file when this is unset (containers mount their own copy)."""
    worker_tls_cert_file: Path | None = None
    """The workers' certificate (server only: model code in a worker cannot act as a Podium client)."""
    worker_tls_key_file: Path | None = None
    """The workers' private key."""
    worker_sandbox: bool = True
    """Confine each replica before model code runs (services/worker/sandbox.py): Landlock where the kernel
    has it, resource limits, and, where Podium runs as root, a uid of its own. false: replicas run with the
    platform's rights (only for a machine that trusts every model it serves)."""
    worker_sandbox_uid_base: int = Field(2_000_000_000, ge=1, le=4_000_000_000)
    """Where Podium runs as root: a replica runs as uid and gid <base> + its pid (no passwd entry, no
    groups), so replicas share nothing with the platform or each other; pick a range no account uses."""


class WorkerSettings(WorkerServingSettings, RegistrySettings):
    worker_model_uri: str
    """The model a worker serves: models:/<name>/<version> or models:/<name>@<alias>."""
    worker_model_path: str = ""
    """A local copy of the model's artifacts (set by the warm template, which resolved and downloaded the
    model once for every replica): loaded from here without asking the registry again."""
    worker_scratch_dir: str = ""
    """The replica's own writable directory (HOME and TMPDIR inside the sandbox), made by the scaler and
    removed when the replica exits; empty = a new temporary directory."""
    worker_memory_limit_bytes: int = Field(0, ge=0)
    """Set by the scaler from the workload size: the replica's RLIMIT_DATA (heap and private mappings);
    0 = none."""
    worker_max_processes: int = Field(512, ge=0)
    """RLIMIT_NPROC of a replica that runs as a uid of its own (its processes and threads); 0 = none."""
    worker_max_open_files: int = Field(16384, ge=0)
    """RLIMIT_NOFILE of a replica; 0 = the inherited limit."""
    worker_supervisor_pid: int = Field(0, ge=0)
    """The process whose exit stops this worker (`podium up`, else the scaler): replicas outlive a scaler
    restart, so the new scaler adopts them, but never the stack they belong to. 0 = none."""
    worker_port: int = 0
    """The port a worker serves on; 0 = the OS picks (announced on stdout)."""
    worker_metrics_host: str = "127.0.0.1"
    """The interface of a worker's Prometheus GET /metrics."""
    worker_metrics_port: int = Field(0, ge=-1)
    """A worker's /metrics port: 0 = the OS picks (announced in the ready line and the replica record, so
    the scaler's service discovery lists it); -1 = off."""
    otlp_endpoint: str = Field("", validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    """OpenTelemetry: spans exported over OTLP/HTTP when set (the standard variable); empty = tracing off."""
    worker_predict_threads: int = Field(2, ge=1)
    """Threads a worker runs model calls on (never the event loop)."""
    worker_max_queued_requests: int = Field(256, ge=1)
    """Requests a replica holds at once; beyond: 503."""
    worker_max_batch_size: int = Field(0, ge=0)
    """Set by the scaler from the served entity's max_batch_size: requests that arrive while the model runs
    are merged into its next call, up to this many rows. 1 = off; 0 = the default for the loaded model: on
    (DEFAULT_BATCH_ROWS) where batching cannot change an answer, else off."""
    worker_max_batch_wait_ms: float = Field(0.0, ge=0)
    """Set by the scaler from the served entity's max_batch_wait_ms: how long a batch waits for more
    requests (0: never, so an idle replica answers at once)."""
    worker_device: Literal["cpu", "cuda"] = "cpu"
    """Set by the scaler: "cuda" for a GPU workload type (its GPUs in CUDA_VISIBLE_DEVICES), else "cpu" with
    no GPU visible. MLflow's torch-based flavors load onto the visible GPU by themselves."""
    cuda_visible_devices: str | None = Field(None, validation_alias="CUDA_VISIBLE_DEVICES")
    """The GPUs a worker sees (the standard variable), set by the scaler."""


class TemplateSettings(RegistrySettings):
    """The warm template's (services/worker/template.py), set by the scaler that starts it."""

    template_fd: int
    """The descriptor of the socket the scaler talks to the template on."""
    template_cache_dir: Path
    """The machine's model cache the template downloads models into (<data_dir>/cache/models)."""
