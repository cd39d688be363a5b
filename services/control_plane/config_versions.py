"""A config version as an endpoint stores it (pure): the validated config with its writer, time and version
stamped on, once the endpoints it names are checked against the writer's view (a shadow's judge endpoint,
services/control_plane/spec_shadow.py)."""

from __future__ import annotations

from collections.abc import Mapping

from services.common.principals import Principal, effective_level
from services.control_plane import permissions
from services.control_plane.spec_shadow import check_shadow_judges


def new_config(config: dict, version: int, caller: Principal, now_ms: int, endpoint_name: str,
               endpoints: Mapping[str, dict]) -> dict:
    """Config `version` of endpoint `endpoint_name`, written by `caller` at `now_ms`; `endpoints` by name.
    Raises InvalidParameter if it names an endpoint the caller cannot see."""
    check_shadow_judges(config, endpoint_name, lambda name: name in endpoints and effective_level(
        caller, permissions.acl_pairs(endpoints[name])) is not None)
    entities = [{**e, "creator": caller.name, "creation_timestamp": now_ms} for e in config["served_entities"]]
    return {**config, "served_entities": entities, "config_version": version, "start_time": now_ms,
            "writer_id": caller.id}   # whose READ on referenced secret scopes `resolve` checks again
