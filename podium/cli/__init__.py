"""The `podium` command line: `up`, `endpoints`, `logs`, `tokens`, `secrets` (one module per command group)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from podium.cli.app import main as run

    return run(argv)
