"""Router settings: env vars PODIUM_<FIELD> (services/common/settings.py), listed in docs/settings.md."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from services.common.settings import ClusterSettings, EgressSettings, MasterKeySettings, RegistrySettings


class RouterSettings(MasterKeySettings, ClusterSettings, RegistrySettings, EgressSettings):
    router_host: str = "127.0.0.1"
    """The interface the router's REST and gRPC query ports bind."""
    router_port: int = 8080
    """The REST port; 0 = the OS picks (tests)."""
    router_grpc_port: int = 8081
    """The gRPC query API's port; 0 = the OS picks."""
    router_processes: int = Field(1, ge=1, le=64)
    """Router processes `podium up` starts: peers serving the same REST and gRPC ports (SO_REUSEPORT: the
    kernel spreads connections over them), each restarted alone when it dies, each with its own metrics
    port (podium.json `metrics.router`)."""
    spare_processes: bool = True
    """`podium up` keeps a spare of each router, of the control plane and of the scaler: a process with its
    imports done, waiting, that replaces one that dies without paying its imports on the way back
    (services/common/standby.py). False saves their memory (about 100 MB per router, 70 MB each other)."""
    router_reuse_port: bool = False
    """Bind with SO_REUSEPORT, so that other router processes serve the same ports (`podium up` sets it
    when router_processes > 1)."""
    router_metrics_host: str = "127.0.0.1"
    """The interface of Prometheus GET /metrics (services/common/metrics_server.py says why its own port)."""
    router_metrics_port: int = Field(0, ge=-1)
    """The /metrics port: 0 = the OS picks (announced in the ready line and podium.json); -1 = off."""
    otlp_endpoint: str = Field("", validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    """OpenTelemetry: spans exported over OTLP/HTTP when set (the standard variable); empty = tracing off."""
    forward_timeout_s: float = Field(60.0, gt=0)
    """Deadline of one prediction, re-sends to other replicas included."""
    replica_eject_s: float = Field(10.0, gt=0)
    """A replica a call found unreachable gets no request from this router for this long (or until the
    routing table drops it), unless it is the only one left."""
    management_timeout_s: float = Field(10.0, gt=0)
    """Deadline of one control-plane call from the router."""
    max_request_bytes: int = Field(16 * 1024 * 1024, gt=0)
    """The largest request body (16 MB, as Databricks)."""
    max_concurrent_requests: int = Field(2000, ge=1)
    """Requests served at once, REST and gRPC each (waiting for a replica included); beyond: 503 at once."""
    openapi_alias_ttl_s: float = Field(60.0, gt=0)
    """An alias's signature (GET .../openapi) is read from the registry again after this long."""
    registry_timeout_s: float = Field(30.0, gt=0)
    """Deadline of one registry read for the UI's model pickers (the query path never reads the registry)."""
    queue_timeout_s: float = Field(60.0, gt=0)
    """Scale from zero: a request for a served entity with no ready replica waits this long; then 503 with
    Retry-After."""
    queue_limit: int = Field(1000, ge=1)
    """Scale from zero: requests waiting per served entity; beyond: 503 with Retry-After."""
    metrics_interval_s: float = Field(0.5, gt=0)
    """Load metrics for the scaler are published to Redis this often."""
    metrics_ttl_s: float = Field(5.0, gt=0)
    """Published load metrics expire after this long."""
    shadow_queue_limit: int = Field(100, ge=1)
    """Copies of queries waiting for a shadow served entity; beyond, copies are dropped (counted), never the
    caller's time (docs/progressive-delivery.md)."""
    shadow_senders: int = Field(4, ge=1)
    """Copies sent to shadow served entities at once, per router."""

    # ---- external models ----
    secrets: dict[str, SecretStr] = Field(default_factory=dict)
    """Secrets given at start, JSON {"scope/key": "value"}, looked up before the control plane's secrets
    store when `{{secrets/scope/key}}` references resolve."""
    secret_cache_ttl_s: float = Field(60.0, ge=0)
    """A resolved secret reference is reused this long (a rotated secret takes effect within it)."""
    provider_timeout_s: float = Field(60.0, gt=0)
    """Default deadline of a provider call (external_model.timeout_s overrides)."""
    provider_max_retries: int = Field(1, ge=0, le=5)
    """Default retries on a provider's 5xx or when unreachable (external_model.max_retries overrides)."""
    provider_connect_timeout_s: float = Field(10.0, gt=0)
    """Deadline of connecting to a provider."""

    # ---- AI gateway ----
    fallback_timeout_s: float = Field(60.0, gt=0)
    """With ai_gateway.fallback_config on: one deadline for a query and all its fallbacks to other served
    entities; each attempt gets at most an equal share of what is left (and keeps its own deadline:
    external_model.timeout_s or the forwarding one)."""
    rate_limit_timeout_s: float = Field(1.0, gt=0)
    """Deadline of one Redis call of the rate limiter."""
    redis_failure_mode: Literal["open", "closed"] = "open"
    """While Redis cannot be reached: "open" admits rate-limited requests unmetered, "closed" answers them
    503 TEMPORARILY_UNAVAILABLE. Load metrics always fail open (queries never wait on them)."""
    inference_database_url: str = ""
    """Inference tables and usage records; empty = sqlite:///<data_dir>/inference.db."""
    inference_retention_days: float = Field(30.0, gt=0)
    """Inference records older than this are deleted."""
    inference_queue_size: int = Field(10_000, gt=0)
    """Inference records waiting to be written; beyond: dropped and counted."""
    inference_batch_size: int = Field(500, gt=0)
    """Inference records written at once."""
    inference_max_payload_bytes: int = Field(1024 * 1024, gt=0)
    """Larger requests or responses are not captured (an error code is, instead)."""

    # ---- authentication ----
    worker_token: SecretStr = SecretStr("")
    """The credential presented to workers, which answer nothing else (they are given its SHA-256)."""
    auth_cache_ttl_s: float = Field(5.0, gt=0, le=300)
    """A revoked credential works at most this long."""
    auth_stale_grace_s: float = Field(60.0, ge=0)
    """... and longer only while the control plane is down, up to this long."""

    # ---- TLS: the router's own certificate (HTTPS, gRPC queries); internal TLS is tls_* ----
    router_tls_cert_file: Path | None = None
    """The router's own certificate for HTTPS and gRPC queries."""
    router_tls_key_file: Path | None = None
    """The router's own private key."""

    def resolved_inference_database_url(self) -> str:
        return self.inference_database_url or f"sqlite:///{self.data_dir / 'inference.db'}"
