"""Worker settings: env vars PODIUM_WORKER_* (and the registry/tracking URIs), see the README."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PODIUM_WORKER_", frozen=True, extra="ignore")

    model_uri: str                        # models:/<name>/<version> or models:/<name>@<alias>
    # A local copy of the model's artifacts (set by the warm template, which resolved and downloaded
    # model_uri once for every replica): loaded from here without asking the registry again.
    model_path: str = ""
    # The process whose exit stops this worker (`podium up`, else the scaler): replicas outlive a scaler
    # restart, so the new scaler adopts them, but never the stack they belong to. 0 = none.
    supervisor_pid: int = Field(0, ge=0)
    host: str = "127.0.0.1"
    port: int = 0                         # 0 = the OS picks; the bound port is announced on stdout
    # Prometheus GET /metrics (services/common/metrics_server.py): 0 = the OS picks (announced in the ready
    # line and the replica record, so the scaler's service discovery lists it); -1 = off.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(0, ge=-1)
    # OpenTelemetry: spans exported over OTLP/HTTP when set (the standard variable); empty = tracing off.
    otlp_endpoint: str = Field("", validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    predict_threads: int = Field(2, ge=1)    # model calls run here, never on the event loop
    max_queued_requests: int = Field(256, ge=1)  # beyond this a request is shed with 503
    # Batching (the served entity's max_batch_size / max_batch_wait_ms, set by the scaler): requests that
    # arrive while the model runs are merged into its next call, up to max_batch_size rows; a batch waits
    # max_batch_wait_ms for more (0: never, so an idle replica answers at once). 1 = off; 0 = the default
    # for the loaded model: on (DEFAULT_BATCH_ROWS) where batching cannot change an answer, else off.
    max_batch_size: int = Field(0, ge=0)
    max_batch_wait_ms: float = Field(0.0, ge=0)
    # Set by the scaler: "cuda" for a GPU workload type (its GPUs in CUDA_VISIBLE_DEVICES), else "cpu" with
    # no GPU visible. MLflow's torch-based flavors load onto the visible GPU by themselves.
    device: Literal["cpu", "cuda"] = "cpu"
    cuda_visible_devices: str | None = Field(None, validation_alias="CUDA_VISIBLE_DEVICES")
    registry_uri: str = Field("", validation_alias=AliasChoices("PODIUM_REGISTRY_URI", "MLFLOW_REGISTRY_URI"))
    tracking_uri: str = Field("", validation_alias=AliasChoices("PODIUM_TRACKING_URI", "MLFLOW_TRACKING_URI"))
    # SHA-256 (hex) of the credential the router presents; the worker answers no one else.
    caller_token_sha256: str = ""
    # TLS: the worker's certificate (server only) and Podium's CA, which must have signed the caller's.
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
