"""`podium secrets`: secret scopes and secrets (the Databricks Secrets API paths), for {{secrets/scope/key}}."""

from __future__ import annotations

import argparse
import getpass
import sys

from podium.cli import exits
from podium.cli.output import format_time_ms, print_table

SECRETS = "/api/2.0/secrets"


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser("secrets", help="secret scopes and secrets, referenced as {{secrets/scope/key}}")
    sub = group.add_subparsers(dest="action", required=True, metavar="ACTION")

    scopes = sub.add_parser("scopes", help="create, list and delete secret scopes")
    scope_sub = scopes.add_subparsers(dest="scope_action", required=True, metavar="ACTION")
    create = scope_sub.add_parser("create", parents=[common], help="create a scope")
    create.add_argument("scope")
    create.set_defaults(handler=create_scope)
    scope_sub.add_parser("list", parents=[common], help="every scope").set_defaults(handler=list_scopes)
    delete_scope_parser = scope_sub.add_parser("delete", parents=[common], help="delete a scope and its secrets")
    delete_scope_parser.add_argument("scope")
    delete_scope_parser.set_defaults(handler=delete_scope)

    put = sub.add_parser("put", parents=[common], help="store a secret (read from stdin or a prompt)",
                         description="The value is read from stdin when it is not a terminal, else from a hidden "
                                     "prompt; --value also works but leaves it in your shell history.")
    put.add_argument("scope")
    put.add_argument("key")
    put.add_argument("--value", help="the value itself (prefer stdin or the prompt)")
    put.set_defaults(handler=put_secret)

    list_parser = sub.add_parser("list", parents=[common], help="the keys of a scope (never the values)")
    list_parser.add_argument("scope")
    list_parser.set_defaults(handler=list_secrets)

    delete = sub.add_parser("delete", parents=[common], help="delete one secret")
    delete.add_argument("scope")
    delete.add_argument("key")
    delete.set_defaults(handler=delete_secret)

    acls = sub.add_parser("acls", help="who may read, write or manage a scope (READ < WRITE < MANAGE)")
    acl_sub = acls.add_subparsers(dest="acl_action", required=True, metavar="ACTION")
    put_acl_parser = acl_sub.add_parser("put", parents=[common], help="give a principal a permission on a scope")
    put_acl_parser.add_argument("scope")
    put_acl_parser.add_argument("principal", help="a user's name, a service principal's application id or a group")
    put_acl_parser.add_argument("permission", type=str.upper, choices=("READ", "WRITE", "MANAGE"))
    put_acl_parser.set_defaults(handler=put_acl)
    list_acls_parser = acl_sub.add_parser("list", parents=[common], help="a scope's ACL")
    list_acls_parser.add_argument("scope")
    list_acls_parser.set_defaults(handler=list_acls)
    delete_acl_parser = acl_sub.add_parser("delete", parents=[common], help="remove a principal's entry")
    delete_acl_parser.add_argument("scope")
    delete_acl_parser.add_argument("principal")
    delete_acl_parser.set_defaults(handler=delete_acl)


def create_scope(ctx) -> int:
    answer = ctx.client.post(f"{SECRETS}/scopes/create", {"scope": ctx.args.scope})
    ctx.show(answer, lambda _: print(f"Created scope '{ctx.args.scope}'."))
    return exits.OK


def list_scopes(ctx) -> int:
    def human(value: dict) -> None:
        rows = [[s.get("name"), s.get("backend_type", "")] for s in value.get("scopes", [])]
        print_table(["SCOPE", "BACKEND"], rows, empty="No secret scopes.")
    ctx.show(ctx.client.get(f"{SECRETS}/scopes/list"), human)
    return exits.OK


def delete_scope(ctx) -> int:
    answer = ctx.client.post(f"{SECRETS}/scopes/delete", {"scope": ctx.args.scope})
    ctx.show(answer, lambda _: print(f"Deleted scope '{ctx.args.scope}'."))
    return exits.OK


def read_secret_value(args) -> str:
    """The value from --value, else stdin when piped, else a hidden prompt."""
    if args.value is not None:
        return args.value
    if not sys.stdin.isatty():
        value = sys.stdin.read()
        return value[:-1] if value.endswith("\n") else value   # `echo v |` adds one newline, not part of it
    return getpass.getpass(f"Value of {args.scope}/{args.key}: ")


def put_secret(ctx) -> int:
    value = read_secret_value(ctx.args)
    if not value:
        raise exits.UsageError("the secret's value is empty")
    answer = ctx.client.post(f"{SECRETS}/put", {"scope": ctx.args.scope, "key": ctx.args.key, "string_value": value})
    ctx.show(answer, lambda _: print(f"Stored {ctx.args.scope}/{ctx.args.key}; "
                                     f"reference it as {{{{secrets/{ctx.args.scope}/{ctx.args.key}}}}}."))
    return exits.OK


def list_secrets(ctx) -> int:
    def human(value: dict) -> None:
        rows = [[s.get("key"), format_time_ms(s.get("last_updated_timestamp"))] for s in value.get("secrets", [])]
        print_table(["KEY", "LAST_UPDATED"], rows, empty=f"No secrets in '{ctx.args.scope}'.")
    ctx.show(ctx.client.get(f"{SECRETS}/list", scope=ctx.args.scope), human)
    return exits.OK


def delete_secret(ctx) -> int:
    answer = ctx.client.post(f"{SECRETS}/delete", {"scope": ctx.args.scope, "key": ctx.args.key})
    ctx.show(answer, lambda _: print(f"Deleted {ctx.args.scope}/{ctx.args.key}."))
    return exits.OK


def put_acl(ctx) -> int:
    body = {"scope": ctx.args.scope, "principal": ctx.args.principal, "permission": ctx.args.permission}
    answer = ctx.client.post(f"{SECRETS}/acls/put", body)
    ctx.show(answer, lambda _: print(f"{ctx.args.principal} holds {ctx.args.permission} on '{ctx.args.scope}'."))
    return exits.OK


def list_acls(ctx) -> int:
    def human(value: dict) -> None:
        rows = [[a.get("principal"), a.get("permission")] for a in value.get("items", [])]
        print_table(["PRINCIPAL", "PERMISSION"], rows, empty=f"No ACL entries on '{ctx.args.scope}'.")
    ctx.show(ctx.client.get(f"{SECRETS}/acls/list", scope=ctx.args.scope), human)
    return exits.OK


def delete_acl(ctx) -> int:
    answer = ctx.client.post(f"{SECRETS}/acls/delete", {"scope": ctx.args.scope, "principal": ctx.args.principal})
    ctx.show(answer, lambda _: print(f"Removed {ctx.args.principal} from '{ctx.args.scope}'."))
    return exits.OK
