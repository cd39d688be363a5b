"""`podium up`: the whole stack on this machine."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from podium.cli import exits
from podium.cli.target import data_dir


def register(commands: argparse._SubParsersAction) -> None:
    up = commands.add_parser("up", help="start the whole stack on this machine (Ctrl-C stops it)",
                             description="Start Redis, the control plane, the router and the scaler; "
                                         "write podium.json once every service answers.")
    up.add_argument("--data-dir", type=Path, default=data_dir(os.environ),
                    help="where specs, the MLflow registry, logs and podium.json live (default ~/.podium)")
    up.add_argument("--port", type=int, default=8080, help="the router's REST port (0 = any free port)")
    up.add_argument("--grpc-port", type=int, default=None,
                    help="the router's gRPC port (default: --port + 1, or any free port with --port 0)")
    up.add_argument("--host", default="127.0.0.1", help="address the router binds (default 127.0.0.1)")
    up.add_argument("--tls", action="store_true",
                    help="HTTPS on the router and mutual TLS between services (a local CA under DATA_DIR/tls)")
    up.add_argument("--tls-cert", type=Path, help="the router's own certificate chain (PEM); implies --tls")
    up.add_argument("--tls-key", type=Path, help="the private key of --tls-cert (PEM)")
    up.set_defaults(handler=run)


def run(ctx) -> int:
    from podium.launcher import UpOptions, run_up

    args = ctx.args
    if bool(args.tls_cert) != bool(args.tls_key):
        raise exits.UsageError("--tls-cert and --tls-key go together")
    return run_up(UpOptions(data_dir=args.data_dir, port=args.port, grpc_port=args.grpc_port, host=args.host,
                            tls=args.tls or bool(args.tls_cert), tls_cert=args.tls_cert, tls_key=args.tls_key))
