"""Control-plane settings: env vars PODIUM_*, documented in the README's settings table."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
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
    # AES-256 key (base64 of 32 bytes) sealing stored secrets; empty = the 0600 key file DATA_DIR/master.key.
    master_key: SecretStr | None = None

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'podium.db'}"
