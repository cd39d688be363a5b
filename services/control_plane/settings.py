"""Control-plane settings: env vars PODIUM_*, documented in the README's settings table."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ControlPlaneSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PODIUM_", frozen=True, extra="ignore")

    data_dir: Path = Path.home() / ".podium"
    database_url: str = ""             # empty = sqlite:///<data_dir>/podium.db
    control_plane_host: str = "127.0.0.1"
    control_plane_port: int = 7070     # 0 = the OS picks a free port (tests)
    # A deployment not reported by the scaler for this long is shown as not ready.
    report_expiry_s: float = Field(10.0, gt=0)
    scaler_timeout_s: float = Field(10.0, gt=0)   # deadline of one call to a scaler (e.g. reading logs)

    # ---- identity and secrets (SecretStr: never printed, never logged) ----
    internal_token: SecretStr = SecretStr("")          # Podium's own services present it (set by `podium up`)
    bootstrap_admin_token: SecretStr = SecretStr("")   # `podium up`'s admin token for user `admin`
    # AES-256 master key(s) sealing everything stored encrypted (base64 of 32 bytes, or `kid:b64,...` with the
    # active one first); empty = the 0600 key file below, which `podium up` creates.
    master_key: SecretStr = SecretStr("")
    key_file: Path | None = None                       # default <data_dir>/keys/master-key.json
    oauth_issuer: str = "podium"                       # `iss` of the OAuth JWTs Podium signs
    oauth_token_lifetime_s: int = Field(3600, gt=0)
    auth_jwks: str = ""              # an identity provider's JWKS (URL or file): its RS256/ES256 JWTs are accepted
    auth_jwt_issuer: str = ""        # ... with this `iss`
    auth_jwt_audience: str = ""      # ... and this `aud`
    auth_jwt_claim: str = "sub"      # the claim naming the Podium userName / applicationId

    # ---- TLS between services (all three, or none) ----
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'podium.db'}"

    def resolved_key_file(self) -> Path:
        return self.key_file or self.data_dir / "keys" / "master-key.json"

    @model_validator(mode="after")
    def _jwks_needs_issuer_and_audience(self) -> "ControlPlaneSettings":
        if self.auth_jwks and not (self.auth_jwt_issuer and self.auth_jwt_audience):
            raise ValueError("PODIUM_AUTH_JWKS needs PODIUM_AUTH_JWT_ISSUER and PODIUM_AUTH_JWT_AUDIENCE")
        return self
