"""Compiles protos/ into the podium_api package (generated code: never edited by hand).

Run `python -m podium.protogen` after changing a .proto file; tests/unit/test_protos.py fails when the
committed podium_api/ differs from what this produces.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc
import grpc_tools

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "protos"


def generate(out_dir: Path) -> None:
    """Writes *_pb2.py, *_pb2_grpc.py and *.pyi for every .proto under protos/ into out_dir."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    status = protoc.main([
        "grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{well_known}",
        f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}", *protos,
    ])
    if status != 0:
        raise RuntimeError(f"protoc failed with status {status}")
    for package_dir in {out_dir / Path(p).parent for p in protos} | {out_dir / "podium_api"}:
        (package_dir / "__init__.py").touch()


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT)
