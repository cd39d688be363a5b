"""`podium models`: who may serve a Unity Catalog model (`catalog.schema.model`), through the grants API.

`grant` and `revoke` are `PATCH /api/2.1/unity-catalog/permissions/{type}/{name}` (databricks-sdk's
`w.grants.update`), `grants` is the effective-permissions read (`w.grants.get_effective`), inherited
privileges included. A name with one part is a catalog, two a schema, three a registered model.
"""

from __future__ import annotations

import argparse
from urllib.parse import quote

from podium.cli import exits
from podium.cli.output import print_table

PRIVILEGES = ("EXECUTE", "MANAGE", "ALL_PRIVILEGES")
TYPES = {1: "catalog", 2: "schema", 3: "function"}


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser("models", help="grants on registered models (who may serve them)")
    sub = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, handler, text in (("grant", grant, "grant a privilege on a model, schema or catalog"),
                                ("revoke", revoke, "revoke a privilege")):
        parser = sub.add_parser(name, parents=[common], help=text)
        parser.add_argument("model", metavar="MODEL", help="catalog.schema.model (or catalog.schema, or catalog)")
        parser.add_argument("principal", metavar="PRINCIPAL",
                            help="a user's name, a service principal's application id or a group's name")
        parser.add_argument("privilege", metavar="PRIVILEGE", type=str.upper, choices=PRIVILEGES,
                            help="EXECUTE (serve it), MANAGE (grant it) or ALL_PRIVILEGES")
        parser.set_defaults(handler=handler)
    grants_parser = sub.add_parser("grants", parents=[common], help="who holds which privilege, inherited included")
    grants_parser.add_argument("model", metavar="MODEL")
    grants_parser.set_defaults(handler=show_grants)


def _path(kind: str, full_name: str) -> str:
    securable = TYPES.get(len(full_name.split(".")))
    if securable is None or not all(full_name.split(".")):
        raise exits.UsageError(f"'{full_name}' is not catalog, catalog.schema or catalog.schema.model")
    return f"/api/2.1/unity-catalog/{kind}/{securable}/{quote(full_name, safe='')}"


def _change(ctx, field: str, done: str) -> int:
    change = {"principal": ctx.args.principal, field: [ctx.args.privilege]}
    answer = ctx.client.call("PATCH", _path("permissions", ctx.args.model), {"changes": [change]}).body
    ctx.show(answer, lambda _: print(f"{done} {ctx.args.privilege} on {ctx.args.model} "
                                     f"{'to' if field == 'add' else 'from'} {ctx.args.principal}."))
    return exits.OK


def grant(ctx) -> int:
    return _change(ctx, "add", "Granted")


def revoke(ctx) -> int:
    return _change(ctx, "remove", "Revoked")


def show_grants(ctx) -> int:
    def human(value: dict) -> None:
        rows = [[a.get("principal"), p.get("privilege"), p.get("inherited_from_name") or "(direct)"]
                for a in value.get("privilege_assignments", []) for p in a.get("privileges", [])]
        print_table(["PRINCIPAL", "PRIVILEGE", "FROM"], rows, empty=f"No grants on '{ctx.args.model}'.")
    ctx.show(ctx.client.get(_path("effective-permissions", ctx.args.model)), human)
    return exits.OK
