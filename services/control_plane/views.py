"""Renders stored endpoints in the Databricks response shapes (ServingEndpointDetailed, ServingEndpoint).

Every field rendered here is a field of the databricks-sdk dataclass of that shape, so an answer survives
`ServingEndpointDetailed.from_dict(answer).as_dict()` unchanged (tests/unit/test_views.py checks it), except
the replica counts in each served entity's `state` (state.PODIUM_STATE_FIELDS), the batching settings
of a served entity that was given them (state.PODIUM_ENTITY_FIELDS), and an endpoint's `rollout` and a
config's `rollout_plan` where it has them, which the SDK drops.
"""

from __future__ import annotations

from services.common.secret_box import public_view
from services.control_plane.state import WAITING, Observation, entity_state, has_active_rollout, is_external

_ENTITY_SPEC_FIELDS = ("name", "entity_name", "entity_version")
# Optional endpoint fields, shown only when set (an empty object would read as "configured, all off").
_SUMMARY_OPTIONAL = ("ai_gateway", "budget_policy_id", "description", "telemetry_config")
_DETAILED_OPTIONAL = _SUMMARY_OPTIONAL + ("email_notifications",)


def detailed(endpoint: dict, observed: dict[str, Observation], permission_level: str) -> dict:
    """ServingEndpointDetailed: what create, get, update-config and patch-telemetry-config answer;
    `permission_level` is the caller's."""
    out = _common(endpoint, _DETAILED_OPTIONAL)
    if endpoint.get("config"):
        out["config"] = _config(endpoint, endpoint["config"], observed, is_pending=False)
    pending = endpoint.get("pending_config")
    if pending:
        out["pending_config"] = {**_config(endpoint, pending, observed, is_pending=True),
                                 "start_time": pending["start_time"]}
    out["permission_level"] = permission_level
    out["route_optimized"] = endpoint.get("route_optimized", False)
    if endpoint.get("rollout"):   # Podium's: the latest rollout (docs/progressive-delivery.md)
        out["rollout"] = rollout_view(endpoint)
    return out


def rollout_view(endpoint: dict, judgement: dict | None = None) -> dict | None:
    """The Podium `rollout` field of an endpoint: its latest rollout, or None when it never had one."""
    rollout = endpoint.get("rollout")
    if not rollout:
        return None
    steps = rollout["plan"]["steps"]
    is_active = has_active_rollout(endpoint)
    share = steps[rollout["step"]]["traffic_percentage"] if is_active and rollout["phase"] != WAITING else 0
    return {"config_version": rollout["config_version"], "phase": rollout["phase"], "reason": rollout["reason"],
            "step": rollout["step"] + 1, "steps": len(steps), "candidate_traffic_percentage": share,
            "step_started_timestamp": rollout["step_started_ms"], "plan": rollout["plan"],
            "last_judgement": judgement or rollout.get("last_judgement")}


def summary(endpoint: dict) -> dict:
    """ServingEndpoint: one item of the list answer, with a config summary."""
    out = _common(endpoint, _SUMMARY_OPTIONAL)
    config = endpoint.get("config") or endpoint.get("pending_config")
    if config:
        out["config"] = {
            "served_entities": [_served_entity_spec(e) for e in config["served_entities"]],
            "served_models": [_served_model_spec(e) for e in config["served_entities"] if not is_external(e)],
        }
    return out


def ai_gateway(endpoint: dict) -> dict:
    """PutAiGatewayResponse: the endpoint's AI gateway settings (the same five fields as AiGatewayConfig)."""
    return dict(endpoint.get("ai_gateway") or {})


def _common(endpoint: dict, optional: tuple[str, ...]) -> dict:
    out = {
        "name": endpoint["name"],
        "id": endpoint["id"],
        "creator": endpoint["creator"],
        "creation_timestamp": endpoint["creation_timestamp"],
        "last_updated_timestamp": endpoint["last_updated_timestamp"],
        "state": dict(endpoint["state"]),
        "tags": endpoint.get("tags", []),
        "task": _task(endpoint.get("config") or endpoint.get("pending_config")),
    }
    for field in optional:
        if endpoint.get(field):
            out[field] = endpoint[field]
    return out


def _task(config: dict | None) -> str:
    """External-model endpoints show their task (llm/v1/chat, ...), as Databricks; custom models the task their
    model was logged with (agent/v1/responses, ...: services/control_plane/model_tasks.py), if any."""
    for entity in (config or {}).get("served_entities", ()):
        if is_external(entity):
            return entity["external_model"]["task"]
    return (config or {}).get("task", "")


def _config(endpoint: dict, config: dict, observed: dict[str, Observation], *, is_pending: bool) -> dict:
    entities = []
    for entity in config["served_entities"]:
        # public_view: a provider key is shown as its {{secrets/...}} reference, or not at all.
        rendered = {**public_view(entity), "state": entity_state(endpoint, entity, observed, is_pending=is_pending)}
        if not rendered.get("environment_vars"):
            rendered.pop("environment_vars", None)
        entities.append(rendered)
    out = {
        "served_entities": entities,
        "served_models": [_served_model(e) for e in entities if not is_external(e)],
        "traffic_config": config["traffic_config"],
        "config_version": config["config_version"],
    }
    if config.get("auto_capture_config"):
        out["auto_capture_config"] = config["auto_capture_config"]
    if config.get("rollout_plan"):   # Podium's: how an update to this config rolls out
        out["rollout_plan"] = config["rollout_plan"]
    return out


def _served_model(entity: dict) -> dict:
    """The legacy `served_models` view of a served entity (older clients read only this)."""
    model = {k: v for k, v in entity.items() if k not in ("entity_name", "entity_version")}
    return {**model, "model_name": entity["entity_name"], "model_version": entity["entity_version"]}


def _served_entity_spec(entity: dict) -> dict:
    if is_external(entity):
        return {"name": entity["name"], "external_model": public_view(entity["external_model"])}
    return {f: entity[f] for f in _ENTITY_SPEC_FIELDS}


def _served_model_spec(entity: dict) -> dict:
    return {"name": entity["name"], "model_name": entity["entity_name"], "model_version": entity["entity_version"]}
