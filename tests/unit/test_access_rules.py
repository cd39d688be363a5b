"""Pure access rules as tables: permission levels, ACL requests, SCIM filters and PATCH operations."""

from __future__ import annotations

import pytest

from services.common.errors import EndpointNotFound, InvalidParameter, PermissionDenied
from services.common.principals import SERVICE, USER, Principal, effective_level, require_level
from services.control_plane import permissions, scim

ALICE = Principal(id="a", name="alice", kind=USER, group_ids=frozenset({"g"}))
ADMIN = Principal(id="z", name="admin", kind=USER, is_admin=True)
PODIUM = Principal(id="0", name="podium-internal", kind=SERVICE, is_admin=True)


@pytest.mark.parametrize("caller, acl, want", [
    pytest.param(ALICE, [], None, id="no grant"),
    pytest.param(ALICE, [("a", "CAN_VIEW")], "CAN_VIEW", id="direct"),
    pytest.param(ALICE, [("g", "CAN_QUERY"), ("a", "CAN_VIEW")], "CAN_QUERY", id="a group grants more"),
    pytest.param(ALICE, [("a", "CAN_MANAGE"), ("g", "CAN_VIEW")], "CAN_MANAGE", id="the strongest wins"),
    pytest.param(ALICE, [("b", "CAN_MANAGE")], None, id="someone else's grant"),
    pytest.param(ALICE, [("a", "CAN_EVERYTHING")], None, id="unknown level grants nothing"),
    pytest.param(ADMIN, [], "CAN_MANAGE", id="admins manage all"),
    pytest.param(PODIUM, [("0", "CAN_MANAGE")], None, id="Podium's services are granted nothing"),
])
def test_effective_level(caller, acl, want):
    assert effective_level(caller, acl) == want


@pytest.mark.parametrize("acl, needed, raised", [
    pytest.param([], "CAN_VIEW", EndpointNotFound, id="cannot view: does not exist"),
    pytest.param([], "CAN_MANAGE", EndpointNotFound, id="cannot view: still does not exist"),
    pytest.param([("a", "CAN_VIEW")], "CAN_QUERY", PermissionDenied, id="view but not query"),
    pytest.param([("a", "CAN_QUERY")], "CAN_MANAGE", PermissionDenied, id="query but not manage"),
    pytest.param([("a", "CAN_QUERY")], "CAN_QUERY", None, id="enough"),
])
def test_require_level(acl, needed, raised):
    if raised is None:
        assert require_level(ALICE, acl, needed, "e") == "CAN_QUERY"
    else:
        with pytest.raises(raised) as error:
            require_level(ALICE, acl, needed, "e")
        if raised is EndpointNotFound:
            assert error.value.message == "Endpoint with name 'e' does not exist"


NAMES = {("user", "alice"): "a", ("group", "team"): "g", ("service_principal", "app-1"): "s"}


@pytest.mark.parametrize("body, want", [
    pytest.param({"access_control_list": []}, [], id="empty"),
    pytest.param({"access_control_list": [{"user_name": "alice", "permission_level": "CAN_QUERY"},
                                          {"group_name": "team", "permission_level": "CAN_VIEW"},
                                          {"service_principal_name": "app-1", "permission_level": "CAN_MANAGE"}]},
                 [("a", "CAN_QUERY"), ("g", "CAN_VIEW"), ("s", "CAN_MANAGE")], id="each principal kind"),
    pytest.param({"access_control_list": [{"user_name": "alice", "permission_level": "CAN_VIEW"},
                                          {"user_name": "alice", "permission_level": "CAN_MANAGE"}]},
                 [("a", "CAN_MANAGE")], id="duplicates keep the strongest"),
    pytest.param({"access_control_list": [{"user_name": "bob", "permission_level": "CAN_VIEW"}]},
                 "bob", id="unknown principal"),
    pytest.param({"access_control_list": [{"user_name": "alice", "permission_level": "CAN_RUN"}]},
                 "permission_level", id="unknown level"),
    pytest.param({"access_control_list": [{"user_name": "alice", "group_name": "team", "permission_level": "CAN_VIEW"}]},
                 "exactly one", id="two principals in one entry"),
])
def test_parse_acl_request(body, want):
    find = lambda kind, name: NAMES.get((kind, name))  # noqa: E731
    if isinstance(want, str):
        with pytest.raises(InvalidParameter, match=want):
            permissions.parse_request(body, find)
    else:
        assert [(g["principal_id"], g["permission_level"]) for g in permissions.parse_request(body, find)] == want


def test_patch_merges_and_put_replaces():
    current = [{"principal_id": "a", "permission_level": "CAN_VIEW"}, {"principal_id": "b", "permission_level": "CAN_QUERY"}]
    update = [{"principal_id": "a", "permission_level": "CAN_MANAGE"}]
    assert permissions.merge(current, update) == [current[1], update[0]]


USERS = [{"id": "1", "userName": "alice@example.com", "displayName": "Alice", "active": True,
          "emails": [{"value": "alice@example.com"}]},
         {"id": "2", "userName": "bob@corp.io", "displayName": "Bob", "active": False, "emails": []}]


@pytest.mark.parametrize("expression, ids", [
    ('userName eq "alice@example.com"', ["1"]),
    ('userName eq "ALICE@example.com"', ["1"]),
    ('displayName co "o"', ["2"]),
    ('userName sw "bob"', ["2"]),
    ('userName ne "bob@corp.io"', ["1"]),
    ("active eq true", ["1"]),
    ('emails.value eq "alice@example.com"', ["1"]),
    ('displayName eq "Alice" or displayName eq "Bob"', ["1", "2"]),
    ('displayName eq "Alice" and active eq false', []),
    ('displayName eq "Bob" and active eq false or userName sw "al"', ["1", "2"]),
])
def test_scim_filters(expression, ids):
    keep = scim.parse_filter(expression)
    assert [u["id"] for u in USERS if keep(u)] == ids


@pytest.mark.parametrize("expression", ['userName gt "a"', "userName eq", '(userName eq "a")', 'a eq "b" xor c eq "d"'])
def test_scim_filters_refuse_what_they_cannot_parse(expression):
    with pytest.raises(InvalidParameter, match="Unsupported filter"):
        scim.parse_filter(expression)


@pytest.mark.parametrize("operations, members, groups, doc", [
    pytest.param([{"op": "add", "path": "members", "value": [{"value": "7"}, {"value": "8"}]}], ["1", "7", "8"], None,
                 None, id="add members"),
    pytest.param([{"op": "remove", "path": 'members[value eq "1"]'}], [], None, None, id="remove a member"),
    pytest.param([{"op": "replace", "path": "members", "value": [{"value": "9"}]}], ["9"], None, None,
                 id="replace members"),
    pytest.param([{"op": "Replace", "path": "displayName", "value": "crew"}], None, None, {"displayName": "crew"},
                 id="rename, op case-insensitive"),
    pytest.param([{"op": "replace", "value": {"displayName": "crew", "externalId": "x"}}], None, None,
                 {"displayName": "crew", "externalId": "x"}, id="no path: an object of attributes"),
    pytest.param([{"op": "add", "path": "entitlements", "value": [{"value": "workspace-access"}]}], None, None,
                 {"displayName": "team", "entitlements": [{"value": "workspace-access"}]}, id="add an entitlement"),
])
def test_scim_patch_of_a_group(operations, members, groups, doc):
    result = scim.apply_patch("group", {"displayName": "team"}, ["1"], [], {"Operations": operations})
    assert result.members == members and result.groups == groups
    if doc is not None:
        assert result.document == doc


def test_scim_patch_of_a_user():
    base = {"userName": "u", "active": True, "entitlements": [{"value": "a"}, {"value": "b"}]}
    result = scim.apply_patch("user", base, [], ["g1"], {"Operations": [
        {"op": "replace", "path": "active", "value": "false"},             # the SDK drops a bare False
        {"op": "remove", "path": 'entitlements[value eq "a"]'},
        {"op": "add", "path": "groups", "value": [{"value": "g2"}]},
        {"op": "replace", "path": "name.givenName", "value": "Una"}]})
    assert result.document == {"userName": "u", "active": False, "entitlements": [{"value": "b"}],
                               "name": {"givenName": "Una"}}
    assert result.groups == ["g1", "g2"] and result.members is None
    for bad in ({"Operations": [{"op": "move", "path": "active"}]}, {"Operations": [{"op": "replace", "path": "id",
                                                                                     "value": "9"}]},
                {"Operations": [{"op": "replace", "path": "active"}]}):
        with pytest.raises(InvalidParameter):
            scim.apply_patch("user", base, [], [], bad)


def test_scim_list_pages_as_the_sdk_walks_them():
    resources = [{"id": str(i)} for i in range(5)]
    assert [r["id"] for r in scim.page(resources, 1, 2)["Resources"]] == ["0", "1"]
    last = scim.page(resources, 5, 2)
    assert [r["id"] for r in last["Resources"]] == ["4"] and last["totalResults"] == 5
    assert scim.page(resources, 6, 10000)["Resources"] == []   # the SDK stops at an empty page
