"""Which Podium the CLI talks to, and with which token.

First match wins, per value (host and token are looked up separately, so a token from the environment
can go with the host of the local stack):
  1. the flags `--host` / `--token`;
  2. the profile named by `--profile` (or PODIUM_PROFILE / DATABRICKS_CONFIG_PROFILE) in the profile file;
  3. the environment: PODIUM_HOST / PODIUM_TOKEN, then DATABRICKS_HOST / DATABRICKS_TOKEN;
  4. the local stack's `podium.json` (in PODIUM_DATA_DIR, default ~/.podium): `router_url`, `admin_token`;
  5. the profile file's [DEFAULT] section.
The profile file is ~/.databrickscfg (PODIUM_CONFIG_FILE or DATABRICKS_CONFIG_FILE elsewhere): INI
sections with `host` and `token`, the format the Databricks CLI and SDK read.
"""

from __future__ import annotations

import configparser
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class TargetError(Exception):
    """The target cannot be worked out (no host anywhere, an unknown profile, an unreadable file)."""


@dataclass(frozen=True)
class Target:
    host: str               # e.g. http://127.0.0.1:8080, no trailing slash
    token: str | None
    host_source: str        # where the host came from, for error messages
    token_source: str | None
    ca_file: str | None = None   # the CA `podium up --tls` made, when the host is that stack's router


def data_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("PODIUM_DATA_DIR") or Path.home() / ".podium")


def profile_file(env: Mapping[str, str]) -> Path:
    named = env.get("PODIUM_CONFIG_FILE") or env.get("DATABRICKS_CONFIG_FILE")
    return Path(named).expanduser() if named else Path.home() / ".databrickscfg"


def normalize_host(host: str) -> str:
    """Adds http:// to a bare host:port (Podium listens on plain HTTP by default) and drops a trailing /."""
    host = host.strip().rstrip("/")
    if "://" not in host:
        host = "http://" + host
    return host


def _read_profiles(path: Path) -> configparser.ConfigParser | None:
    if not path.exists():
        return None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path)
    except (configparser.Error, OSError, UnicodeDecodeError) as exc:
        raise TargetError(f"cannot read profile file {path}: {exc}") from None
    return parser


def _read_podium_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TargetError(f"cannot read {path}: {exc}") from None
    return content if isinstance(content, dict) else {}


def resolve_target(env: Mapping[str, str], *, host: str | None = None, token: str | None = None,
                   profile: str | None = None) -> Target:
    """The host and token to use, following the order in this module's docstring."""
    candidates: list[tuple[str, str | None, str | None]] = []   # (source, host, token), best first
    candidates.append(("--host/--token", host, token))

    profiles_path = profile_file(env)
    profiles = None
    profile = profile or env.get("PODIUM_PROFILE") or env.get("DATABRICKS_CONFIG_PROFILE")
    if profile:
        profiles = _read_profiles(profiles_path)
        if profiles is None or (profile != "DEFAULT" and not profiles.has_section(profile)):
            raise TargetError(f"profile '{profile}' is not in {profiles_path}")
        section = profiles[profile]
        candidates.append((f"profile '{profile}' in {profiles_path}", section.get("host"), section.get("token")))

    candidates.append(("PODIUM_HOST/PODIUM_TOKEN", env.get("PODIUM_HOST"), env.get("PODIUM_TOKEN")))
    candidates.append(("DATABRICKS_HOST/DATABRICKS_TOKEN", env.get("DATABRICKS_HOST"), env.get("DATABRICKS_TOKEN")))

    podium_json = data_dir(env) / "podium.json"
    stack = _read_podium_json(podium_json)
    candidates.append((str(podium_json), stack.get("router_url"), stack.get("admin_token")))

    if not profile:
        profiles = _read_profiles(profiles_path)
        if profiles is not None:
            defaults = profiles.defaults()
            candidates.append((f"[DEFAULT] in {profiles_path}", defaults.get("host"), defaults.get("token")))

    found_host = next(((src, h) for src, h, _ in candidates if h), None)
    if found_host is None:
        raise TargetError(
            f"no Podium to talk to: start one with `podium up` (it writes {podium_json}), "
            "or pass --host, or set PODIUM_HOST or DATABRICKS_HOST")
    found_token = next(((src, t) for src, _, t in candidates if t), (None, None))
    ca_file = stack.get("ca_file") if normalize_host(found_host[1]) == normalize_host(stack.get("router_url") or "") \
        else None
    return Target(normalize_host(found_host[1]), found_token[1], found_host[0], found_token[0], ca_file)
