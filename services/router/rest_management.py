"""REST adapter of the management API: serving endpoints, SCIM, tokens, token management, service-principal
secrets, serving-endpoint permissions, secrets and their ACLs, and Unity Catalog grants on registered models,
each route one row of ROUTES.

One handler serves every row: it sends the row's operation, the path's parameters, the query and the body,
with the caller's credential, through the Gateway to the control plane's Management service
(protos/podium_api/v1/management.proto), whose cores decide; the answer is their JSON, as it is.
A new operation is one row here plus one row (and its core method) in services/control_plane/operations.py.

Paths and shapes: the Databricks serving API, databricks-sdk 0.162.0 (`service/serving.py`, `iam.py`,
`settings.py`, `workspace.py`, `catalog.py`) and docs/identity-wire.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from services.router.core import Gateway
from services.router.rest_identity import bearer_token

JSON = "application/json"
# Optional trailing slash: mlflow calls /api/2.0/serving-endpoints/ (sic) for list and create.
SLASH = "{slash:/?}"
ENDPOINTS = "/api/2.0/serving-endpoints"
SCIM = "/api/2.0/preview/scim/v2"
SP_SECRETS = "/api/2.0/accounts/servicePrincipals/{id}/credentials/secrets"
PERMISSIONS = "/api/2.0/permissions/serving-endpoints/{id}"
UC_GRANTS = "/api/2.1/unity-catalog/permissions/{securable_type}/{full_name}"


@dataclass(frozen=True)
class Route:
    method: str
    path: str                      # {name}, {served_model}, {id}, {sub_id}: the call's parameters
    operation: str                 # the control plane's operation (services/control_plane/operations.py)
    status: int = 200              # the HTTP status of success
    params: Mapping[str, str] = field(default_factory=dict)   # parameters the path names literally
    # Read your writes: answered once this router's routing table has the endpoint the answer names, so a
    # caller may query an external model (ready at once) right after creating it.
    waits_for_routing: bool = False


ROUTES: list[Route] = [
    Route("POST", ENDPOINTS, "CREATE_ENDPOINT", waits_for_routing=True),
    Route("GET", ENDPOINTS, "LIST_ENDPOINTS"),
    Route("GET", ENDPOINTS + "/{name}", "GET_ENDPOINT"),
    Route("DELETE", ENDPOINTS + "/{name}", "DELETE_ENDPOINT"),
    Route("PUT", ENDPOINTS + "/{name}/config", "UPDATE_CONFIG"),
    Route("PATCH", ENDPOINTS + "/{name}/tags", "PATCH_TAGS"),
    Route("PUT", ENDPOINTS + "/{name}/ai-gateway", "PUT_AI_GATEWAY"),
    Route("PUT", ENDPOINTS + "/{name}/rate-limits", "PUT_RATE_LIMITS"),
    Route("PATCH", ENDPOINTS + "/{name}/notifications", "UPDATE_NOTIFICATIONS"),
    Route("PATCH", ENDPOINTS + "/{name}/telemetry-config", "PATCH_TELEMETRY_CONFIG"),
    Route("GET", ENDPOINTS + "/{name}/served-models/{served_model}/logs", "GET_SERVED_MODEL_LOGS"),
    Route("GET", ENDPOINTS + "/{name}/served-models/{served_model}/build-logs", "GET_SERVED_MODEL_BUILD_LOGS"),
    # Podium's canary rollouts (docs/progressive-delivery.md)
    Route("GET", ENDPOINTS + "/{name}/rollout", "GET_ROLLOUT"),
    Route("POST", ENDPOINTS + "/{name}/rollout/pause", "PAUSE_ROLLOUT"),
    Route("POST", ENDPOINTS + "/{name}/rollout/resume", "RESUME_ROLLOUT"),
    Route("POST", ENDPOINTS + "/{name}/rollout/promote", "PROMOTE_ROLLOUT"),
    Route("POST", ENDPOINTS + "/{name}/rollout/abort", "ABORT_ROLLOUT"),
    Route("GET", f"{SCIM}/Me", "CURRENT_USER"),
]
for _resource in ("Users", "Groups", "ServicePrincipals"):
    _names = {"resource": _resource}
    ROUTES += [
        Route("GET", f"{SCIM}/{_resource}", "LIST_PRINCIPALS", params=_names),
        Route("POST", f"{SCIM}/{_resource}", "CREATE_PRINCIPAL", 201, params=_names),
        Route("GET", f"{SCIM}/{_resource}/{{id}}", "GET_PRINCIPAL", params=_names),
        Route("PUT", f"{SCIM}/{_resource}/{{id}}", "REPLACE_PRINCIPAL", params=_names),
        Route("PATCH", f"{SCIM}/{_resource}/{{id}}", "PATCH_PRINCIPAL", params=_names),
        Route("DELETE", f"{SCIM}/{_resource}/{{id}}", "DELETE_PRINCIPAL", params=_names),
    ]
ROUTES += [
    Route("POST", "/api/2.0/token/create", "CREATE_TOKEN"),
    Route("GET", "/api/2.0/token/list", "LIST_TOKENS"),
    Route("POST", "/api/2.0/token/delete", "DELETE_TOKEN"),
    Route("GET", "/api/2.0/token-management/tokens", "LIST_ALL_TOKENS"),
    Route("GET", "/api/2.0/token-management/tokens/{id}", "GET_ANY_TOKEN"),
    Route("DELETE", "/api/2.0/token-management/tokens/{id}", "DELETE_ANY_TOKEN"),
    Route("POST", "/api/2.0/token-management/on-behalf-of/tokens", "CREATE_OBO_TOKEN"),
    Route("POST", SP_SECRETS, "CREATE_SP_SECRET"),
    Route("GET", SP_SECRETS, "LIST_SP_SECRETS"),
    Route("DELETE", SP_SECRETS + "/{sub_id}", "DELETE_SP_SECRET"),
    Route("GET", PERMISSIONS, "GET_PERMISSIONS"),
    Route("PUT", PERMISSIONS, "SET_PERMISSIONS"),
    Route("PATCH", PERMISSIONS, "UPDATE_PERMISSIONS"),
    Route("GET", PERMISSIONS + "/permissionLevels", "GET_PERMISSION_LEVELS"),
    Route("POST", "/api/2.0/secrets/scopes/create", "CREATE_SCOPE"),
    Route("GET", "/api/2.0/secrets/scopes/list", "LIST_SCOPES"),
    Route("POST", "/api/2.0/secrets/scopes/delete", "DELETE_SCOPE"),
    Route("POST", "/api/2.0/secrets/put", "PUT_SECRET"),
    Route("POST", "/api/2.0/secrets/delete", "DELETE_SECRET"),
    Route("GET", "/api/2.0/secrets/list", "LIST_SECRETS"),
    Route("GET", "/api/2.0/secrets/get", "GET_SECRET"),   # always refused: values are never returned
    Route("POST", "/api/2.0/secrets/acls/put", "PUT_SECRET_ACL"),
    Route("GET", "/api/2.0/secrets/acls/get", "GET_SECRET_ACL"),
    Route("GET", "/api/2.0/secrets/acls/list", "LIST_SECRET_ACLS"),
    Route("POST", "/api/2.0/secrets/acls/delete", "DELETE_SECRET_ACL"),
    Route("GET", UC_GRANTS, "GET_GRANTS"),
    Route("PATCH", UC_GRANTS, "UPDATE_GRANTS"),
    Route("GET", "/api/2.1/unity-catalog/effective-permissions/{securable_type}/{full_name}", "GET_EFFECTIVE_GRANTS"),
]


class ManagementRoutes:
    def __init__(self, gateway: Gateway):
        self._gateway = gateway

    def register(self, router: web.UrlDispatcher) -> None:
        for route in ROUTES:
            if route.method == "GET":   # HEAD too, as on every GET route
                router.add_get(route.path + SLASH, self._handler(route))
            else:
                router.add_route(route.method, route.path + SLASH, self._handler(route))

    def _handler(self, route: Route):
        async def handle(request: web.Request) -> web.Response:
            params = {**route.params, **{k: v for k, v in request.match_info.items() if k != "slash"}}
            answer = await self._gateway.manage(
                bearer_token(request), route.operation, params=params, query=dict(request.query),
                body=await request.read(), waits_for_routing=route.waits_for_routing)
            return web.Response(body=answer, status=route.status, content_type=JSON)
        return handle
