"""docs/settings.md from the settings classes: `python -m podium.settings_doc` writes it, `--check` exits 1
when it differs from what the classes say (tests/unit/test_settings.py runs the same comparison)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import SecretStr
from pydantic_core import PydanticUndefined

from services.common.settings import TOOL_NAMES, env_names, settings_classes

DOC = Path(__file__).resolve().parents[1] / "docs" / "settings.md"

HEADER = """\
# Settings

Every Podium setting, generated from the settings classes (`services/*/settings.py`,
`services/common/settings.py`) by `python -m podium.settings_doc`; do not edit by hand
(`tests/unit/test_settings.py` fails when this file and the classes differ).

Every setting is the environment variable `PODIUM_<FIELD>`, and a name means the same in every process
that reads it. `podium up` passes its own environment on to each service it starts (minus credentials,
which it hands only to the services that need them), and the deploy files give one environment to several
containers: so a `PODIUM_*` variable that no Podium service or tool reads is refused at start, naming it
and the closest known name. Worker replicas do not refuse: their environment also holds the served entity's
`environment_vars`, which may have any name. Most worker settings are set by the scaler for each replica.
`podium up` reads the values it decides from (master key, Redis, MLflow store, tokens) as the router does;
its `--data-dir` defaults to `PODIUM_DATA_DIR`, where the `podium` CLI also looks for `podium.json`.
"""


def render() -> str:
    """The whole of docs/settings.md."""
    readers: dict[str, dict[str, str]] = {}   # variable -> {process: description}
    rows: dict[str, tuple[str, str]] = {}
    for process, settings_class in settings_classes().items():
        for name, field in settings_class.model_fields.items():
            primary, *others = env_names(field, name)
            readers.setdefault(primary, {})[process] = _cell(field.description or "")
            rows[primary] = (f"`{primary}`" + "".join(f" or `{other}`" for other in others), _default(field))
    lines = [HEADER, "## Services", "", "| variable | read by | default | what |", "| --- | --- | --- | --- |"]
    for primary in sorted(rows):
        variable, default = rows[primary]
        described = readers[primary]
        # A standard variable (CUDA_VISIBLE_DEVICES) may mean something different to each of its readers.
        description = next(iter(described.values())) if len(set(described.values())) == 1 else \
            " ".join(f"{process}: {text}" for process, text in described.items())
        lines.append(f"| {variable} | {', '.join(described)} | {default} | {description} |")
    lines += ["", "## Read by Podium's tools, not its services", "", "| variable | read by | what |",
              "| --- | --- | --- |"]
    for name in sorted(TOOL_NAMES):
        reader, description = TOOL_NAMES[name]
        lines.append(f"| `{name}` | {reader} | {_cell(description)} |")
    return "\n".join(lines) + "\n"


def _default(field) -> str:
    if field.is_required():
        return "(required)"
    value = field.default_factory() if field.default is PydanticUndefined else field.default
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, Path) and value.is_relative_to(Path.home()):
        value = f"~/{value.relative_to(Path.home())}"    # the same file on every machine
    return f"`{value}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/settings.md is not up to date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC} is out of date: run python -m podium.settings_doc", file=sys.stderr)
            return 1
        return 0
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
