"""The committed podium_api/ package is exactly what protos/ compiles to."""

from __future__ import annotations

import filecmp
from pathlib import Path

from podium.protogen import REPO_ROOT, generate


def test_generated_code_is_fresh(tmp_path: Path):
    generate(tmp_path)
    fresh = sorted(p.relative_to(tmp_path) for p in (tmp_path / "podium_api").rglob("*") if p.is_file()
                   and "__pycache__" not in p.parts)
    committed = sorted(p.relative_to(REPO_ROOT) for p in (REPO_ROOT / "podium_api").rglob("*") if p.is_file()
                       and "__pycache__" not in p.parts)
    assert fresh == committed, "podium_api/ is stale: run `python -m podium.protogen`"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, REPO_ROOT / p, shallow=False)]
    assert not stale, f"stale generated files: {stale}; run `python -m podium.protogen`"
