"""SCIM 2.0 documents as the Databricks workspace API shows them: validation, rendering, filters, PATCH.

Pure functions over plain dicts; identity.py keeps the records and calls these. Resource shapes follow
databricks-sdk 0.162.0 `service/iam.py` (User, Group, ServicePrincipal, ListUsersResponse, Patch).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from services.common.errors import InvalidParameter, MalformedRequest
from services.common.principals import GROUP, SERVICE_PRINCIPAL, USER

RESOURCE_KINDS = {"Users": USER, "Groups": GROUP, "ServicePrincipals": SERVICE_PRINCIPAL}
RESOURCE_OF = {kind: resource for resource, kind in RESOURCE_KINDS.items()}
SCHEMAS = {
    USER: ["urn:ietf:params:scim:schemas:core:2.0:User",
           "urn:ietf:params:scim:schemas:extension:workspace:2.0:User"],
    GROUP: ["urn:ietf:params:scim:schemas:core:2.0:Group"],
    SERVICE_PRINCIPAL: ["urn:ietf:params:scim:schemas:core:2.0:ServicePrincipal"],
}
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
NAME_ATTRIBUTE = {USER: "userName", GROUP: "displayName", SERVICE_PRINCIPAL: "applicationId"}
# Attributes a caller may set; everything else in a body is ignored, as Databricks does.
_SETTABLE = {
    USER: ("userName", "displayName", "active", "emails", "entitlements", "externalId", "name", "roles"),
    GROUP: ("displayName", "entitlements", "externalId", "roles"),
    SERVICE_PRINCIPAL: ("applicationId", "displayName", "active", "entitlements", "externalId", "roles"),
}
_LISTS = ("emails", "entitlements", "roles")
_NAME = re.compile(r"^[^\s\x00-\x1f][^\x00-\x1f]{0,254}$")


def validate(kind: str, body: object, *, existing: dict | None = None, new_application_id: str = "") -> tuple[str, dict]:
    """(name, document) of a create or full replace (PUT); `existing` keeps fields PUT may not change.

    A new service principal without an applicationId gets `new_application_id` (the caller draws it).
    """
    if not isinstance(body, dict):
        raise MalformedRequest("The request body must be a JSON object")
    doc = {k: body[k] for k in _SETTABLE[kind] if k in body and body[k] is not None}
    if kind == SERVICE_PRINCIPAL:
        doc.setdefault("applicationId", (existing or {}).get("applicationId") or new_application_id)
    name_attribute = NAME_ATTRIBUTE[kind]
    name = doc.get(name_attribute, (existing or {}).get(name_attribute))
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidParameter(f"Missing or invalid required field: {name_attribute}")
    doc[name_attribute] = name
    for field in _LISTS:
        if field in doc and (not isinstance(doc[field], list) or not all(isinstance(v, dict) for v in doc[field])):
            raise InvalidParameter(f"{field} must be a list of objects")
    if "active" in doc and not isinstance(doc["active"], bool):
        raise InvalidParameter("active must be true or false")
    if "displayName" in doc and not isinstance(doc["displayName"], str):
        raise InvalidParameter("displayName must be a string")
    if kind == USER:
        doc.setdefault("displayName", name)
        if "@" in name:
            doc.setdefault("emails", [{"value": name, "type": "work", "primary": True}])
    if kind != GROUP:
        doc.setdefault("active", True)
        doc.setdefault("displayName", name)
    return name, doc


def member_ids(body: object, field: str = "members") -> list[str] | None:
    """The ids in a body's `members` (or `groups`) list of ComplexValue, or None when absent."""
    if not isinstance(body, dict) or body.get(field) is None:
        return None
    values = body[field]
    if not isinstance(values, list) or not all(isinstance(v, dict) and isinstance(v.get("value"), str) for v in values):
        raise InvalidParameter(f"{field} must be a list of objects with a string value")
    return [v["value"] for v in values]


def render(record: dict, *, members: Iterable[dict] = (), groups: Iterable[dict] = ()) -> dict:
    """The SCIM resource; `members` and `groups` are ComplexValues the caller resolved."""
    kind = record["kind"]
    out = {"id": record["id"], **{k: v for k, v in record.items() if k not in ("id", "kind", "name")}}
    if kind == GROUP:
        out["members"] = list(members)
        out["meta"] = {"resourceType": "WorkspaceGroup"}
    groups = list(groups)
    if groups:
        out["groups"] = groups
    out["schemas"] = SCHEMAS[kind]
    return out


def reference(record: dict, membership: str | None = None) -> dict:
    """A ComplexValue pointing at a principal (a member of a group, or a group of a member)."""
    ref = {"display": record.get("displayName") or record["name"], "value": record["id"],
           "$ref": f"{RESOURCE_OF[record['kind']]}/{record['id']}"}
    if membership:
        ref["type"] = membership
    return ref


def page(resources: list[dict], start_index: int, count: int) -> dict:
    """A SCIM ListResponse; startIndex is 1-based and past the end yields an empty page (the SDK's stop)."""
    start = max(start_index, 1)
    chunk = resources[start - 1:start - 1 + max(count, 0)]
    return {"totalResults": len(resources), "itemsPerPage": len(chunk), "startIndex": start,
            "schemas": [LIST_SCHEMA], "Resources": chunk}


def project(resource: dict, attributes: str = "", excluded: str = "") -> dict:
    """Keeps only `attributes` (comma-separated, top level; id and schemas always) minus `excluded`."""
    if attributes:
        wanted = {a.strip() for a in attributes.split(",")} | {"id", "schemas"}
        resource = {k: v for k, v in resource.items() if k in wanted}
    if excluded:
        dropped = {a.strip() for a in excluded.split(",")} - {"id"}
        resource = {k: v for k, v in resource.items() if k not in dropped}
    return resource


# ---- filters: `attr op "value"` joined by `and` / `or` (and binds tighter), as Databricks supports ----

_TERM = re.compile(r'\s*([\w.]+)\s+(eq|ne|co|sw)\s+("(?:[^"\\]|\\.)*"|true|false|\d+)\s*', re.IGNORECASE)
_JOIN = re.compile(r"\s*(and|or)\s+", re.IGNORECASE)


def parse_filter(text: str) -> Callable[[dict], bool]:
    """A predicate over SCIM resources; raises InvalidParameter naming what it cannot parse."""
    alternatives: list[list[Callable[[dict], bool]]] = [[]]
    position = 0
    while True:
        match = _TERM.match(text, position)
        if match is None:
            raise InvalidParameter(f"Unsupported filter expression: {text!r}")
        alternatives[-1].append(_term(*match.groups()))
        position = match.end()
        if position >= len(text):
            break
        join = _JOIN.match(text, position)
        if join is None:
            raise InvalidParameter(f"Unsupported filter expression: {text!r}")
        if join.group(1).lower() == "or":
            alternatives.append([])
        position = join.end()
    return lambda resource: any(all(term(resource) for term in terms) for terms in alternatives)


def _term(path: str, op: str, literal: str) -> Callable[[dict], bool]:
    expected = literal[1:-1].replace('\\"', '"') if literal.startswith('"') else literal.lower()
    op = op.lower()

    def values(resource: dict) -> list[str]:
        head, _, tail = path.partition(".")
        value = next((v for k, v in resource.items() if k.lower() == head.lower()), None)
        items = value if isinstance(value, list) else [value]
        if tail:
            items = [i.get(tail) for i in items if isinstance(i, dict)]
        return [str(i).lower() if isinstance(i, bool) else str(i) for i in items if i is not None]

    def test(resource: dict) -> bool:
        found = values(resource)
        # SCIM compares case-insensitively for these string attributes (caseExact=false).
        lowered, wanted = [f.lower() for f in found], expected.lower()
        if op == "eq":
            return wanted in lowered
        if op == "ne":
            return wanted not in lowered
        if op == "co":
            return any(wanted in f for f in lowered)
        return any(f.startswith(wanted) for f in lowered)
    return test


# ---- PATCH ----

@dataclass
class PatchResult:
    document: dict
    members: list[str] | None      # a group's new member ids (None: unchanged)
    groups: list[str] | None       # a user's / service principal's new group ids (None: unchanged)


_FILTERED_PATH = re.compile(r'^(\w+)\[value eq "([^"]*)"\]$', re.IGNORECASE)


def apply_patch(kind: str, document: dict, members: list[str], groups: list[str], body: object) -> PatchResult:
    """Applies SCIM PatchOp `Operations` (add / replace / remove) to a copy of the resource."""
    if not isinstance(body, dict) or not isinstance(body.get("Operations"), list):
        raise MalformedRequest("A SCIM PATCH body needs an Operations list")
    doc = dict(document)
    new_members: list[str] | None = None
    new_groups: list[str] | None = None
    for i, operation in enumerate(body["Operations"]):
        if not isinstance(operation, dict) or str(operation.get("op", "")).lower() not in ("add", "replace", "remove"):
            raise InvalidParameter(f"Operations[{i}].op must be add, replace or remove")
        op, path, value = operation["op"].lower(), operation.get("path") or "", operation.get("value")
        if not path:
            if not isinstance(value, dict):
                raise InvalidParameter(f"Operations[{i}] without a path needs an object value")
            for attribute, attribute_value in value.items():
                doc, new_members, new_groups = _apply(kind, doc, members if new_members is None else new_members,
                                                      groups if new_groups is None else new_groups,
                                                      op, attribute, attribute_value, new_members, new_groups, i)
            continue
        doc, new_members, new_groups = _apply(kind, doc, members if new_members is None else new_members,
                                              groups if new_groups is None else new_groups,
                                              op, path, value, new_members, new_groups, i)
    return PatchResult(doc, new_members, new_groups)


def _apply(kind, doc, members, groups, op, path, value, new_members, new_groups, i):
    filtered = _FILTERED_PATH.fullmatch(path)
    attribute, selected = (filtered.group(1), filtered.group(2)) if filtered else (path, None)
    if attribute == "members" and kind == GROUP:
        return doc, _edit_ids(members, op, value, selected, i), new_groups
    if attribute == "groups" and kind != GROUP:
        return doc, new_members, _edit_ids(groups, op, value, selected, i)
    if attribute in _LISTS:
        current = list(doc.get(attribute, []))
        if op == "remove":
            removed = [{"value": selected}] if selected is not None else _as_list(value, i)
            doc[attribute] = [v for v in current if v.get("value") not in {r.get("value") for r in removed}]
        else:
            additions = _as_list(value, i)
            doc[attribute] = additions if op == "replace" else current + [v for v in additions if v not in current]
        return doc, new_members, new_groups
    if attribute.startswith("name."):
        doc["name"] = {**doc.get("name", {}), attribute[5:]: value}
        return doc, new_members, new_groups
    if attribute not in _SETTABLE[kind] or attribute == "applicationId":
        raise InvalidParameter(f"Operations[{i}]: attribute '{path}' cannot be changed")
    if op == "remove":
        doc.pop(attribute, None)
        return doc, new_members, new_groups
    # Clients send scalars bare, as ["x"] or as [{"value": x}] (the SDK drops a bare False entirely).
    if isinstance(value, list) and len(value) == 1:
        value = value[0].get("value") if isinstance(value[0], dict) else value[0]
    if value is None:
        raise InvalidParameter(f"Operations[{i}]: {op} of '{path}' needs a value")
    if attribute == "active" and isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    doc[attribute] = value
    return doc, new_members, new_groups


def _edit_ids(current: list[str], op: str, value, selected: str | None, i: int) -> list[str]:
    ids = [v["value"] for v in _as_list(value, i)] if value is not None else []
    if op == "replace":
        return list(dict.fromkeys(ids))
    if op == "add":
        return list(dict.fromkeys(current + ids))
    removed = {selected} if selected is not None else set(ids)
    if selected is None and value is None:
        return []  # remove the whole attribute
    return [m for m in current if m not in removed]


def _as_list(value, i: int) -> list[dict]:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, dict) for v in items):
        raise InvalidParameter(f"Operations[{i}].value must be an object or a list of objects")
    if any("value" in v and not isinstance(v["value"], (str, bool, int)) for v in items):
        raise InvalidParameter(f"Operations[{i}].value entries need a scalar value")
    return [{**v, "value": str(v["value"])} if "value" in v and not isinstance(v["value"], bool) else v for v in items]
