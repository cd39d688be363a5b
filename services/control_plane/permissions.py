"""Serving-endpoint access-control lists in the Databricks permissions API shapes. Pure.

An endpoint document keeps its direct grants as `acl`: [{"principal_id", "permission_level"}]. The
creator gets CAN_MANAGE; members of the `admins` group manage every endpoint (shown as inherited).
Shapes: databricks-sdk 0.162.0 ServingEndpointPermissions, ServingEndpointAccessControlRequest/Response,
GetServingEndpointPermissionLevelsResponse.
"""

from __future__ import annotations

from collections.abc import Callable

from services.common.errors import InvalidParameter, MalformedRequest
from services.common.principals import ADMINS_GROUP, CAN_MANAGE, GROUP, LEVELS, SERVICE_PRINCIPAL, USER, rank

OBJECT_TYPE = "serving-endpoint"
# Request field naming a principal → the principal kind it names (by userName, displayName, applicationId).
PRINCIPAL_FIELDS = {"user_name": USER, "group_name": GROUP, "service_principal_name": SERVICE_PRINCIPAL}
FIELD_OF = {kind: field for field, kind in PRINCIPAL_FIELDS.items()}
LEVEL_DESCRIPTIONS = {
    "CAN_VIEW": "Can view the endpoint and its configuration",
    "CAN_QUERY": "Can view the endpoint and query it",
    "CAN_MANAGE": "Can view, query, update, delete and manage permissions of the endpoint",
}


def creator_acl(principal_id: str) -> list[dict]:
    return [{"principal_id": principal_id, "permission_level": CAN_MANAGE}]


def acl_pairs(endpoint: dict) -> tuple[tuple[str, str], ...]:
    return tuple((e["principal_id"], e["permission_level"]) for e in endpoint.get("acl", ()))


def parse_request(body: object, find: Callable[[str, str], str | None]) -> list[dict]:
    """Direct grants from an access_control_list request; `find(kind, name)` resolves a principal's id."""
    if not isinstance(body, dict):
        raise MalformedRequest("The request body must be a JSON object")
    entries = body.get("access_control_list", [])
    if not isinstance(entries, list):
        raise MalformedRequest("access_control_list must be a JSON array")
    grants: dict[str, str] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise MalformedRequest(f"access_control_list[{i}] must be a JSON object")
        named = [f for f in PRINCIPAL_FIELDS if entry.get(f)]
        if len(named) != 1:
            raise InvalidParameter(f"access_control_list[{i}] must name exactly one of user_name, group_name, "
                                   "service_principal_name")
        field, level = named[0], entry.get("permission_level")
        if level not in LEVELS:
            raise InvalidParameter(f"access_control_list[{i}].permission_level must be one of {', '.join(LEVELS)}")
        principal_id = find(PRINCIPAL_FIELDS[field], str(entry[field]))
        if principal_id is None:
            raise InvalidParameter(f"access_control_list[{i}]: {field} '{entry[field]}' does not exist")
        if rank(level) > rank(grants.get(principal_id)):
            grants[principal_id] = level
    return [{"principal_id": p, "permission_level": level} for p, level in grants.items()]


def merge(current: list[dict], update: list[dict]) -> list[dict]:
    """PATCH: principals named in the update get exactly the level given; the others keep theirs."""
    updated = {e["principal_id"] for e in update}
    return [e for e in current if e["principal_id"] not in updated] + update


def render(endpoint_id: str, acl: list[dict], describe: Callable[[str], dict | None]) -> dict:
    """ServingEndpointPermissions. `describe(id)` gives {kind, name, display_name} or None (deleted)."""
    entries = []
    for grant in acl:
        who = describe(grant["principal_id"])
        if who is None:
            continue  # the principal was deleted: its grant no longer shows, nor applies
        entry = {FIELD_OF[who["kind"]]: who["name"]}
        if who.get("display_name"):
            entry["display_name"] = who["display_name"]
        entry["all_permissions"] = [{"permission_level": grant["permission_level"], "inherited": False}]
        entries.append(entry)
    entries.append({"group_name": ADMINS_GROUP, "all_permissions": [
        {"permission_level": CAN_MANAGE, "inherited": True, "inherited_from_object": ["/serving-endpoints/"]}]})
    return {"object_id": f"/serving-endpoints/{endpoint_id}", "object_type": OBJECT_TYPE,
            "access_control_list": entries}


def permission_levels() -> dict:
    return {"permission_levels": [{"permission_level": level, "description": LEVEL_DESCRIPTIONS[level]}
                                  for level in LEVELS]}
