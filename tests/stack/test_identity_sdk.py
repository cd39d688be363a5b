"""The Databricks identity APIs through unmodified databricks-sdk 0.162.0 against a real stack: the current
user, SCIM users / groups / service principals, tokens, token management, OAuth M2M sign-in of a service
principal, serving-endpoint permissions, secrets and their ACLs, and Unity Catalog grants on models."""

from __future__ import annotations


import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, PermissionDenied, ResourceAlreadyExists, ResourceDoesNotExist, Unauthenticated
from databricks.sdk.service import catalog, iam, serving, workspace

from tests.support.stack import wait_for

pytestmark = pytest.mark.stack


def client(stack, token: str) -> WorkspaceClient:
    return WorkspaceClient(host=stack.url, token=token)


@pytest.fixture(scope="module")
def admin(stack) -> WorkspaceClient:
    return client(stack, stack.admin_token)


def test_current_user(admin):
    me = admin.current_user.me()
    assert me.user_name == "admin"
    assert "admins" in {g.display for g in me.groups}
    assert iam.UserSchema.URN_IETF_PARAMS_SCIM_SCHEMAS_CORE_2_0_USER in me.schemas


def test_users_groups_and_service_principals(admin):
    alice = admin.users.create(user_name="alice@example.com", display_name="Alice")
    assert alice.id and alice.user_name == "alice@example.com" and alice.active
    assert alice.emails[0].value == "alice@example.com"
    with pytest.raises(ResourceAlreadyExists):
        admin.users.create(user_name="alice@example.com")
    found = list(admin.users.list(filter='userName eq "alice@example.com"'))
    assert [u.id for u in found] == [alice.id]
    assert admin.users.get(alice.id).display_name == "Alice"

    team = admin.groups.create(display_name="team", members=[iam.ComplexValue(value=alice.id)])
    assert [m.value for m in admin.groups.get(team.id).members] == [alice.id]
    robot = admin.service_principals.create(display_name="robot")
    assert robot.application_id and robot.active
    admin.groups.patch(team.id, operations=[iam.Patch(op=iam.PatchOp.ADD, path="members",
                                                      value=[{"value": robot.id}])],
                       schemas=[iam.PatchSchema.URN_IETF_PARAMS_SCIM_API_MESSAGES_2_0_PATCH_OP])
    assert {m.value for m in admin.groups.get(team.id).members} == {alice.id, robot.id}
    assert "team" in {g.display for g in admin.users.get(alice.id).groups}
    admin.groups.patch(team.id, operations=[iam.Patch(op=iam.PatchOp.REMOVE, path=f'members[value eq "{alice.id}"]')],
                       schemas=[iam.PatchSchema.URN_IETF_PARAMS_SCIM_API_MESSAGES_2_0_PATCH_OP])
    assert [m.value for m in admin.groups.get(team.id).members] == [robot.id]
    assert any(g.display_name == "team" for g in admin.groups.list())
    assert any(sp.id == robot.id for sp in admin.service_principals.list())

    admin.users.patch(alice.id, operations=[iam.Patch(op=iam.PatchOp.REPLACE, path="active", value="false")],
                      schemas=[iam.PatchSchema.URN_IETF_PARAMS_SCIM_API_MESSAGES_2_0_PATCH_OP])
    assert admin.users.get(alice.id).active is False
    admin.users.delete(alice.id)
    with pytest.raises(NotFound):
        admin.users.get(alice.id)
    admin.groups.delete(team.id)
    admin.service_principals.delete(robot.id)


def test_personal_access_tokens(stack, admin):
    created = admin.tokens.create(comment="ci job", lifetime_seconds=600)
    assert created.token_value.startswith("dapi") and created.token_info.comment == "ci job"
    assert created.token_info.expiry_time - created.token_info.creation_time == 600_000
    assert client(stack, created.token_value).current_user.me().user_name == "admin"
    assert created.token_info.token_id in {t.token_id for t in admin.tokens.list()}
    admin.tokens.delete(created.token_info.token_id)
    assert created.token_info.token_id not in {t.token_id for t in admin.tokens.list()}
    with pytest.raises(ResourceDoesNotExist):
        admin.tokens.delete(created.token_info.token_id)

    def revoked():  # within the router's credential cache lifetime (1 s in these tests)
        try:
            client(stack, created.token_value).current_user.me()
        except Unauthenticated:
            return True
        return False
    wait_for(revoked, timeout_s=10, what="the revoked token to stop working")


def test_token_management_on_behalf_of_a_service_principal(stack, admin):
    robot = admin.service_principals.create(display_name="obo-robot")
    obo = admin.token_management.create_obo_token(application_id=robot.application_id, lifetime_seconds=600,
                                                  comment="for robot")
    as_robot = client(stack, obo.token_value)
    me = as_robot.current_user.me()
    assert me.id == robot.id and me.user_name == robot.application_id
    listed = {t.token_id: t for t in admin.token_management.list()}
    info = listed[obo.token_info.token_id]
    assert info.owner_id == int(robot.id) and info.created_by_username == "admin" and info.comment == "for robot"
    assert admin.token_management.get(obo.token_info.token_id).token_info.owner_id == int(robot.id)
    assert [t.token_id for t in admin.token_management.list(created_by_username="nobody")] == []
    with pytest.raises(PermissionDenied):  # token management is for admins
        as_robot.token_management.list()
    with pytest.raises(PermissionDenied):  # and so is SCIM writing
        as_robot.users.create(user_name="mallory")
    admin.token_management.delete(obo.token_info.token_id)
    wait_for(lambda: _rejected(lambda: as_robot.current_user.me()), timeout_s=10, what="revocation")


def _rejected(call) -> bool:
    try:
        call()
    except Unauthenticated:
        return True
    return False


def test_oauth_machine_to_machine_sign_in(stack, admin):
    robot = admin.service_principals.create(display_name="m2m-robot")
    secret = admin.service_principal_secrets_proxy.create(robot.id)
    assert secret.secret.startswith("dose") and secret.status == "ACTIVE"
    assert [s.id for s in admin.service_principal_secrets_proxy.list(robot.id)] == [secret.id]
    assert all(getattr(s, "secret", None) is None for s in admin.service_principal_secrets_proxy.list(robot.id))

    m2m = WorkspaceClient(host=stack.url, client_id=robot.application_id, client_secret=secret.secret)
    assert m2m.config.auth_type == "oauth-m2m"
    assert m2m.current_user.me().id == robot.id
    assert m2m.serving_endpoints.list() == []   # it may view nothing yet

    wrong = WorkspaceClient(host=stack.url, client_id=robot.application_id, client_secret="dose" + "0" * 64)
    with pytest.raises(Exception, match="invalid_client"):
        wrong.current_user.me()
    admin.service_principal_secrets_proxy.delete(robot.id, secret.id)
    again = WorkspaceClient(host=stack.url, client_id=robot.application_id, client_secret=secret.secret)
    with pytest.raises(Exception, match="invalid_client"):
        again.current_user.me()


def _endpoint_body(name: str) -> dict:
    # The model need not exist: permissions apply whatever the endpoint's state.
    return {"name": name, "config": {"served_entities": [{"entity_name": "main.default.absent", "entity_version": "1"}]}}


def test_serving_endpoint_permissions(stack, admin):
    assert stack.api("POST", "/api/2.0/serving-endpoints", json=_endpoint_body("perm-sdk")).status_code == 200
    endpoint = admin.serving_endpoints.get("perm-sdk")
    assert endpoint.creator == "admin" and endpoint.permission_level == serving.ServingEndpointDetailedPermissionLevel.CAN_MANAGE
    robot = admin.service_principals.create(display_name="perm-robot")
    viewers = admin.groups.create(display_name="perm-viewers")
    obo = admin.token_management.create_obo_token(application_id=robot.application_id, lifetime_seconds=600)
    as_robot = client(stack, obo.token_value)
    with pytest.raises(ResourceDoesNotExist):   # no grant: not even its name shows
        as_robot.serving_endpoints.get("perm-sdk")

    levels = admin.serving_endpoints.get_permission_levels(endpoint.id).permission_levels
    assert [l.permission_level.value for l in levels] == ["CAN_VIEW", "CAN_QUERY", "CAN_MANAGE"]
    answer = admin.serving_endpoints.set_permissions(endpoint.id, access_control_list=[
        serving.ServingEndpointAccessControlRequest(service_principal_name=robot.application_id,
                                                    permission_level=serving.ServingEndpointPermissionLevel.CAN_QUERY),
        serving.ServingEndpointAccessControlRequest(user_name="admin",
                                                    permission_level=serving.ServingEndpointPermissionLevel.CAN_MANAGE)])
    assert answer.object_id == f"/serving-endpoints/{endpoint.id}" and answer.object_type == "serving-endpoint"
    grants = {(a.service_principal_name or a.user_name or a.group_name): a.all_permissions[0].permission_level.value
              for a in answer.access_control_list}
    assert grants == {robot.application_id: "CAN_QUERY", "admin": "CAN_MANAGE", "admins": "CAN_MANAGE"}

    seen = wait_for(lambda: _try(lambda: as_robot.serving_endpoints.get("perm-sdk")), timeout_s=10, what="the grant")
    assert seen.permission_level.value == "CAN_QUERY"
    assert [e.name for e in as_robot.serving_endpoints.list()] == ["perm-sdk"]
    with pytest.raises(PermissionDenied):   # CAN_QUERY is not enough to change or delete it
        as_robot.serving_endpoints.delete("perm-sdk")
    with pytest.raises(PermissionDenied):
        as_robot.serving_endpoints.set_permissions(endpoint.id, access_control_list=[])

    updated = admin.serving_endpoints.update_permissions(endpoint.id, access_control_list=[
        serving.ServingEndpointAccessControlRequest(group_name="perm-viewers",
                                                    permission_level=serving.ServingEndpointPermissionLevel.CAN_VIEW)])
    assert {a.group_name for a in updated.access_control_list if a.group_name} == {"perm-viewers", "admins"}
    assert robot.application_id in {a.service_principal_name for a in updated.access_control_list}
    fetched = admin.serving_endpoints.get_permissions(endpoint.id)
    assert len(fetched.access_control_list) == 4
    admin.serving_endpoints.delete("perm-sdk")
    admin.groups.delete(viewers.id)


def _try(call):
    try:
        return call()
    except (ResourceDoesNotExist, NotFound):
        return None


def test_secrets(stack, admin):
    admin.secrets.create_scope(scope="providers")
    with pytest.raises(ResourceAlreadyExists):
        admin.secrets.create_scope(scope="providers")
    admin.secrets.put_secret(scope="providers", key="openai", string_value="sk-secret-value-1234")
    admin.secrets.put_secret(scope="providers", key="binary", bytes_value="AAECAw==")
    assert "providers" in {s.name for s in admin.secrets.list_scopes()}
    listed = list(admin.secrets.list_secrets(scope="providers"))
    assert {s.key for s in listed} == {"openai", "binary"} and all(s.last_updated_timestamp for s in listed)
    with pytest.raises(PermissionDenied):
        admin.secrets.get_secret(scope="providers", key="openai")
    admin.secrets.delete_secret(scope="providers", key="binary")
    assert {s.key for s in admin.secrets.list_secrets(scope="providers")} == {"openai"}
    with pytest.raises(ResourceDoesNotExist):
        admin.secrets.delete_secret(scope="providers", key="binary")
    admin.secrets.delete_scope(scope="providers")
    with pytest.raises(ResourceDoesNotExist):
        list(admin.secrets.list_secrets(scope="providers"))


def _cli(stack, tmp_path, *args) -> dict:
    """`podium ARGS --json` as an admin would run it next to the stack (podium.json names host and token)."""
    import json

    from tests.support.cli import podium

    done = podium(*args, "--json", home=tmp_path, data_dir=stack.data_dir)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_cli_wraps_the_identity_calls(stack, tmp_path):
    made = _cli(stack, tmp_path, "users", "create", "cli-user@example.com", "--lifetime-seconds", "600")
    assert client(stack, made["token"]).current_user.me().user_name == "cli-user@example.com"
    robot = _cli(stack, tmp_path, "service-principals", "create", "cli-robot")
    m2m = WorkspaceClient(host=stack.url, client_id=robot["client_id"], client_secret=robot["client_secret"])
    assert m2m.current_user.me().id == robot["id"]
    token = _cli(stack, tmp_path, "tokens", "create", "--service-principal", robot["client_id"], "--comment", "cli")
    assert client(stack, token["token_value"]).current_user.me().id == robot["id"]
    assert _cli(stack, tmp_path, "keys", "rotate", "--data-dir", str(stack.data_dir))["active_key_id"]


def _serve(name: str, model: str) -> serving.EndpointCoreConfigInput:
    return serving.EndpointCoreConfigInput(name=name, served_entities=[
        serving.ServedEntityInput(entity_name=model, entity_version="1")])


def test_grants_decide_who_may_serve_a_catalog_model(stack, admin):
    user = client(stack, stack.user_token("uc-user"))
    with pytest.raises(PermissionDenied, match="main.uc_grants.model"):   # no EXECUTE: refused, naming the model
        user.serving_endpoints.create(name="uc-ep", config=_serve("uc-ep", "main.uc_grants.model"))
    with pytest.raises(PermissionDenied):   # and no MANAGE to grant it to oneself
        user.grants.update(securable_type="function", full_name="main.uc_grants.model", changes=[
            catalog.PermissionsChange(principal="uc-user", add=[catalog.Privilege.EXECUTE])])

    answer = admin.grants.update(securable_type="schema", full_name="main.uc_grants", changes=[
        catalog.PermissionsChange(principal="uc-user", add=[catalog.Privilege.EXECUTE])])
    assert [(a.principal, a.privileges) for a in answer.privilege_assignments] == [("uc-user", [catalog.Privilege.EXECUTE])]
    got = admin.grants.get(securable_type="schema", full_name="main.uc_grants")
    assert [(a.principal, a.privileges) for a in got.privilege_assignments] == [("uc-user", [catalog.Privilege.EXECUTE])]
    effective = user.grants.get_effective(securable_type="function", full_name="main.uc_grants.model")
    [assignment] = effective.privilege_assignments
    [privilege] = assignment.privileges
    assert (assignment.principal, privilege.privilege, privilege.inherited_from_type, privilege.inherited_from_name) == \
        ("uc-user", catalog.Privilege.EXECUTE, catalog.SecurableType.SCHEMA, "main.uc_grants")

    created = user.serving_endpoints.create(name="uc-ep", config=_serve("uc-ep", "main.uc_grants.model")).response
    assert created.name == "uc-ep"
    with pytest.raises(PermissionDenied, match="main.other.model"):   # EXECUTE on main.uc_grants only
        user.serving_endpoints.update_config(name="uc-ep", served_entities=[
            serving.ServedEntityInput(entity_name="main.other.model", entity_version="1")])
    admin.grants.update(securable_type="schema", full_name="main.uc_grants", changes=[
        catalog.PermissionsChange(principal="uc-user", remove=[catalog.Privilege.EXECUTE])])
    with pytest.raises(PermissionDenied, match="main.uc_grants.model"):   # revoked: no new configs serve it
        user.serving_endpoints.create(name="uc-ep-2", config=_serve("uc-ep-2", "main.uc_grants.model"))
    admin.serving_endpoints.delete("uc-ep")


def test_secret_acls_decide_who_may_reference_a_scope(stack, admin):
    """The issue's exploit: an ordinary user pointing an external model at the admin's secret."""
    admin.secrets.create_scope(scope="acl-prod")
    admin.secrets.put_secret(scope="acl-prod", key="openai", string_value="sk-admin-only")
    token = stack.user_token("acl-user")
    user = client(stack, token)
    external = {"name": "acl-ep", "config": {"served_entities": [{"name": "gpt", "external_model": {
        "name": "gpt-4o", "provider": "openai", "task": "llm/v1/chat",
        "openai_config": {"openai_api_key": "{{secrets/acl-prod/openai}}"}}}]}}
    assert "acl-prod" not in {s.name for s in user.secrets.list_scopes()}
    refused = stack.api_as(token, "POST", "/api/2.0/serving-endpoints", json=external)
    assert refused.status_code == 403 and refused.json()["error_code"] == "PERMISSION_DENIED"
    assert "acl-prod" in refused.json()["message"] and "sk-admin-only" not in refused.text

    admin.secrets.put_acl(scope="acl-prod", principal="acl-user", permission=workspace.AclPermission.READ)
    assert {(a.principal, a.permission) for a in admin.secrets.list_acls(scope="acl-prod")} == {
        ("admin", workspace.AclPermission.MANAGE), ("acl-user", workspace.AclPermission.READ)}
    assert admin.secrets.get_acl(scope="acl-prod", principal="acl-user").permission == workspace.AclPermission.READ
    assert "acl-prod" in {s.name for s in user.secrets.list_scopes()}
    assert [s.key for s in user.secrets.list_secrets(scope="acl-prod")] == ["openai"]
    with pytest.raises(PermissionDenied):   # READ does not manage the ACL, nor write
        list(user.secrets.list_acls(scope="acl-prod"))
    with pytest.raises(PermissionDenied):
        user.secrets.put_secret(scope="acl-prod", key="mine", string_value="x")
    created = stack.api_as(token, "POST", "/api/2.0/serving-endpoints", json=external)
    assert created.status_code == 200, created.text

    admin.secrets.delete_acl(scope="acl-prod", principal="acl-user")
    with pytest.raises(ResourceDoesNotExist):
        user.secrets.list_secrets(scope="acl-prod")
    stack.api("DELETE", "/api/2.0/serving-endpoints/acl-ep")
    admin.secrets.delete_scope(scope="acl-prod")
