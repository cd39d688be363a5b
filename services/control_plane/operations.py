"""The identity API's one entry point: an operation name → the core method that decides it.

The router's Databricks routes for SCIM, tokens, service-principal secrets, permissions and secrets all
arrive as one `Identity.Call` (protos/podium_api/v1/identity.proto); this table sends each to its core.
Every core method authenticates and authorizes the caller itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from services.common.errors import InvalidParameter, MethodNotAllowed
from services.control_plane import scim
from services.control_plane.core import EndpointService
from services.control_plane.identity import IdentityService
from services.control_plane.secrets_store import SecretsService
from services.control_plane.tokens import TokenService


@dataclass(frozen=True)
class Call:
    token: str
    operation: str
    resource: str = ""           # SCIM: Users | Groups | ServicePrincipals
    id: str = ""                 # the principal, token, service principal or endpoint id in the path
    sub_id: str = ""             # a service principal's secret id
    body: object = None
    query: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        try:
            return scim.RESOURCE_KINDS[self.resource]
        except KeyError:
            raise InvalidParameter(f"Unknown SCIM resource type '{self.resource}'") from None


class Operations:
    def __init__(self, identity: IdentityService, tokens: TokenService, secrets: SecretsService,
                 endpoints: EndpointService):
        self._handlers: dict[str, Callable[[Call], Awaitable[dict]]] = {
            "CURRENT_USER": lambda c: identity.me(c.token),
            "LIST_PRINCIPALS": lambda c: identity.list(c.token, c.kind, c.query),
            "CREATE_PRINCIPAL": lambda c: identity.create(c.token, c.kind, c.body),
            "GET_PRINCIPAL": lambda c: identity.get(c.token, c.kind, c.id, c.query),
            "REPLACE_PRINCIPAL": lambda c: identity.replace(c.token, c.kind, c.id, c.body),
            "PATCH_PRINCIPAL": lambda c: identity.patch(c.token, c.kind, c.id, c.body),
            "DELETE_PRINCIPAL": lambda c: identity.delete(c.token, c.kind, c.id),
            "CREATE_TOKEN": lambda c: tokens.create(c.token, c.body),
            "LIST_TOKENS": lambda c: tokens.list(c.token),
            "DELETE_TOKEN": lambda c: tokens.delete(c.token, c.body),
            "LIST_ALL_TOKENS": lambda c: tokens.management_list(c.token, c.query),
            "GET_ANY_TOKEN": lambda c: tokens.management_get(c.token, c.id),
            "DELETE_ANY_TOKEN": lambda c: tokens.management_delete(c.token, c.id),
            "CREATE_OBO_TOKEN": lambda c: tokens.create_on_behalf_of(c.token, c.body),
            "CREATE_SP_SECRET": lambda c: tokens.create_secret(c.token, c.id, c.body),
            "LIST_SP_SECRETS": lambda c: tokens.list_secrets(c.token, c.id),
            "DELETE_SP_SECRET": lambda c: tokens.delete_secret(c.token, c.id, c.sub_id),
            "GET_PERMISSIONS": lambda c: endpoints.get_permissions(c.token, c.id),
            "SET_PERMISSIONS": lambda c: endpoints.set_permissions(c.token, c.id, c.body, replace=True),
            "UPDATE_PERMISSIONS": lambda c: endpoints.set_permissions(c.token, c.id, c.body, replace=False),
            "GET_PERMISSION_LEVELS": lambda c: endpoints.permission_levels(c.token, c.id),
            "CREATE_SCOPE": lambda c: secrets.create_scope(c.token, c.body),
            "LIST_SCOPES": lambda c: secrets.list_scopes(c.token),
            "DELETE_SCOPE": lambda c: secrets.delete_scope(c.token, c.body),
            "PUT_SECRET": lambda c: secrets.put(c.token, c.body),
            "DELETE_SECRET": lambda c: secrets.delete(c.token, c.body),
            "LIST_SECRETS": lambda c: secrets.list(c.token, c.query),
            "GET_SECRET": lambda c: secrets.get(c.token),
        }

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._handlers)

    async def call(self, call: Call) -> dict:
        handler = self._handlers.get(call.operation)
        if handler is None:
            raise MethodNotAllowed(f"Unknown identity operation '{call.operation}'")
        return await handler(call)
