"""The OAuth sign-in the Databricks SDK performs against the router: its discovery documents, and the
client-credentials grant (oauth-m2m) that the control plane's Identity service decides.

Public by nature: a client signs in here before it holds a bearer credential (the client secret is the
credential).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.common.errors import Unauthenticated, UnsupportedGrantType
from services.router.auth import INVALID_CREDENTIAL

if TYPE_CHECKING:  # handed in by __main__; this module never imports gRPC itself
    from services.common.control_plane_client import ControlPlaneClient


class SignIn:
    def __init__(self, control_plane: "ControlPlaneClient"):
        self._control_plane = control_plane

    async def issue_oauth_token(self, grant_type: str, client_id: str, client_secret: str, scope: str) -> dict:
        """The OAuth token answer (RFC 6749 §5.1) of a client-credentials grant."""
        if grant_type != "client_credentials":
            raise UnsupportedGrantType("grant_type must be client_credentials")
        if not client_id or not client_secret:
            raise Unauthenticated(INVALID_CREDENTIAL)
        return await self._control_plane.issue_oauth_token(client_id, client_secret, scope)


def host_metadata(base_url: str) -> dict:
    """`/.well-known/databricks-config`: names the OIDC root, which enables the SDK's OAuth sign-in."""
    return {"oidc_endpoint": f"{base_url}/oidc"}


def oidc_metadata(base_url: str) -> dict:
    """`/oidc/.well-known/oauth-authorization-server` (RFC 8414); the SDK reads `token_endpoint`."""
    return {"issuer": f"{base_url}/oidc", "token_endpoint": f"{base_url}/oidc/v1/token",
            "authorization_endpoint": f"{base_url}/oidc/v1/authorize",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["all-apis"], "response_types_supported": ["code"]}
