"""Router settings: env vars PODIUM_*, documented in the README's settings table."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class RouterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PODIUM_", frozen=True, extra="ignore")

    data_dir: Path = Path.home() / ".podium"
    router_host: str = "127.0.0.1"
    router_port: int = 8080                 # REST; 0 = the OS picks (tests)
    router_grpc_port: int = 8081            # gRPC query API; 0 = the OS picks
    control_plane_target: str = "127.0.0.1:7070"
    # Processes serving the same REST and gRPC ports (SO_REUSEPORT: the kernel spreads connections over
    # them). The first binds and starts the others; each has its own metrics port (listed in its ready line).
    router_processes: int = Field(1, ge=1, le=64)
    router_reuse_port: bool = False        # set for the extra processes (and implied by router_processes > 1)
    router_parent_pid: int = Field(0, ge=0)  # an extra process exits with the router that started it; 0 = none
    # Prometheus GET /metrics on its own port (services/common/metrics_server.py says why): 0 = the OS
    # picks (announced in the ready line and podium.json); -1 = off. Loopback by default.
    router_metrics_host: str = "127.0.0.1"
    router_metrics_port: int = Field(0, ge=-1)
    # OpenTelemetry: spans exported over OTLP/HTTP when set (the standard variable); empty = tracing off.
    otlp_endpoint: str = Field("", validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    redis_url: str = Field("", validation_alias=AliasChoices("PODIUM_REDIS_URL", "REDIS_URL"))
    forward_timeout_s: float = Field(60.0, gt=0)      # deadline of one prediction, retries on other replicas included
    # A replica a call found unreachable gets no request from this router for this long (or until the
    # routing table drops it), unless it is the only one left.
    replica_eject_s: float = Field(10.0, gt=0)
    management_timeout_s: float = Field(10.0, gt=0)   # deadline of one control-plane call
    max_request_bytes: int = Field(16 * 1024 * 1024, gt=0)  # as Databricks: 16 MB per request
    # Requests served at once, REST and gRPC each (waiting for a replica included); beyond: 503 at once.
    max_concurrent_requests: int = Field(2000, ge=1)
    # The registry GET .../openapi and the UI's model pickers read (the query path never does).
    registry_uri: str = Field("", validation_alias=AliasChoices("PODIUM_REGISTRY_URI", "MLFLOW_REGISTRY_URI"))
    tracking_uri: str = Field("", validation_alias=AliasChoices("PODIUM_TRACKING_URI", "MLFLOW_TRACKING_URI"))
    openapi_alias_ttl_s: float = Field(60.0, gt=0)   # an alias's signature is read again after this long
    registry_timeout_s: float = Field(30.0, gt=0)     # deadline of one registry read for the UI
    # Scale from zero: a request for a served entity with no ready replica waits this long, at most
    # queue_limit of them per served entity; beyond either it is answered 503 with Retry-After.
    queue_timeout_s: float = Field(60.0, gt=0)
    queue_limit: int = Field(1000, ge=1)
    # Load metrics for the scaler: published to Redis every interval, expiring after the TTL.
    metrics_interval_s: float = Field(0.5, gt=0)
    metrics_ttl_s: float = Field(5.0, gt=0)

    # ---- external models ----
    # AES-256 master key(s) that open stored provider keys and seal inference tables (base64, or
    # `kid:b64,...`); empty = the key file (default DATA_DIR/keys/master-key.json) that `podium up` creates.
    master_key: SecretStr | None = None
    key_file: Path | None = None
    # Secrets given at start, JSON {"scope/key": "value"}, looked up before the control plane's secrets store
    # when `{{secrets/scope/key}}` references resolve.
    secrets: dict[str, SecretStr] = Field(default_factory=dict)
    secret_cache_ttl_s: float = Field(60.0, ge=0)      # a rotated secret takes effect within this
    provider_timeout_s: float = Field(60.0, gt=0)      # default deadline of a provider call (external_model.timeout_s)
    provider_max_retries: int = Field(1, ge=0, le=5)   # default retries on 5xx / unreachable (external_model.max_retries)
    provider_connect_timeout_s: float = Field(10.0, gt=0)

    # ---- AI gateway ----
    rate_limit_timeout_s: float = Field(1.0, gt=0)     # deadline of one Redis call of the rate limiter
    # While Redis cannot be reached: "open" admits rate-limited requests unmetered, "closed" answers them
    # 503 TEMPORARILY_UNAVAILABLE. Load metrics always fail open (queries never wait on them).
    redis_failure_mode: Literal["open", "closed"] = "open"
    inference_database_url: str = ""                   # empty = sqlite:///<data_dir>/inference.db
    inference_retention_days: float = Field(30.0, gt=0)
    inference_queue_size: int = Field(10_000, gt=0)    # records waiting to be written; beyond: dropped, counted
    inference_batch_size: int = Field(500, gt=0)
    inference_max_payload_bytes: int = Field(1024 * 1024, gt=0)  # larger payloads are not captured (error code)

    # ---- authentication ----
    internal_token: SecretStr = SecretStr("")   # Podium's service credential, for the control plane's internal calls
    worker_token: SecretStr = SecretStr("")     # presented to workers, which answer nothing else
    auth_cache_ttl_s: float = Field(5.0, gt=0, le=300)   # a revoked credential works at most this long
    auth_stale_grace_s: float = Field(60.0, ge=0)        # ... longer only while the control plane is down

    # ---- TLS: the router's own certificate (HTTPS, gRPC queries) and Podium's internal mutual TLS ----
    router_tls_cert_file: Path | None = None
    router_tls_key_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    def resolved_inference_database_url(self) -> str:
        return self.inference_database_url or f"sqlite:///{self.data_dir / 'inference.db'}"

    def resolved_key_file(self) -> Path:
        return self.key_file or self.data_dir / "keys" / "master-key.json"
