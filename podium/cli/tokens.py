"""`podium tokens create|list|delete`: personal access tokens (the Databricks Token API paths)."""

from __future__ import annotations

import argparse

from podium.cli import exits
from podium.cli.output import format_time_ms, print_table

TOKEN = "/api/2.0/token"


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser("tokens", help="create, list and revoke personal access tokens")
    sub = group.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = sub.add_parser("create", parents=[common], help="create a token (its value is shown once)")
    create.add_argument("--comment", default="", help="what the token is for")
    create.add_argument("--lifetime-seconds", type=int, default=None, metavar="N",
                        help="seconds until it expires (default: the server's)")
    owner = create.add_mutually_exclusive_group()
    owner.add_argument("--user", metavar="USER_NAME", help="admins: a token for this user instead of yourself")
    owner.add_argument("--service-principal", metavar="APPLICATION_ID",
                       help="admins: a token for this service principal instead of yourself")
    create.set_defaults(handler=create_token)

    sub.add_parser("list", parents=[common], help="your tokens (never their values)").set_defaults(handler=list_tokens)

    delete = sub.add_parser("delete", parents=[common], help="revoke a token")
    delete.add_argument("token_id")
    delete.set_defaults(handler=delete_token)


def create_token(ctx) -> int:
    body = {"comment": ctx.args.comment}
    if ctx.args.lifetime_seconds is not None:
        body["lifetime_seconds"] = ctx.args.lifetime_seconds
    if ctx.args.user or ctx.args.service_principal:   # token management: on behalf of another principal
        body.update({"user_name": ctx.args.user} if ctx.args.user else {"application_id": ctx.args.service_principal})
        answer = ctx.client.post("/api/2.0/token-management/on-behalf-of/tokens", body)
    else:
        answer = ctx.client.post(f"{TOKEN}/create", body)

    def human(value: dict) -> None:
        info = value.get("token_info", {})
        print(value.get("token_value", ""))
        ctx.note(f"Token {info.get('token_id', '?')} created; expires {format_time_ms(info.get('expiry_time')) or 'never'}. "
                 "Keep the value above: it is not shown again.")
    ctx.show(answer, human)
    return exits.OK


def list_tokens(ctx) -> int:
    def human(value: dict) -> None:
        rows = [[t.get("token_id"), t.get("comment", ""), format_time_ms(t.get("creation_time")),
                 format_time_ms(t.get("expiry_time")) if (t.get("expiry_time") or 0) > 0 else "never"]
                for t in value.get("token_infos", [])]
        print_table(["TOKEN_ID", "COMMENT", "CREATED", "EXPIRES"], rows, empty="No tokens.")
    ctx.show(ctx.client.get(f"{TOKEN}/list"), human)
    return exits.OK


def delete_token(ctx) -> int:
    answer = ctx.client.post(f"{TOKEN}/delete", {"token_id": ctx.args.token_id})
    ctx.show(answer, lambda _: print(f"Revoked token {ctx.args.token_id}."))
    return exits.OK
