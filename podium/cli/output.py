"""What the CLI prints: aligned tables and readable details for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO


def print_json(value: Any, stream: TextIO | None = None) -> None:
    print(json.dumps(value, indent=2, sort_keys=False), file=stream or sys.stdout)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], stream: TextIO | None = None,
                empty: str = "(none)") -> None:
    """Left-aligned columns separated by two spaces; `empty` when there are no rows."""
    stream = stream or sys.stdout
    if not rows:
        print(empty, file=stream)
        return
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(), file=stream)


def print_fields(fields: Sequence[tuple[str, Any]], stream: TextIO | None = None, indent: str = "") -> None:
    """`key: value` lines with the values aligned."""
    stream = stream or sys.stdout
    width = max((len(k) for k, _ in fields), default=0)
    for key, value in fields:
        print(f"{indent}{(key + ':').ljust(width + 1)} {'' if value is None else value}", file=stream)


def format_time_ms(epoch_ms: int | None) -> str:
    if not epoch_ms:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch_ms / 1000))
