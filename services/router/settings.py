"""Router settings: env vars PODIUM_*, documented in the README's settings table."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RouterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PODIUM_", frozen=True, extra="ignore")

    router_host: str = "127.0.0.1"
    router_port: int = 8080                 # REST; 0 = the OS picks (tests)
    router_grpc_port: int = 8081            # gRPC query API; 0 = the OS picks
    control_plane_target: str = "127.0.0.1:7070"
    redis_url: str = Field("", validation_alias=AliasChoices("PODIUM_REDIS_URL", "REDIS_URL"))
    forward_timeout_s: float = Field(60.0, gt=0)      # deadline of one prediction on a worker
    management_timeout_s: float = Field(10.0, gt=0)   # deadline of one control-plane call
    max_request_bytes: int = Field(16 * 1024 * 1024, gt=0)  # as Databricks: 16 MB per request
    # The registry GET .../openapi and the UI's model pickers read (the query path never does).
    registry_uri: str = Field("", validation_alias=AliasChoices("PODIUM_REGISTRY_URI", "MLFLOW_REGISTRY_URI"))
    tracking_uri: str = Field("", validation_alias=AliasChoices("PODIUM_TRACKING_URI", "MLFLOW_TRACKING_URI"))
    openapi_alias_ttl_s: float = Field(60.0, gt=0)   # an alias's signature is read again after this long
    registry_timeout_s: float = Field(30.0, gt=0)     # deadline of one registry read for the UI
