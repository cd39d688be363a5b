"""The `podium` command: parses the arguments, runs one command, turns every failure into an exit code."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from podium.cli import accounts, endpoints, exits, keys, logs, models, records, secrets, tokens, up
from podium.cli.client import ApiError, PodiumClient
from podium.cli.output import print_json
from podium.cli.target import TargetError, resolve_target


@dataclass
class Context:
    """What a command handler gets: its arguments, the environment, and a client made on first use."""

    args: argparse.Namespace
    env: Mapping[str, str]
    _client: PodiumClient | None = field(default=None, repr=False)

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    @property
    def client(self) -> PodiumClient:
        if self._client is None:
            target = resolve_target(self.env, host=getattr(self.args, "host", None),
                                    token=getattr(self.args, "token", None),
                                    profile=getattr(self.args, "profile", None))
            self._client = PodiumClient(target, timeout_s=getattr(self.args, "request_timeout", 60.0))
        return self._client

    def show(self, value: Any, human: Callable[[Any], None]) -> None:
        """JSON on stdout with --json, else the human rendering."""
        if self.json:
            print_json(value)
        else:
            human(value)

    def note(self, message: str) -> None:
        """Progress and side information: stderr, and only for people (never mixed into --json output)."""
        if not self.json:
            print(message, file=sys.stderr, flush=True)


def common_options() -> argparse.ArgumentParser:
    """Options every API command takes, accepted after the command name (`podium endpoints list --json`)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("target")
    group.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")
    group.add_argument("--host", help="Podium's URL (default: PODIUM_HOST, DATABRICKS_HOST or podium.json)")
    group.add_argument("--token", help="bearer token (default: PODIUM_TOKEN, DATABRICKS_TOKEN or podium.json)")
    group.add_argument("--profile", help="a profile in ~/.databrickscfg (host and token)")
    group.add_argument("--request-timeout", type=float, default=60.0, metavar="S",
                       help="seconds to wait for one answer (default 60)")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="podium", description="Podium model serving: start the stack, manage endpoints, tokens and secrets.",
        epilog="Exit codes: 0 ok, 1 server error, 2 usage, 3 not found, 4 unauthenticated or not allowed, "
               "5 conflict, 6 invalid request, 7 update failed, 8 timed out, 9 server unreachable.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = common_options()
    up.register(commands)
    endpoints.register(commands, common)
    logs.register(commands, common)
    tokens.register(commands, common)
    secrets.register(commands, common)
    models.register(commands, common)
    records.register(commands, common)
    accounts.register(commands, common)
    keys.register(commands)
    return parser


def report(ctx: Context, code: str, message: str, status: int | None = None) -> None:
    if ctx.json:
        print(json.dumps({"error_code": code, "message": message, "http_status": status}), file=sys.stderr)
    else:
        suffix = f" (HTTP {status})" if status else ""
        print(f"Error: {code}: {message}{suffix}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ctx = Context(args, os.environ)
    try:
        return args.handler(ctx)
    except ApiError as exc:
        report(ctx, exc.error_code, exc.message, exc.status or None)
        return exits.for_api_error(exc)
    except TargetError as exc:
        report(ctx, "NO_TARGET", str(exc))
        return exits.UNREACHABLE
    except exits.UsageError as exc:
        report(ctx, "USAGE", str(exc))
        return exits.USAGE
    except KeyboardInterrupt:
        return 130
