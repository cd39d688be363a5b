"""Control-plane settings: env vars PODIUM_<FIELD> (services/common/settings.py), listed in docs/settings.md."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from services.common.settings import EgressSettings, MasterKeySettings, RedisSettings, RegistrySettings


class ControlPlaneSettings(MasterKeySettings, EgressSettings, RedisSettings, RegistrySettings):
    database_url: str = ""
    """The specs database (`postgresql+psycopg://...` for PostgreSQL); empty = sqlite:///<data_dir>/podium.db."""
    database_wait_s: float = Field(60.0, ge=0)
    """At start, how long to wait for the database to accept connections (it may start beside this service)."""
    control_plane_host: str = "127.0.0.1"
    """The interface the control plane's gRPC API binds."""
    control_plane_port: int = 7070
    """The control plane's gRPC port; 0 = the OS picks a free port (tests)."""
    report_expiry_s: float = Field(10.0, gt=0)
    """A deployment not reported by the scaler for this long is shown as not ready."""
    scaler_timeout_s: float = Field(10.0, gt=0)
    """Deadline of one call to a scaler (e.g. reading logs)."""
    rollout_interval_s: float = Field(1.0, gt=0)
    """How often running rollouts are judged against the routers' query outcomes (docs/progressive-delivery.md)."""
    alias_interval_s: float = Field(30.0, gt=0)
    """How often the registry aliases served entities follow (`entity_version: "champion"`) are read again; a
    moved alias updates its endpoints (with their config's rollout plan)."""
    alias_timeout_s: float = Field(10.0, gt=0)
    """Deadline of one registry read of an alias."""

    # ---- limits on what users may ask for (admins are not limited) ----
    quota_endpoints_per_user: int = Field(50, ge=0)
    """Endpoints one user or service principal may have created; 0 = no limit."""
    quota_concurrency_per_user: int = Field(64, ge=0)
    """Provisioned concurrency (max_provisioned_concurrency, or the workload size's) summed over the custom
    served entities of one user's endpoints; replicas follow from it. 0 = no limit."""

    # ---- identity (SecretStr: never printed, never logged) ----
    bootstrap_admin_token: SecretStr = SecretStr("")
    """`podium up`'s admin token for user `admin`."""
    oauth_issuer: str = "podium"
    """`iss` of the OAuth JWTs Podium signs."""
    oauth_token_lifetime_s: int = Field(3600, gt=0)
    """Lifetime of an OAuth access token Podium issues."""
    replica_token_ttl_s: int = Field(900, ge=1, le=86400)
    """Lifetime of an access token an agent's replica gets with its client credential (DATABRICKS_CLIENT_ID /
    DATABRICKS_CLIENT_SECRET); the databricks-sdk fetches the next one in the background after half of it. A
    token copied out of a replica works this long at most (none once the replica stops). Keep it above 40 s:
    the SDK counts a token within 40 s of its expiry as expired, and would fetch one before every call."""
    auth_jwks: str = ""
    """An identity provider's JWKS (URL or file): its RS256/ES256 JWTs are accepted."""
    auth_jwt_issuer: str = ""
    """The `iss` those JWTs must carry (required with auth_jwks)."""
    auth_jwt_audience: str = ""
    """The `aud` those JWTs must carry (required with auth_jwks)."""
    auth_jwt_claim: str = "sub"
    """The claim naming the Podium userName / applicationId."""

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'podium.db'}"

    @model_validator(mode="after")
    def _jwks_needs_issuer_and_audience(self) -> "ControlPlaneSettings":
        if self.auth_jwks and not (self.auth_jwt_issuer and self.auth_jwt_audience):
            raise ValueError("PODIUM_AUTH_JWKS needs PODIUM_AUTH_JWT_ISSUER and PODIUM_AUTH_JWT_AUDIENCE")
        return self
