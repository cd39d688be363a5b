"""REST adapter for the Databricks identity APIs: SCIM, tokens, token management, service-principal secrets,
serving-endpoint permissions, secrets, and the OIDC sign-in the SDK's oauth-m2m performs.

Paths and shapes: databricks-sdk 0.162.0 (`service/iam.py`, `settings.py`, `oauth2.py`, `workspace.py`) and
docs/identity-wire.md. Each route is one row: the Gateway sends the call, with the caller's credential,
to the control plane's Identity service under the row's operation name; the cores decide.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote

import orjson
from aiohttp import web

from services.common.errors import PodiumError

JSON = "application/json"
SCIM = "/api/2.0/preview/scim/v2"
SP_SECRETS = "/api/2.0/accounts/servicePrincipals/{id}/credentials/secrets"
PERMISSIONS = "/api/2.0/permissions/serving-endpoints/{id}"

# (method, path, operation, SCIM resource, HTTP status of success)
ROUTES: list[tuple[str, str, str, str, int]] = [("GET", f"{SCIM}/Me", "CURRENT_USER", "", 200)]
for _resource in ("Users", "Groups", "ServicePrincipals"):
    ROUTES += [
        ("GET", f"{SCIM}/{_resource}", "LIST_PRINCIPALS", _resource, 200),
        ("POST", f"{SCIM}/{_resource}", "CREATE_PRINCIPAL", _resource, 201),
        ("GET", f"{SCIM}/{_resource}/{{id}}", "GET_PRINCIPAL", _resource, 200),
        ("PUT", f"{SCIM}/{_resource}/{{id}}", "REPLACE_PRINCIPAL", _resource, 200),
        ("PATCH", f"{SCIM}/{_resource}/{{id}}", "PATCH_PRINCIPAL", _resource, 200),
        ("DELETE", f"{SCIM}/{_resource}/{{id}}", "DELETE_PRINCIPAL", _resource, 200),
    ]
ROUTES += [
    ("POST", "/api/2.0/token/create", "CREATE_TOKEN", "", 200),
    ("GET", "/api/2.0/token/list", "LIST_TOKENS", "", 200),
    ("POST", "/api/2.0/token/delete", "DELETE_TOKEN", "", 200),
    ("GET", "/api/2.0/token-management/tokens", "LIST_ALL_TOKENS", "", 200),
    ("GET", "/api/2.0/token-management/tokens/{id}", "GET_ANY_TOKEN", "", 200),
    ("DELETE", "/api/2.0/token-management/tokens/{id}", "DELETE_ANY_TOKEN", "", 200),
    ("POST", "/api/2.0/token-management/on-behalf-of/tokens", "CREATE_OBO_TOKEN", "", 200),
    ("POST", SP_SECRETS, "CREATE_SP_SECRET", "", 200),
    ("GET", SP_SECRETS, "LIST_SP_SECRETS", "", 200),
    ("DELETE", SP_SECRETS + "/{sub_id}", "DELETE_SP_SECRET", "", 200),
    ("GET", PERMISSIONS, "GET_PERMISSIONS", "", 200),
    ("PUT", PERMISSIONS, "SET_PERMISSIONS", "", 200),
    ("PATCH", PERMISSIONS, "UPDATE_PERMISSIONS", "", 200),
    ("GET", PERMISSIONS + "/permissionLevels", "GET_PERMISSION_LEVELS", "", 200),
    ("POST", "/api/2.0/secrets/scopes/create", "CREATE_SCOPE", "", 200),
    ("GET", "/api/2.0/secrets/scopes/list", "LIST_SCOPES", "", 200),
    ("POST", "/api/2.0/secrets/scopes/delete", "DELETE_SCOPE", "", 200),
    ("POST", "/api/2.0/secrets/put", "PUT_SECRET", "", 200),
    ("POST", "/api/2.0/secrets/delete", "DELETE_SECRET", "", 200),
    ("GET", "/api/2.0/secrets/list", "LIST_SECRETS", "", 200),
    ("GET", "/api/2.0/secrets/get", "GET_SECRET", "", 200),   # always refused: values are never returned
]
# Public by nature: the SDK's probe and OAuth discovery, and the token endpoint (the secret is the credential).
PUBLIC_PATHS = ("/.well-known/databricks-config", "/healthz", "/oidc/.well-known/oauth-authorization-server",
                "/oidc/v1/token")


def bearer_token(request: web.Request) -> str:
    """The credential of `Authorization: Bearer <credential>`; "" when absent or another scheme."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else ""


def base_url(request: web.Request) -> str:
    """The scheme and host the client used, so the OIDC URLs point where it can reach them."""
    return f"{request.scheme}://{request.host}"


def _identity_handler(gateway_key, operation: str, resource: str, status: int):
    async def handle(request: web.Request) -> web.Response:
        answer = await request.app[gateway_key].identity_call(
            bearer_token(request), operation, resource=resource, id=request.match_info.get("id", ""),
            sub_id=request.match_info.get("sub_id", ""), body=await request.read(), query=dict(request.query))
        return web.Response(body=answer, status=status, content_type=JSON)
    return handle


def _oidc_metadata(gateway_key):
    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(request.app[gateway_key].oidc_metadata(base_url(request))),
                            content_type=JSON)
    return handle


def _token_endpoint(gateway_key):
    async def handle(request: web.Request) -> web.Response:
        form = await request.post()
        client_id, client_secret = _basic_credentials(request)
        if not client_id:  # client_secret_post: the credentials in the form instead
            client_id, client_secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        try:
            issued = await request.app[gateway_key].issue_oauth_token(
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
    return handle


def _basic_credentials(request: web.Request) -> tuple[str, str]:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        client_id, _, client_secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    return unquote(client_id), unquote(client_secret)  # RFC 6749 §2.3.1 form-encodes both


def add_identity_routes(app: web.Application, gateway_key) -> None:
    for method, path, operation, resource, status in ROUTES:
        app.router.add_route(method, path + "{slash:/?}", _identity_handler(gateway_key, operation, resource, status))
    app.router.add_get("/oidc/.well-known/oauth-authorization-server", _oidc_metadata(gateway_key))
    app.router.add_post("/oidc/v1/token", _token_endpoint(gateway_key))
