"""What a replica is given beyond its spec as it starts, asked of the control plane for that one deployment:
its served entity's `environment_vars` with `{{secrets/scope/key}}` references resolved, and a credential
that may query exactly the serving endpoints its model was logged with as resources.

Both reach the replica only as its process environment: never a command line, a replica record or a log
line. The credential is an OAuth client credential (DATABRICKS_CLIENT_ID / DATABRICKS_CLIENT_SECRET beside
DATABRICKS_HOST), not a token: a process's environment cannot change after it starts, so the replica's
databricks-sdk (oauth-m2m) exchanges it at the router's token endpoint for short-lived access tokens, and
fetches the next before each expires. It is revoked when the replica is gone, and with it every access token
minted from it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from services.common.errors import PodiumError

if TYPE_CHECKING:
    from services.common.control_plane_client import ControlPlaneClient

log = logging.getLogger(__name__)

SECRET_REFERENCE = re.compile(r"\{\{\s*secrets/")
MAX_MLMODEL_BYTES = 1 << 20
MAX_DECLARED_ENDPOINTS = 64
# A replica that cannot be given these will not be given them by trying again: its start FAILED.
FINAL_CODES = ("PERMISSION_DENIED", "INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST")
# Variables that configure a databricks-sdk credential: a served entity that sets one in its environment_vars
# brings its own, and Podium's is left out (the SDK refuses a token beside client credentials).
SDK_CREDENTIAL_VARS = ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_AUTH_TYPE",
                       "DATABRICKS_CONFIG_PROFILE", "DATABRICKS_USERNAME", "DATABRICKS_PASSWORD")
# Engines keep a container's or a Deployment's environment in their own state, in plaintext.
ENGINE_REFUSES_SECRETS = ("secret references in environment_vars are resolved for local replicas only "
                          "(PODIUM_REPLICA_BACKEND=local): a container engine or Kubernetes would store the value")


class GrantRefused(RuntimeError):
    """The control plane would not give the replica what its spec needs; `is_final`: retrying will not help."""

    def __init__(self, message: str, is_final: bool):
        super().__init__(message)
        self.is_final = is_final


def has_secret_reference(environment_vars: dict[str, str]) -> bool:
    return any(SECRET_REFERENCE.search(value) for value in environment_vars.values())


def with_credential(granted: dict[str, str], env: dict[str, str]) -> dict[str, str]:
    """The replica's environment: `env` (which wins) with the granted DATABRICKS_* variables, but without the
    granted client credential where `env` configures a credential of its own."""
    if any(name in env for name in SDK_CREDENTIAL_VARS):
        granted = {k: v for k, v in granted.items() if k not in SDK_CREDENTIAL_VARS}
    return {**granted, **env}


def declared_endpoints(model_dir: Path) -> list[str]:
    """The serving endpoints the model was logged with as resources (the MLmodel file's `resources`, as
    `mlflow.models.resources.DatabricksServingEndpoint` writes them); blocking: call it in a thread."""
    try:
        with open(model_dir / "MLmodel", "rb") as file:
            text = file.read(MAX_MLMODEL_BYTES)
        document = yaml.safe_load(text) or {}
    except (OSError, yaml.YAMLError):
        return []
    resources = document.get("resources") if isinstance(document, dict) else None
    databricks = resources.get("databricks") if isinstance(resources, dict) else None
    listed = databricks.get("serving_endpoint") if isinstance(databricks, dict) else None
    names = [entry.get("name") for entry in listed or () if isinstance(entry, dict)]
    return sorted({n for n in names if isinstance(n, str) and n})[:MAX_DECLARED_ENDPOINTS]


class ReplicaGrants:
    def __init__(self, control_plane: "ControlPlaneClient", router_url: str = ""):
        self._control_plane = control_plane
        self._router_url = router_url   # DATABRICKS_HOST of agents; empty: no credentials are issued
        self._credentials: dict[str, str] = {}   # replica id -> its credential's id (not the credential)
        self._revoking: set[asyncio.Task] = set()

    async def environment_vars(self, key: str, environment_vars: dict[str, str]) -> dict[str, str]:
        """The served entity's variables, references resolved by the control plane for this deployment."""
        if not has_secret_reference(environment_vars):
            return environment_vars
        try:
            return await self._control_plane.resolve_environment(key)
        except PodiumError as exc:
            raise GrantRefused(f"cannot resolve the secrets in environment_vars: {exc.message}",
                               exc.code in FINAL_CODES) from None

    async def credential(self, replica_id: str, key: str, model_dir: Path | None) -> dict[str, str]:
        """DATABRICKS_HOST, DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET for a replica whose model declared
        serving endpoints: a client credential whose access tokens may query those (one per replica); {} when
        it declared none."""
        if not self._router_url or model_dir is None or replica_id in self._credentials:
            return {}
        endpoints = await asyncio.to_thread(declared_endpoints, model_dir)
        if not endpoints:
            return {}
        try:
            client_id, client_secret, token_id = await self._control_plane.issue_replica_credential(key, endpoints)
        except PodiumError as exc:
            raise GrantRefused(f"cannot issue the credential for the model's resources: {exc.message}",
                               exc.code in FINAL_CODES) from None
        self._credentials[replica_id] = token_id
        log.info("replica %s may query %s", replica_id, ", ".join(endpoints))
        return {"DATABRICKS_HOST": self._router_url, "DATABRICKS_CLIENT_ID": client_id,
                "DATABRICKS_CLIENT_SECRET": client_secret}

    def credential_id(self, replica_id: str) -> str:
        return self._credentials.get(replica_id, "")

    def adopt(self, replica_id: str, token_id: str) -> None:
        """A replica a previous scaler started: its credential is revoked when it is gone, as any other."""
        self._credentials[replica_id] = token_id

    def release(self, replica_id: str) -> None:
        """Revokes the replica's credential, if it has one, in the background."""
        token_id = self._credentials.pop(replica_id, None)
        if token_id is not None:
            task = asyncio.create_task(self._revoke(token_id))
            self._revoking.add(task)
            task.add_done_callback(self._revoking.discard)

    async def close(self) -> None:
        await asyncio.gather(*self._revoking, return_exceptions=True)

    async def _revoke(self, token_id: str) -> None:
        """Best effort: a credential whose deployment is gone authenticates nobody anyway."""
        try:
            await self._control_plane.revoke_replica_credential(token_id)
        except PodiumError as exc:
            log.warning("could not revoke a replica credential: %s", exc.message)
