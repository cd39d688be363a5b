"""`podium users create` and `podium service-principals create`: the identity calls admins script most.

Podium has no browser sign-in, so `users create` also hands the new user a first token (minted by the
admin on the user's behalf); `service-principals create` gives a client id and secret for OAuth M2M,
which `WorkspaceClient(host=..., client_id=..., client_secret=...)` signs in with.
"""

from __future__ import annotations

import argparse

from podium.cli import exits

SCIM = "/api/2.0/preview/scim/v2"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    users = commands.add_parser("users", help="create users (with a first token)")
    create = users.add_subparsers(dest="action", required=True, metavar="ACTION").add_parser(
        "create", parents=[common], help="create a user and print a first token of theirs")
    create.add_argument("user_name", help="the user's userName, e.g. an e-mail address")
    create.add_argument("--admin", action="store_true", help="add the user to the admins group")
    create.add_argument("--lifetime-seconds", type=int, default=None, metavar="N", help="the token's lifetime")
    create.set_defaults(handler=create_user)

    principals = commands.add_parser("service-principals", help="create service principals (with an OAuth secret)")
    create = principals.add_subparsers(dest="action", required=True, metavar="ACTION").add_parser(
        "create", parents=[common], help="create a service principal and print its client id and secret")
    create.add_argument("display_name")
    create.set_defaults(handler=create_service_principal)


def create_user(ctx) -> int:
    client = ctx.client
    user = client.post(f"{SCIM}/Users", {"userName": ctx.args.user_name})
    if ctx.args.admin:
        [admins] = client.get(f"{SCIM}/Groups", filter='displayName eq "admins"')["Resources"]
        client.call("PATCH", f"{SCIM}/Groups/{admins['id']}", {
            "schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": [{"value": user["id"]}]}]})
    body = {"user_name": ctx.args.user_name, "comment": "podium users create"}
    if ctx.args.lifetime_seconds is not None:
        body["lifetime_seconds"] = ctx.args.lifetime_seconds
    token = client.post("/api/2.0/token-management/on-behalf-of/tokens", body)
    answer = {"id": user["id"], "user_name": ctx.args.user_name, "token": token["token_value"]}

    def human(value: dict) -> None:
        print(value["token"])
        ctx.note(f"User {value['user_name']} ({value['id']}) created; the token above is theirs and is not shown again.")
    ctx.show(answer, human)
    return exits.OK


def create_service_principal(ctx) -> int:
    client = ctx.client
    principal = client.post(f"{SCIM}/ServicePrincipals", {"displayName": ctx.args.display_name})
    secret = client.post(f"/api/2.0/accounts/servicePrincipals/{principal['id']}/credentials/secrets", {})
    answer = {"id": principal["id"], "client_id": principal["applicationId"], "client_secret": secret["secret"]}

    def human(value: dict) -> None:
        print(f"client_id:     {value['client_id']}\nclient_secret: {value['client_secret']}")
        ctx.note("Keep the secret: it is not shown again.")
    ctx.show(answer, human)
    return exits.OK
