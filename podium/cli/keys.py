"""`podium keys rotate`: a new master key becomes active and every secret is re-encrypted under it.

It works on the data directory directly (its database and key file), while the stack runs or not.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from podium.cli import exits
from podium.cli.target import data_dir


def register(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="the master keys that encrypt secrets at rest")
    sub = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    rotate = sub.add_parser("rotate", help="make a new master key active and re-encrypt every secret under it")
    rotate.add_argument("--data-dir", type=Path, default=data_dir(os.environ),
                        help="the stack's data directory (default ~/.podium)")
    rotate.add_argument("--json", action="store_true", help="print JSON for scripts")
    rotate.set_defaults(handler=run_rotate)


def run_rotate(ctx) -> int:
    from podium.keys import rotate

    report = rotate(ctx.args.data_dir.resolve())
    ctx.show(report, lambda r: print(f"Active key {r['active_key_id']}; re-encrypted {r['reencrypted_secrets']} "
                                     "secret(s)."))
    return exits.OK
