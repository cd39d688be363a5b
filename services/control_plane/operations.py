"""The management API's one entry point: an operation name → the core method that decides it.

Every user-facing call of the router's Databricks routes (serving endpoints, SCIM, tokens, service-principal
secrets, permissions, secrets and their ACLs, Unity Catalog grants) arrives as one `Management.Call`
(protos/podium_api/v1/management.proto); this table sends each to its core and answers the REST answer's
JSON. Every core method authenticates and
authorizes the caller itself. A new operation is one row here (and its core method) plus one route row in
services/router/rest_management.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import orjson

from services.common.errors import InvalidParameter, MethodNotAllowed
from services.control_plane import scim
from services.control_plane.core import EndpointService
from services.control_plane.grants import GrantsService
from services.control_plane.identity import IdentityService
from services.control_plane.aliases import AliasResolver, pin_body
from services.control_plane.rollouts import RolloutService
from services.control_plane.secrets_store import SecretsService
from services.control_plane.tokens import TokenService


@dataclass(frozen=True)
class Call:
    token: str
    operation: str
    # The REST route's parameters: name (an endpoint), served_model, id (a principal, token, service principal
    # or endpoint id), sub_id (a service principal's secret id), resource (SCIM: Users | Groups | ServicePrincipals),
    # securable_type and full_name (Unity Catalog grants).
    params: Mapping[str, str] = field(default_factory=dict)
    body: object = None
    query: Mapping[str, str] = field(default_factory=dict)

    def param(self, key: str) -> str:
        """The named route parameter; "" when the call has none (the core then finds nothing by it)."""
        return self.params.get(key, "")

    @property
    def kind(self) -> str:
        try:
            return scim.RESOURCE_KINDS[self.param("resource")]
        except KeyError:
            raise InvalidParameter(f"Unknown SCIM resource type '{self.param('resource')}'") from None


class Operations:
    def __init__(self, identity: IdentityService, tokens: TokenService, secrets: SecretsService,
                 endpoints: EndpointService, grants: GrantsService | None = None,
                 rollouts: RolloutService | None = None, aliases: AliasResolver | None = None):
        self._rollouts = rollouts or RolloutService(endpoints, None)   # canary rollouts of endpoint updates
        self._aliases = aliases   # pins alias-named served entities to a version when a config is written
        self._identity = identity
        # Each handler answers the REST answer: a document, or its JSON already rendered (the endpoint list).
        self._handlers: dict[str, Callable[[Call], Awaitable[dict | bytes]]] = {
            "CREATE_ENDPOINT": lambda c: self._pinned(c, True, lambda body: endpoints.create(c.token, body)),
            "LIST_ENDPOINTS": lambda c: endpoints.list_json(c.token),
            "GET_ENDPOINT": lambda c: endpoints.get(c.token, c.param("name")),
            "DELETE_ENDPOINT": lambda c: endpoints.delete(c.token, c.param("name")),
            "UPDATE_CONFIG": lambda c: self._pinned(
                c, False, lambda body: endpoints.update_config(c.token, c.param("name"), body)),
            "PATCH_TAGS": lambda c: endpoints.patch_tags(c.token, c.param("name"), c.body),
            "PUT_AI_GATEWAY": lambda c: endpoints.put_ai_gateway(c.token, c.param("name"), c.body),
            "PUT_RATE_LIMITS": lambda c: endpoints.put_rate_limits(c.token, c.param("name"), c.body),
            "UPDATE_NOTIFICATIONS": lambda c: endpoints.update_notifications(c.token, c.param("name"), c.body),
            "PATCH_TELEMETRY_CONFIG": lambda c: endpoints.patch_telemetry_config(c.token, c.param("name"), c.body),
            "GET_SERVED_MODEL_LOGS": lambda c: endpoints.served_model_logs(
                c.token, c.param("name"), c.param("served_model"), build=False),
            "GET_SERVED_MODEL_BUILD_LOGS": lambda c: endpoints.served_model_logs(
                c.token, c.param("name"), c.param("served_model"), build=True),
            "GET_ROLLOUT": lambda c: self._rollouts.get(c.token, c.param("name"), c.query.get("judgements_since")),
            "PAUSE_ROLLOUT": lambda c: self._rollouts.pause(c.token, c.param("name")),
            "RESUME_ROLLOUT": lambda c: self._rollouts.resume(c.token, c.param("name")),
            "PROMOTE_ROLLOUT": lambda c: self._rollouts.promote(c.token, c.param("name")),
            "ABORT_ROLLOUT": lambda c: self._rollouts.abort(c.token, c.param("name")),
            "CURRENT_USER": lambda c: identity.me(c.token),
            "LIST_PRINCIPALS": lambda c: identity.list(c.token, c.kind, c.query),
            "CREATE_PRINCIPAL": lambda c: identity.create(c.token, c.kind, c.body),
            "GET_PRINCIPAL": lambda c: identity.get(c.token, c.kind, c.param("id"), c.query),
            "REPLACE_PRINCIPAL": lambda c: identity.replace(c.token, c.kind, c.param("id"), c.body),
            "PATCH_PRINCIPAL": lambda c: identity.patch(c.token, c.kind, c.param("id"), c.body),
            "DELETE_PRINCIPAL": lambda c: identity.delete(c.token, c.kind, c.param("id")),
            "CREATE_TOKEN": lambda c: tokens.create(c.token, c.body),
            "LIST_TOKENS": lambda c: tokens.list(c.token),
            "DELETE_TOKEN": lambda c: tokens.delete(c.token, c.body),
            "LIST_ALL_TOKENS": lambda c: tokens.management_list(c.token, c.query),
            "GET_ANY_TOKEN": lambda c: tokens.management_get(c.token, c.param("id")),
            "DELETE_ANY_TOKEN": lambda c: tokens.management_delete(c.token, c.param("id")),
            "CREATE_OBO_TOKEN": lambda c: tokens.create_on_behalf_of(c.token, c.body),
            "CREATE_SP_SECRET": lambda c: tokens.create_secret(c.token, c.param("id"), c.body),
            "LIST_SP_SECRETS": lambda c: tokens.list_secrets(c.token, c.param("id")),
            "DELETE_SP_SECRET": lambda c: tokens.delete_secret(c.token, c.param("id"), c.param("sub_id")),
            "GET_PERMISSIONS": lambda c: endpoints.get_permissions(c.token, c.param("id")),
            "SET_PERMISSIONS": lambda c: endpoints.set_permissions(c.token, c.param("id"), c.body, replace=True),
            "UPDATE_PERMISSIONS": lambda c: endpoints.set_permissions(c.token, c.param("id"), c.body, replace=False),
            "GET_PERMISSION_LEVELS": lambda c: endpoints.permission_levels(c.token, c.param("id")),
            "CREATE_SCOPE": lambda c: secrets.create_scope(c.token, c.body),
            "LIST_SCOPES": lambda c: secrets.list_scopes(c.token),
            "DELETE_SCOPE": lambda c: secrets.delete_scope(c.token, c.body),
            "PUT_SECRET": lambda c: secrets.put(c.token, c.body),
            "DELETE_SECRET": lambda c: secrets.delete(c.token, c.body),
            "LIST_SECRETS": lambda c: secrets.list(c.token, c.query),
            "GET_SECRET": lambda c: secrets.get(c.token),
            "PUT_SECRET_ACL": lambda c: secrets.put_acl(c.token, c.body),
            "GET_SECRET_ACL": lambda c: secrets.get_acl(c.token, c.query),
            "LIST_SECRET_ACLS": lambda c: secrets.list_acls(c.token, c.query),
            "DELETE_SECRET_ACL": lambda c: secrets.delete_acl(c.token, c.body),
            "GET_GRANTS": lambda c: grants.get(c.token, c.param("securable_type"), c.param("full_name"), c.query),
            "GET_EFFECTIVE_GRANTS": lambda c: grants.get_effective(
                c.token, c.param("securable_type"), c.param("full_name"), c.query),
            "UPDATE_GRANTS": lambda c: grants.update(c.token, c.param("securable_type"), c.param("full_name"), c.body),
        }

    async def _pinned(self, call: Call, is_create: bool, handler: Callable[[object], Awaitable[dict]]) -> dict:
        """The create or update-config answer, alias-named served entities pinned to the version the registry
        names now (services/control_plane/aliases.py)."""
        if self._aliases is None:
            return await handler(call.body)
        await self._identity.authenticate_person(call.token)   # no registry read for a caller who is no one
        return await handler(await pin_body(self._aliases, call.body, is_create=is_create))

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._handlers)

    async def call(self, call: Call) -> bytes:
        """The JSON of the operation's REST answer."""
        handler = self._handlers.get(call.operation)
        if handler is None:
            raise MethodNotAllowed(f"Unknown management operation '{call.operation}'")
        answer = await handler(call)
        return answer if isinstance(answer, bytes) else orjson.dumps(answer)
