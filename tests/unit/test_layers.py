"""Imports point one way: adapters → core → policy. Adapters reach no store; cores import no framework nor
adapter; policies do no I/O and import no core."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services"
FRAMEWORKS = ("aiohttp", "grpc", "grpc_health", "podium_api", "redis", "sqlalchemy")
IO = FRAMEWORKS + ("asyncio", "socket", "subprocess", "time", "datetime", "os", "requests", "random", "threading",
                   "httpx", "mlflow")


def _module(path: Path) -> str:
    return ".".join(path.relative_to(SERVICES.parent).with_suffix("").parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, absolute, and for `from m import n` also `m.n` (n may be a module).

    Imports under `if TYPE_CHECKING:` are for annotations only and do not count; relative imports are
    resolved against the module's package.
    """
    package = _module(path).split(".")[:-1]
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for inner in node.orelse:
                visit(inner)
            return
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return names


def _top(name: str) -> str:
    return name.split(".")[0]


CORES = sorted(SERVICES.glob("*/core.py")) + sorted(SERVICES.glob("control_plane/spec*.py")) + [
    SERVICES / "control_plane" / name for name in (
        "state.py", "views.py", "identity.py", "tokens.py", "permissions.py", "scim.py",
        "secrets_store.py", "operations.py", "credentials.py", "crypto.py", "rollouts.py")] + [
    SERVICES / "router" / "auth.py", SERVICES / "router" / "sign_in.py", SERVICES / "common" / "tensors.py",
    SERVICES / "worker" / "signature.py", SERVICES / "router" / "openapi.py", SERVICES / "router" / "metrics.py",
    SERVICES / "router" / "open_inference.py",
    SERVICES / "scaler" / "replica_logs.py", SERVICES / "router" / "ai_gateway.py"]
POLICIES = sorted(SERVICES.glob("router/policy/*.py")) + [
    SERVICES / "scaler" / "policy.py", SERVICES / "common" / "capacity.py", SERVICES / "common" / "principals.py",
    SERVICES / "control_plane" / "permissions.py", SERVICES / "control_plane" / "scim.py",
    SERVICES / "control_plane" / "gateway_policy.py", SERVICES / "worker" / "row_exact.py",
    SERVICES / "worker" / "batch_merge.py", SERVICES / "worker" / "direct_frame.py", SERVICES / "common" / "tensors.py",
    SERVICES / "common" / "egress.py", SERVICES / "control_plane" / "quotas.py",
    SERVICES / "control_plane" / "rollout_policy.py", SERVICES / "common" / "outcomes.py"] + \
    [SERVICES / "router" / "external" / f for f in ("anthropic_wire.py", "openai_wire.py", "sse.py", "provider_errors.py")]


ADAPTERS = sorted(SERVICES.glob("*/rest*.py")) + sorted(SERVICES.glob("*/grpc_*.py")) + \
    sorted(SERVICES.glob("router/oip_*.py"))
ADAPTER_MODULES = {_module(p) for p in ADAPTERS}
CORE_MODULES = {_module(p) for p in CORES} - {_module(p) for p in POLICIES}
# What persists or reaches other processes: an adapter hands the call to its core, which owns these.
STORES = ("sqlalchemy", "redis", "services.control_plane.store", "services.control_plane.identity_store",
          "services.router.inference_store", "services.router.backends", "services.control_plane.backends")


@pytest.mark.parametrize("path", CORES, ids=lambda p: str(p.relative_to(SERVICES)))
def test_cores_import_no_framework(path):
    bad = {n for n in _imports(path) if _top(n) in FRAMEWORKS or n.endswith("_pb2") or n in ADAPTER_MODULES}
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: str(p.relative_to(SERVICES)))
def test_policies_do_no_io(path):
    bad = {n for n in _imports(path) if _top(n) in IO or n in CORE_MODULES or n in ADAPTER_MODULES}
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", [p for p in ADAPTERS if not p.parent.name == "common"],
                         ids=lambda p: str(p.relative_to(SERVICES)))
def test_adapters_reach_no_store(path):
    bad = {n for n in _imports(path) if _top(n) in STORES or n in STORES or n.startswith(STORES)}
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", sorted(SERVICES.glob("router/**/*.py")), ids=lambda p: str(p.relative_to(SERVICES)))
def test_router_never_imports_mlflow_at_module_level(path):
    """The query path stays free of mlflow; openapi.py and registry.py (the UI's registry view) import it only
    inside the functions they run in a thread."""
    tree = ast.parse(path.read_text())
    top_level = {n for node in tree.body for n in (
        [a.name for a in node.names] if isinstance(node, ast.Import)
        else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])}
    assert not {n for n in top_level if _top(n) == "mlflow"}
    if path.name not in ("openapi.py", "registry.py"):
        assert "mlflow" not in {_top(n) for n in _imports(path)}


def test_modules_stay_under_400_lines():
    long = {str(p.relative_to(SERVICES)): n for p in SERVICES.rglob("*.py")
            if (n := len(p.read_text().splitlines())) >= 400}
    assert not long
