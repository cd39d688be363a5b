"""REST adapter of who the caller is: the credential every route reads, and the sign-in routes that are public
by nature (the SDK's probe, OAuth discovery, and the token endpoint, where the client secret is the credential).

Shapes: databricks-sdk 0.162.0 (`oauth2.py`, `config.py`) and docs/identity-wire.md. SCIM, tokens, permissions
and secrets are management routes (rest_management.py).
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote

import orjson
from aiohttp import web

from services.common.errors import PodiumError, Unavailable
from services.router.sign_in import SignIn, host_metadata, oidc_metadata

JSON = "application/json"


def bearer_token(request: web.Request) -> str:
    """The credential of `Authorization: Bearer <credential>`; "" when absent or another scheme."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else ""


def base_url(request: web.Request) -> str:
    """The scheme and host the client used (behind a proxy: the Host it sent), so URLs point where it can reach."""
    return f"{request.scheme}://{request.host}"


class SignInRoutes:
    def __init__(self, sign_in: SignIn | None):
        self._sign_in = sign_in    # None: this router issues no OAuth tokens (the discovery still answers)

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/.well-known/databricks-config", self.databricks_config)
        router.add_get("/oidc/.well-known/oauth-authorization-server", self.oidc_metadata)
        router.add_post("/oidc/v1/token", self.token)

    async def databricks_config(self, request: web.Request) -> web.Response:
        # Every databricks-sdk client (and so every mlflow call) probes this first, unauthenticated: answer fast.
        return web.Response(body=orjson.dumps(host_metadata(base_url(request))), content_type=JSON)

    async def oidc_metadata(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(oidc_metadata(base_url(request))), content_type=JSON)

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        client_id, client_secret = _basic_credentials(request)
        if not client_id:  # client_secret_post: the credentials in the form instead
            client_id, client_secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        try:
            if self._sign_in is None:
                raise Unavailable("this router issues no OAuth tokens")
            issued = await self._sign_in.issue_oauth_token(
                str(form.get("grant_type", "")), client_id, client_secret, str(form.get("scope", "")))
        except PodiumError as exc:
            # RFC 6749 §5.2 names (the SDK shows `error: error_description`), plus Podium's usual fields.
            oauth_error = getattr(exc, "oauth_error", None) or \
                {"UNAUTHENTICATED": "invalid_client"}.get(exc.code, "invalid_request")
            body = {"error": oauth_error, "error_description": exc.message, "error_code": exc.code,
                    "message": exc.message}
            return web.Response(body=orjson.dumps(body), status=exc.http_status, content_type=JSON,
                                headers={"Cache-Control": "no-store"})
        return web.Response(body=orjson.dumps(issued), content_type=JSON,
                            headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _basic_credentials(request: web.Request) -> tuple[str, str]:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        client_id, _, client_secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    return unquote(client_id), unquote(client_secret)  # RFC 6749 §2.3.1 form-encodes both
