"""An endpoint's state machine: pure functions from (stored endpoint, observed deployments) to the next state.

`ready`         NOT_READY → READY once the serving config has a ready replica for every routed entity.
                An external-model entity runs no replica: its provider serves it, so it is serving at once.
`config_update` IN_PROGRESS while a pending config starts; NOT_UPDATING once it serves (it then replaces
                the old config, which kept serving meanwhile); UPDATE_FAILED with the reason when one of
                its served entities cannot start (the old config, if any, keeps serving).
`rollout`       (Podium's, where the update carried a rollout plan and an old config serves) WAITING while
                the pending config starts; then RUNNING (or PAUSED) while both configs share the traffic
                step by step (config_update stays IN_PROGRESS); PROMOTED replaces the old config as above;
                ROLLED_BACK and ABORTED leave it serving alone, with config_update UPDATE_FAILED and the why.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from services.control_plane.rollout_policy import blend_routes

READY, NOT_READY = "READY", "NOT_READY"
NOT_UPDATING, IN_PROGRESS, UPDATE_FAILED = "NOT_UPDATING", "IN_PROGRESS", "UPDATE_FAILED"
WAITING, RUNNING, PAUSED = "WAITING", "RUNNING", "PAUSED"
PROMOTED, ROLLED_BACK, ABORTED = "PROMOTED", "ROLLED_BACK", "ABORTED"
ACTIVE_PHASES = (WAITING, RUNNING, PAUSED)
MAX_ROLLOUT_EVENTS = 100

# The only fields Podium adds to a Databricks shape: the autoscaler's replica counts in a served entity's
# `state` (the SDK's ServedModelState drops them; mlflow and plain JSON clients see them).
PODIUM_STATE_FIELDS = ("desired_replicas", "ready_replicas", "starting_replicas")

# Fields Podium adds to a served entity (adaptive batching; the version an alias is pinned to); GET shows them
# only where they were given.
PODIUM_ENTITY_FIELDS = ("max_batch_size", "max_batch_wait_ms", "resolved_version")

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
            if has_active_rollout(endpoint):
                changes.update(_rollout_change(endpoint, ROLLED_BACK, changes["failure"], now_ms))
        elif _serves(endpoint["id"], pending, observed, routed_only=False, allow_zero=False):
            if not has_active_rollout(endpoint):
                changes.update(_swap(pending))
                state["config_update"] = NOT_UPDATING
            elif endpoint["rollout"]["phase"] == WAITING:
                changes.update(_rollout_change(endpoint, RUNNING, "the new config is ready: step 1 begins", now_ms,
                                               step=0))
    serving = changes.get("config", endpoint.get("config"))
    state["ready"] = READY if serving and _serves(endpoint["id"], serving, observed, allow_zero=True) else NOT_READY
    if state == endpoint["state"] and not changes:
        return endpoint
    return {**endpoint, **changes, "state": state, "last_updated_timestamp": now_ms}


def has_active_rollout(endpoint: dict) -> bool:
    """Whether a rollout of the pending config is under way (starting, running or paused)."""
    rollout = endpoint.get("rollout")
    return bool(rollout and endpoint.get("pending_config") and rollout["phase"] in ACTIVE_PHASES
                and rollout["config_version"] == endpoint["pending_config"]["config_version"])


def with_rollout(endpoint: dict, now_ms: int) -> dict:
    """The endpoint just given a pending config, with a rollout waiting for it where the config carries a
    rollout plan, an old config serves, and the new one runs something the old one does not (a change of
    routes alone has no candidate to judge: it applies as a plain update)."""
    pending = endpoint["pending_config"]
    plan = pending.get("rollout_plan")
    if not plan or not endpoint.get("config") or not rollout_sides(endpoint)[0]:
        return endpoint
    rollout = {"config_version": pending["config_version"], "plan": plan, "phase": WAITING, "step": 0,
               "step_started_ms": now_ms, "baseline": None, "reason": "", "last_judgement": None}
    return {**endpoint, "rollout": rollout,
            **_rollout_change({**endpoint, "rollout": rollout}, WAITING, "starting the new config's replicas", now_ms)}


def move_rollout(endpoint: dict, phase: str, reason: str, now_ms: int, *, step: int | None = None) -> dict:
    """The endpoint with its active rollout moved to `phase` (a new step starts a new window): PROMOTED
    swaps the configs, ROLLED_BACK and ABORTED fail the update, so the old config serves alone."""
    moved = {**endpoint, **_rollout_change(endpoint, phase, reason, now_ms, step=step),
             "last_updated_timestamp": now_ms}
    if phase == PROMOTED:
        moved.update(_swap(endpoint["pending_config"]))
        moved["state"] = {**endpoint["state"], "config_update": NOT_UPDATING}
    elif phase in (ROLLED_BACK, ABORTED):
        moved["state"] = {**endpoint["state"], "config_update": UPDATE_FAILED}
        moved["failure"] = reason
    return moved


def routed_entities(endpoint: dict) -> list[tuple[dict, int, dict]]:
    """(served entity, traffic percentage, its config) of every route of the serving config (and of its
    unrouted shadow entities, at 0 %); while a rollout runs or is paused, the pending config's too, sharing
    the traffic as its current step says."""
    config = endpoint["config"]
    old = _routes(config)
    rollout = endpoint.get("rollout")
    if not has_active_rollout(endpoint) or rollout["phase"] == WAITING:
        return old
    pending = endpoint["pending_config"]
    new = _routes(pending)
    share = rollout["plan"]["steps"][rollout["step"]]["traffic_percentage"]
    old_shares, new_shares = blend_routes([(e["name"], p) for e, p, _ in old], [(e["name"], p) for e, p, _ in new],
                                          share)
    return ([(e, p, c) for (e, _, c), p in zip(old, old_shares)] +
            [(e, p, c) for (e, _, c), p in zip(new, new_shares)])


def rollout_sides(endpoint: dict) -> tuple[set[str], set[str]]:
    """The deployment keys of the candidate (pending config) and of the incumbent (serving config), less
    those both share: an entity that did not change serves both sides, so it judges neither; a shadow entity
    answers no caller, so it judges neither either."""
    def keys(config: dict | None) -> set[str]:
        return {deployment_key(endpoint["id"], e) for e in (config or {}).get("served_entities", ())
                if not e.get("shadow_percentage")}
    old, new = keys(endpoint.get("config")), keys(endpoint.get("pending_config"))
    return new - old, old - new


def _routes(config: dict) -> list[tuple[dict, int, dict]]:
    routed = [(_entity(config, r), r["traffic_percentage"], config) for r in config["traffic_config"]["routes"]]
    names = {e["name"] for e, _, _ in routed}
    return routed + [(e, 0, config) for e in config["served_entities"]
                     if e.get("shadow_percentage") and e["name"] not in names]


def _entity(config: dict, route: dict) -> dict:
    return next(e for e in config["served_entities"] if e["name"] == route["served_entity_name"])


def _swap(pending: dict) -> dict:
    return {"config": {k: v for k, v in pending.items() if k != "start_time"}, "pending_config": None,
            "failure": ""}


def _rollout_change(endpoint: dict, phase: str, reason: str, now_ms: int, *, step: int | None = None) -> dict:
    rollout = {**endpoint["rollout"], "phase": phase, "reason": reason}
    if step is not None:   # a new window: the driver reads its baseline counters at its next pass
        rollout.update(step=step, step_started_ms=now_ms, baseline=None, last_judgement=None)
    event = {"timestamp": now_ms, "config_version": rollout["config_version"], "phase": phase,
             "step": rollout["step"] + 1, "message": reason}
    return {"rollout": rollout, "rollout_events": [*endpoint.get("rollout_events", []), event][-MAX_ROLLOUT_EVENTS:]}


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


def entities_of_deployment(endpoints: Iterable[dict], key: str, find) -> list[tuple[str, dict]]:
    """(writer id, served entity) of each live config running deployment `key`: what a replica of it may be
    given (its secrets resolved, a credential) is decided by whoever wrote that config. `find(kind, name)` is
    a principal's id, for configs stored before their writer was recorded."""
    return [(c.get("writer_id") or find("user", e["creator"]) or "", entity)
            for e in endpoints for c in deployed_configs(e) for entity in c["served_entities"]
            if not is_external(entity) and deployment_key(e["id"], entity) == key]
