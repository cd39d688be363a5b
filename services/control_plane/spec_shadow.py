"""Shadow served entities (a Podium extension of the served entity, docs/progressive-delivery.md): pure
validation of `shadow_percentage` and of the routes of a config that has one."""

from __future__ import annotations

from services.common.errors import InvalidParameter


def validate_shadow(entity: dict, field: str) -> dict:
    """{"shadow_percentage": n} for a served entity given one (an integer from 1 to 100), else {}."""
    share = entity.get("shadow_percentage")
    if share is None:
        return {}
    if entity.get("external_model") is not None:
        raise InvalidParameter(f"{field}.shadow_percentage: an external model cannot be a shadow served entity")
    if not isinstance(share, int) or isinstance(share, bool) or not 1 <= share <= 100:
        raise InvalidParameter(f"{field}.shadow_percentage must be an integer from 1 to 100")
    return {"shadow_percentage": share}


def check_shadow_routes(entities: list[dict], traffic: dict, field: str) -> None:
    """A shadow entity takes no traffic of its own: its route, if any, is at 0 %."""
    shadows = {e["name"] for e in entities if e.get("shadow_percentage")}
    for route in traffic["routes"]:
        if route["served_entity_name"] in shadows and route["traffic_percentage"] > 0:
            raise InvalidParameter(f"{field}.traffic_config: shadow served entity '{route['served_entity_name']}' "
                                   "takes no traffic of its own (route it at 0 %, or not at all)")
