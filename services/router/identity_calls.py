"""The Gateway's identity calls: SCIM, tokens, permissions and secrets (forwarded, with the caller's
credential, to the control plane's Identity service), and the OAuth sign-in the Databricks SDK performs.

A part of the router's one core (Gateway inherits it), kept apart only for size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.common.errors import Unauthenticated, UnsupportedGrantType
from services.router.auth import INVALID_CREDENTIAL, TokenCache

if TYPE_CHECKING:
    from services.common.control_plane_client import ControlPlaneClient


class IdentityCalls:
    _auth: TokenCache
    _control_plane: "ControlPlaneClient"

    async def identity_call(self, token: str, operation: str, *, resource: str = "", id: str = "",
                            sub_id: str = "", body: bytes = b"", query: dict[str, str] | None = None) -> bytes:
        """One Identity operation (protos/podium_api/v1/identity.proto); the control plane authorizes it."""
        await self._auth.caller(token)
        return await self._control_plane.identity_call(token, operation, resource=resource, id=id, sub_id=sub_id,
                                                       body=body, query=query)

    # ---- sign-in: public by nature (the OAuth client secret is the credential) ----

    async def issue_oauth_token(self, grant_type: str, client_id: str, client_secret: str, scope: str) -> dict:
        """The OAuth client-credentials grant the Databricks SDK's oauth-m2m sign-in performs."""
        if grant_type != "client_credentials":
            raise UnsupportedGrantType("grant_type must be client_credentials")
        if not client_id or not client_secret:
            raise Unauthenticated(INVALID_CREDENTIAL)
        return await self._control_plane.issue_oauth_token(client_id, client_secret, scope)

    @staticmethod
    def host_metadata(base_url: str) -> dict:
        """`/.well-known/databricks-config`: names the OIDC root, which enables the SDK's OAuth sign-in."""
        return {"oidc_endpoint": f"{base_url}/oidc"}

    @staticmethod
    def oidc_metadata(base_url: str) -> dict:
        """`/oidc/.well-known/oauth-authorization-server` (RFC 8414); the SDK reads `token_endpoint`."""
        return {"issuer": f"{base_url}/oidc", "token_endpoint": f"{base_url}/oidc/v1/token",
                "authorization_endpoint": f"{base_url}/oidc/v1/authorize",
                "grant_types_supported": ["client_credentials"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "scopes_supported": ["all-apis"], "response_types_supported": ["code"]}
