"""The `podium` command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def default_data_dir() -> Path:
    return Path(os.environ.get("PODIUM_DATA_DIR") or Path.home() / ".podium")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="podium", description="Podium model serving")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the whole stack on this machine (Ctrl-C stops it)")
    up.add_argument("--data-dir", type=Path, default=default_data_dir(),
                    help="where specs, the MLflow registry, logs and podium.json live (default ~/.podium)")
    up.add_argument("--port", type=int, default=8080, help="the router's REST port (0 = any free port)")
    up.add_argument("--grpc-port", type=int, default=None,
                    help="the router's gRPC port (default: --port + 1, or any free port with --port 0)")
    up.add_argument("--host", default="127.0.0.1", help="address the router binds (default 127.0.0.1)")
    args = parser.parse_args(argv)

    if args.command == "up":
        from podium.launcher import UpOptions, run_up

        return run_up(UpOptions(data_dir=args.data_dir, port=args.port, grpc_port=args.grpc_port, host=args.host))
    return 2


if __name__ == "__main__":
    sys.exit(main())
