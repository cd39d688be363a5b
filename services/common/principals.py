"""Who is calling, and what an access-control list grants them. Pure: no I/O, no clock.

Both cores use it: the control plane for management calls, the router's Gateway for queries (with the
ACL that rides in the routing table, so a query costs no control-plane round trip).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field

from services.common.errors import EndpointNotFound, PermissionDenied, Unauthenticated

USER, SERVICE_PRINCIPAL, GROUP, SERVICE = "user", "service_principal", "group", "service"

# Databricks serving-endpoint permission levels, weakest first.
CAN_VIEW, CAN_QUERY, CAN_MANAGE = "CAN_VIEW", "CAN_QUERY", "CAN_MANAGE"
LEVELS: tuple[str, ...] = (CAN_VIEW, CAN_QUERY, CAN_MANAGE)
_RANK = {level: rank for rank, level in enumerate(LEVELS, start=1)}

ADMINS_GROUP = "admins"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller, as access checks, rate limits and usage records see it.

    `name` is a user's name (email) or a service principal's application id. `kind` is USER or
    SERVICE_PRINCIPAL for people and automation, SERVICE for Podium's own processes (which are never granted
    anything on endpoints). `group_ids` holds every group the principal is in, nested groups included.
    `expires_at` (epoch seconds) is when the credential used stops being valid.
    """

    id: str
    name: str
    kind: str
    display_name: str = ""
    group_ids: frozenset[str] = field(default_factory=frozenset)
    group_names: frozenset[str] = field(default_factory=frozenset)   # the same groups' displayNames
    is_admin: bool = False
    expires_at: float | None = None
    # A replica credential's: the only endpoints it may query, and nothing else; None for every other one.
    endpoint_scope: frozenset[str] | None = None

    @property
    def is_service(self) -> bool:
        return self.kind == SERVICE


def rank(level: str | None) -> int:
    """0 for no access, then 1..3 for CAN_VIEW..CAN_MANAGE; unknown names count as no access."""
    return _RANK.get(level or "", 0)


def effective_level(caller: Principal, acl: Iterable[tuple[str, str]]) -> str | None:
    """The strongest level the ACL grants the caller, directly or through a group; admins manage all."""
    if caller.is_service:
        return None
    if caller.is_admin:
        return CAN_MANAGE
    best = None
    for principal_id, level in acl:
        if (principal_id == caller.id or principal_id in caller.group_ids) and rank(level) > rank(best):
            best = level
    return best


def require_level(caller: Principal, acl: Iterable[tuple[str, str]], needed: str, endpoint_name: str) -> str:
    """The caller's level on an endpoint when it is at least `needed`.

    Raises EndpointNotFound (the same error an unknown name gets, so names don't leak) when the caller
    may not even view the endpoint, PermissionDenied when it may view it but needs more.
    """
    if caller.endpoint_scope is not None and (endpoint_name not in caller.endpoint_scope or
                                              rank(needed) > rank(CAN_QUERY)):
        # The same answer for every other name, known or not: the scope says nothing of what exists.
        raise PermissionDenied(f"This replica credential may only query the endpoints its model declared as "
                               f"resources, not {needed} on '{endpoint_name}'")
    level = effective_level(caller, acl)
    if rank(level) < rank(CAN_VIEW):
        raise EndpointNotFound(f"Endpoint with name '{endpoint_name}' does not exist")
    if rank(level) < rank(needed):
        raise PermissionDenied(f"{needed} permission on endpoint '{endpoint_name}' is required")
    return level  # type: ignore[return-value]


def require_unscoped(caller: Principal) -> None:
    """A replica credential (`endpoint_scope`) queries its endpoints and calls nothing else."""
    if caller.endpoint_scope is not None:
        raise PermissionDenied("A replica credential may only query the endpoints its model declared")


def require_service_credential(token: str, expected: str) -> None:
    """Only the holder of Podium's internal service credential passes (none configured: nobody does)."""
    if not (token and expected and hmac.compare_digest(token.encode(), expected.encode())):
        raise Unauthenticated("Invalid access token.")
