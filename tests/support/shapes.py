"""Databricks answer shapes as the databricks-sdk dataclasses see them."""

from __future__ import annotations

from services.control_plane.state import PODIUM_ENTITY_FIELDS, PODIUM_STATE_FIELDS


def sdk_fields(answer: dict) -> dict:
    """A ServingEndpointDetailed answer without the only fields Podium adds to it: the autoscaler's replica
    counts in each served entity's `state` (the SDK's ServedModelState drops them) and a served entity's
    batching settings (PODIUM_ENTITY_FIELDS)."""
    out = dict(answer)
    for which in ("config", "pending_config"):
        if which in out:
            config = dict(out[which])
            for listing in ("served_entities", "served_models"):
                if listing in config:
                    config[listing] = [_without_counts(e) for e in config[listing]]
            out[which] = config
    return out


def _without_counts(entity: dict) -> dict:
    entity = {k: v for k, v in entity.items() if k not in PODIUM_ENTITY_FIELDS}
    if "state" not in entity:
        return entity
    return {**entity, "state": {k: v for k, v in entity["state"].items() if k not in PODIUM_STATE_FIELDS}}
