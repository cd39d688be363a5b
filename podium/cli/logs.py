"""`podium logs`: what a served model's replicas printed, while serving or while being built."""

from __future__ import annotations

import argparse
import sys
from urllib.parse import quote

from podium.cli import exits
from podium.cli.endpoints import ENDPOINTS


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    logs = commands.add_parser(
        "logs", parents=[common], help="a served model's logs (GET .../served-models/{name}/logs)",
        description="Print the logs of one served model of an endpoint. SERVED_MODEL may be left out when the "
                    "endpoint serves only one.")
    logs.add_argument("endpoint")
    logs.add_argument("served_model", nargs="?", help="served entity name (default: the endpoint's only one)")
    logs.add_argument("--build", action="store_true", help="the build logs (.../build-logs) instead")
    logs.set_defaults(handler=show_logs)


def pick_served_model(endpoint: dict) -> str:
    """The endpoint's only served entity (the pending config's while an update runs), else a usage error."""
    config = endpoint.get("pending_config") or endpoint.get("config") or {}
    names = [e.get("name") for e in config.get("served_entities", []) if e.get("name")]
    if len(names) == 1:
        return names[0]
    if not names:
        raise exits.UsageError(f"endpoint '{endpoint.get('name')}' has no served entities")
    raise exits.UsageError(f"endpoint '{endpoint.get('name')}' serves {', '.join(names)}: name one of them")


def show_logs(ctx) -> int:
    endpoint = quote(ctx.args.endpoint, safe="")
    served_model = ctx.args.served_model or pick_served_model(ctx.client.get(f"{ENDPOINTS}/{endpoint}"))
    kind = "build-logs" if ctx.args.build else "logs"
    answer = ctx.client.get(f"{ENDPOINTS}/{endpoint}/served-models/{quote(served_model, safe='')}/{kind}")

    def human(value: dict) -> None:
        text = value.get("logs", "")
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    ctx.show(answer, human)
    return exits.OK
