"""An endpoint's state machine: pure functions from (stored endpoint, observed deployments) to the next state.

`ready`         NOT_READY → READY once the serving config has a ready replica for every routed entity.
                An external-model entity runs no replica: its provider serves it, so it is serving at once.
`config_update` IN_PROGRESS while a pending config starts; NOT_UPDATING once it serves (it then replaces
                the old config, which kept serving meanwhile); UPDATE_FAILED with the reason when one of
                its served entities cannot start (the old config, if any, keeps serving).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

READY, NOT_READY = "READY", "NOT_READY"
NOT_UPDATING, IN_PROGRESS, UPDATE_FAILED = "NOT_UPDATING", "IN_PROGRESS", "UPDATE_FAILED"

# The only fields Podium adds to a Databricks shape: the autoscaler's replica counts in a served entity's
# `state` (the SDK's ServedModelState drops them; mlflow and plain JSON clients see them).
PODIUM_STATE_FIELDS = ("desired_replicas", "ready_replicas", "starting_replicas")

# Fields Podium adds to a served entity (adaptive batching); GET shows them only where they were given.
PODIUM_ENTITY_FIELDS = ("max_batch_size", "max_batch_wait_ms")

# Only these fields decide which process serves an entity: changing a route or a tag restarts nothing.
_PROCESS_FIELDS = ("entity_name", "entity_version", "environment_vars", "workload_type")


@dataclass(frozen=True)
class Observation:
    """What the scaler last reported about one deployment."""

    ready_addresses: tuple[str, ...] = ()
    starting_replicas: int = 0
    failure: str = ""
    desired_replicas: int = 0


def is_external(entity: dict) -> bool:
    return entity.get("external_model") is not None


def deployment_key(endpoint_id: str, entity: dict) -> str:
    """Stable id of the replicas serving `entity`: the same while its process-relevant spec is unchanged."""
    if is_external(entity):
        spec = {"name": entity["name"], "external_model": entity["external_model"]}
    else:
        spec = {field: entity.get(field) for field in _PROCESS_FIELDS}
        # Hashed only when given: keys of entities without them (stored before batching existed) stay put.
        spec.update({field: entity[field] for field in PODIUM_ENTITY_FIELDS if field in entity})
    digest = hashlib.sha256(json.dumps([endpoint_id, spec], sort_keys=True).encode()).hexdigest()
    return digest[:20]


def deployed_configs(endpoint: dict) -> list[dict]:
    """The configs whose entities must run: the serving one, and a pending one that has not failed."""
    configs = [endpoint["config"]] if endpoint.get("config") else []
    pending = endpoint.get("pending_config")
    if pending and endpoint["state"]["config_update"] == IN_PROGRESS:
        configs.append(pending)
    return configs


def find_served_entity(endpoint: dict, name: str, *, prefer_pending: bool) -> dict | None:
    """The served entity called `name` in the pending or the serving config (the one preferred first)."""
    configs = [endpoint.get("pending_config"), endpoint.get("config")]
    for config in configs if prefer_pending else reversed(configs):
        for entity in (config or {}).get("served_entities", ()):
            if entity["name"] == name:
                return entity
    return None


def advance(endpoint: dict, observed: dict[str, Observation], now_ms: int) -> dict:
    """The endpoint after applying what was observed; the same object when nothing changes."""
    state = dict(endpoint["state"])
    changes: dict = {}
    pending = endpoint.get("pending_config")
    if pending and state["config_update"] == IN_PROGRESS:
        failures = _failures(endpoint["id"], pending, observed)
        if failures:
            state["config_update"] = UPDATE_FAILED
            changes["failure"] = "; ".join(failures)
        elif _serves(endpoint["id"], pending, observed, routed_only=False, allow_zero=False):
            changes["config"] = {k: v for k, v in pending.items() if k != "start_time"}
            changes["pending_config"] = None
            changes["failure"] = ""
            state["config_update"] = NOT_UPDATING
    serving = changes.get("config", endpoint.get("config"))
    state["ready"] = READY if serving and _serves(endpoint["id"], serving, observed, allow_zero=True) else NOT_READY
    if state == endpoint["state"] and not changes:
        return endpoint
    return {**endpoint, **changes, "state": state, "last_updated_timestamp": now_ms}


def entity_state(endpoint: dict, entity: dict, observed: dict[str, Observation], *, is_pending: bool) -> dict:
    """The served entity's `state` as Databricks shows it, plus the autoscaler's replica counts.

    `deployment` and `deployment_state_message` are Databricks' fields; `desired_replicas`,
    `ready_replicas` and `starting_replicas` are Podium's (clients ignore fields they do not know).
    An external model has no replicas, so no counts.
    """
    if is_external(entity):
        provider = entity["external_model"]["provider"]
        return {"deployment": "DEPLOYMENT_READY", "deployment_state_message": f"served by provider {provider}"}
    seen = observed.get(deployment_key(endpoint["id"], entity), Observation())
    counts = dict(zip(PODIUM_STATE_FIELDS, (seen.desired_replicas, len(seen.ready_addresses), seen.starting_replicas)))
    return {**_deployment_state(endpoint, entity, seen, is_pending), **counts}


def _deployment_state(endpoint: dict, entity: dict, seen: Observation, is_pending: bool) -> dict:
    if seen.failure:
        return {"deployment": "DEPLOYMENT_FAILED", "deployment_state_message": seen.failure}
    if is_pending and endpoint["state"]["config_update"] == UPDATE_FAILED:
        return {"deployment": "DEPLOYMENT_ABORTED", "deployment_state_message": endpoint.get("failure", "")}
    if seen.ready_addresses:
        count = len(seen.ready_addresses)
        return {"deployment": "DEPLOYMENT_READY",
                "deployment_state_message": f"{count} replica{'s' if count != 1 else ''} ready"}
    if is_pending or not endpoint.get("config"):
        return {"deployment": "DEPLOYMENT_CREATING", "deployment_state_message": "starting replicas"}
    if entity.get("scale_to_zero_enabled") and seen.desired_replicas == 0:
        return {"deployment": "DEPLOYMENT_READY",
                "deployment_state_message": "scaled to zero: the next request starts a replica"}
    if entity.get("scale_to_zero_enabled") and seen.starting_replicas:
        return {"deployment": "DEPLOYMENT_READY", "deployment_state_message": "scaling up from zero"}
    return {"deployment": "DEPLOYMENT_RECOVERING", "deployment_state_message": "replacing replicas"}


def _routed(config: dict) -> set[str]:
    return {r["served_entity_name"] for r in config["traffic_config"]["routes"] if r["traffic_percentage"] > 0}


def _serves(endpoint_id: str, config: dict, observed: dict[str, Observation], *, routed_only: bool = True,
            allow_zero: bool) -> bool:
    """Whether the config's entities have ready replicas: those taking traffic (is it ready?), or all of them
    (is a new config deployed? As on Databricks, an entity at 0 % is deployed too, ready to take a share).
    With allow_zero a scale-to-zero entity the scaler manages counts too: a request for it waits in the
    router while a replica starts, so the endpoint stays READY. A new config always needs ready replicas,
    so a model that cannot load is caught at deploy time."""
    routed = _routed(config)
    return all(is_external(e) or _entity_serves(observed.get(deployment_key(endpoint_id, e)), e, allow_zero)
               for e in config["served_entities"] if e["name"] in routed or not routed_only)


def _entity_serves(seen: Observation | None, entity: dict, allow_zero: bool) -> bool:
    if seen is None:
        return False
    if seen.ready_addresses:
        return True
    return allow_zero and bool(entity.get("scale_to_zero_enabled")) and not seen.failure


def _failures(endpoint_id: str, config: dict, observed: dict[str, Observation]) -> list[str]:
    failures = []
    for entity in config["served_entities"]:
        seen = observed.get(deployment_key(endpoint_id, entity))
        if seen and seen.failure:
            failures.append(f"served entity '{entity['name']}' failed to start: {seen.failure}")
    return failures
