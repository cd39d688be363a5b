"""Shadow served entities (a Podium extension of the served entity, docs/progressive-delivery.md): pure
validation of `shadow_percentage` and `shadow_judge_endpoint`, of the routes of a config that has a shadow,
and of the judge endpoints it names against the endpoints the writer may see."""

from __future__ import annotations

import re
from collections.abc import Callable

from services.common.errors import InvalidParameter

ENDPOINT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")   # as services/control_plane/spec.py


def validate_shadow(entity: dict, field: str) -> dict:
    """{"shadow_percentage": n} for a served entity given one (an integer from 1 to 100), with its
    "shadow_judge_endpoint" if given (the name of an endpoint), else {}."""
    share, judge = entity.get("shadow_percentage"), entity.get("shadow_judge_endpoint")
    if share is None:
        if judge is not None:
            raise InvalidParameter(f"{field}.shadow_judge_endpoint judges a shadow's answers: it is read only on "
                                   "a shadow served entity (with shadow_percentage)")
        return {}
    if entity.get("external_model") is not None:
        raise InvalidParameter(f"{field}.shadow_percentage: an external model cannot be a shadow served entity")
    if not isinstance(share, int) or isinstance(share, bool) or not 1 <= share <= 100:
        raise InvalidParameter(f"{field}.shadow_percentage must be an integer from 1 to 100")
    if judge is None:
        return {"shadow_percentage": share}
    if not isinstance(judge, str) or not ENDPOINT_NAME.fullmatch(judge):
        raise InvalidParameter(f"{field}.shadow_judge_endpoint must be the name of a serving endpoint")
    return {"shadow_percentage": share, "shadow_judge_endpoint": judge}


def check_shadow_judges(config: dict, endpoint_name: str, is_visible: Callable[[str], bool],
                        field: str = "config") -> None:
    """Each `shadow_judge_endpoint` of the config names another endpoint that exists and the writer may view
    (`is_visible`; one it may not is reported as not existing, as GET would)."""
    for index, entity in enumerate(config["served_entities"]):
        judge = entity.get("shadow_judge_endpoint")
        where = f"{field}.served_entities[{index}].shadow_judge_endpoint"
        if not judge:
            continue
        if judge == endpoint_name:
            raise InvalidParameter(f"{where}: endpoint '{endpoint_name}' cannot judge its own shadow answers")
        if not is_visible(judge):
            raise InvalidParameter(f"{where}: endpoint '{judge}' does not exist")


def route_fields(entity: dict) -> tuple[int, str]:
    """A served entity's shadow fields as its route carries them: (shadow_percentage, shadow_judge_endpoint)."""
    return entity.get("shadow_percentage", 0), entity.get("shadow_judge_endpoint", "")


def check_shadow_routes(entities: list[dict], traffic: dict, field: str) -> None:
    """A shadow entity takes no traffic of its own: its route, if any, is at 0 %."""
    shadows = {e["name"] for e in entities if e.get("shadow_percentage")}
    for route in traffic["routes"]:
        if route["served_entity_name"] in shadows and route["traffic_percentage"] > 0:
            raise InvalidParameter(f"{field}.traffic_config: shadow served entity '{route['served_entity_name']}' "
                                   "takes no traffic of its own (route it at 0 %, or not at all)")
