"""The endpoint state machine and spec validation, without processes."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidParameter, MalformedRequest
from services.control_plane import spec
from services.control_plane.state import (
    IN_PROGRESS, NOT_READY, NOT_UPDATING, READY, UPDATE_FAILED, Observation, advance, deployed_configs, deployment_key,
    entity_state,
)

ENTITY_V1 = {"name": "m-1", "entity_name": "c.s.m", "entity_version": "1", "environment_vars": {}, "workload_type": "CPU"}
ENTITY_V2 = {**ENTITY_V1, "name": "m-2", "entity_version": "2"}


def _config(entity, version):
    return {"served_entities": [entity], "config_version": version, "start_time": 0,
            "traffic_config": {"routes": [{"served_entity_name": entity["name"], "served_model_name": entity["name"],
                                           "traffic_percentage": 100}]}}


def _endpoint(config=None, pending=None, ready=NOT_READY, update=IN_PROGRESS):
    return {"id": "e1", "name": "e", "config": config, "pending_config": pending, "failure": "",
            "state": {"ready": ready, "config_update": update}, "last_updated_timestamp": 0}


def _seen(entity, addresses=("127.0.0.1:1",), failure=""):
    return {deployment_key("e1", entity): Observation(tuple(addresses) if not failure else (), 0, failure)}


def test_create_becomes_ready_when_its_replica_is():
    endpoint = _endpoint(pending=_config(ENTITY_V1, 1))
    assert advance(endpoint, {}, 5) is endpoint  # nothing observed: nothing changes
    done = advance(endpoint, _seen(ENTITY_V1), 5)
    assert done["state"] == {"ready": READY, "config_update": NOT_UPDATING}
    assert done["config"]["config_version"] == 1 and done["pending_config"] is None
    assert "start_time" not in done["config"]


def test_failed_create_reports_the_reason():
    endpoint = _endpoint(pending=_config(ENTITY_V1, 1))
    failed = advance(endpoint, _seen(ENTITY_V1, failure="Registered Model with name=c.s.m not found"), 5)
    assert failed["state"] == {"ready": NOT_READY, "config_update": UPDATE_FAILED}
    assert "not found" in failed["failure"] and "m-1" in failed["failure"]
    assert deployed_configs(failed) == []  # a failed pending config is no longer deployed


def test_update_keeps_old_config_serving_until_the_new_one_is_ready():
    endpoint = _endpoint(config=_config(ENTITY_V1, 1), pending=_config(ENTITY_V2, 2), ready=READY)
    assert [c["config_version"] for c in deployed_configs(endpoint)] == [1, 2]
    starting = advance(endpoint, _seen(ENTITY_V1), 5)
    assert starting["state"] == {"ready": READY, "config_update": IN_PROGRESS}
    done = advance(endpoint, {**_seen(ENTITY_V1), **_seen(ENTITY_V2)}, 6)
    assert done["config"]["config_version"] == 2 and done["state"]["config_update"] == NOT_UPDATING
    assert [c["config_version"] for c in deployed_configs(done)] == [2]  # the old entity is retired


def test_failed_update_leaves_old_config_serving():
    endpoint = _endpoint(config=_config(ENTITY_V1, 1), pending=_config(ENTITY_V2, 2), ready=READY)
    failed = advance(endpoint, {**_seen(ENTITY_V1), **_seen(ENTITY_V2, failure="boom")}, 5)
    assert failed["state"] == {"ready": READY, "config_update": UPDATE_FAILED}
    assert failed["config"]["config_version"] == 1
    assert [c["config_version"] for c in deployed_configs(failed)] == [1]


def test_deployment_key_ignores_routes_and_names_but_not_versions():
    assert deployment_key("e1", ENTITY_V1) == deployment_key("e1", {**ENTITY_V1, "name": "other", "workload_size": "Large"})
    assert deployment_key("e1", ENTITY_V1) != deployment_key("e1", ENTITY_V2)
    assert deployment_key("e1", ENTITY_V1) != deployment_key("e2", ENTITY_V1)


def test_spec_defaults_and_legacy_served_models():
    created = spec.validate_create({"name": "e", "config": {"served_models": [
        {"model_name": "cat.sch.iris", "model_version": "4", "workload_size": "small", "scale_to_zero_enabled": True}]}})
    [entity] = created["config"]["served_entities"]
    assert entity["name"] == "iris-4" and entity["entity_name"] == "cat.sch.iris"
    assert entity["workload_size"] == "Small" and entity["workload_type"] == "CPU"
    assert created["config"]["traffic_config"]["routes"][0]["traffic_percentage"] == 100
    assert spec.model_uri(entity) == "models:/cat.sch.iris/4"
    assert spec.model_uri({**entity, "entity_version": "champion"}) == "models:/cat.sch.iris@champion"


@pytest.mark.parametrize("config, error, needle", [
    ({"served_entities": [{"entity_name": "m", "entity_version": "1"}, {"entity_name": "m", "entity_version": "1"}],
      "traffic_config": {"routes": [{"served_model_name": "m-1", "traffic_percentage": 100}]}},
     InvalidParameter, "duplicate"),
    ({"served_entities": [{"entity_name": "m", "entity_version": "1"}, {"entity_name": "m", "entity_version": "2"}]},
     InvalidParameter, "traffic_config"),
    ({"served_entities": [{"entity_name": "m", "entity_version": "1"}],
      "traffic_config": {"routes": [{"served_model_name": "x-1", "traffic_percentage": 100}]}},
     InvalidParameter, "x-1"),
    ({"served_entities": [{"entity_name": "m", "entity_version": "1"}],
      "traffic_config": {"routes": [{"served_model_name": "m-1", "traffic_percentage": 100.0}]}},
     InvalidParameter, "integer"),
    ({"served_entities": [{"entity_name": "m", "entity_version": "1", "environment_vars": {"A": 1}}]},
     InvalidParameter, "environment_vars.A"),
    ({"served_entities": [{"entity_name": "m", "entity_version": "1", "external_model": {"provider": "openai"}}]},
     InvalidParameter, "external_model"),
    ([], MalformedRequest, "config"),
])
def test_invalid_configs(config, error, needle):
    with pytest.raises(error) as raised:
        spec.validate_config(config)
    assert needle in raised.value.message


STZ_V1 = {**ENTITY_V1, "scale_to_zero_enabled": True}


def test_a_scaled_to_zero_entity_keeps_its_endpoint_ready():
    at_zero = {deployment_key("e1", STZ_V1): Observation((), 0, "", desired_replicas=0)}
    serving = _endpoint(config=_config(STZ_V1, 1), ready=READY, update=NOT_UPDATING)
    assert advance(serving, at_zero, 5) is serving  # still READY: a request starts a replica
    state = entity_state(serving, STZ_V1, at_zero, is_pending=False)
    assert state == {"deployment": "DEPLOYMENT_READY",
                     "deployment_state_message": "scaled to zero: the next request starts a replica",
                     "desired_replicas": 0, "ready_replicas": 0, "starting_replicas": 0}
    waking = {deployment_key("e1", STZ_V1): Observation((), 1, "", desired_replicas=1)}
    assert entity_state(serving, STZ_V1, waking, is_pending=False)["deployment_state_message"] == "scaling up from zero"
    # Without scale to zero, no ready replica means not ready.
    plain = _endpoint(config=_config(ENTITY_V1, 1), ready=READY, update=NOT_UPDATING)
    assert advance(plain, {deployment_key("e1", ENTITY_V1): Observation()}, 5)["state"]["ready"] == NOT_READY


def test_a_new_scale_to_zero_config_still_needs_a_ready_replica():
    creating = _endpoint(pending=_config(STZ_V1, 1))
    at_zero = {deployment_key("e1", STZ_V1): Observation((), 1, "", desired_replicas=1)}
    assert advance(creating, at_zero, 5) is creating  # a model that cannot load is caught at deploy time
    done = advance(creating, _seen(STZ_V1), 5)
    assert done["state"] == {"ready": READY, "config_update": NOT_UPDATING}


def test_entity_state_shows_desired_and_actual_replicas():
    endpoint = _endpoint(config=_config(ENTITY_V1, 1), ready=READY, update=NOT_UPDATING)
    seen = {deployment_key("e1", ENTITY_V1): Observation(("a:1", "b:2"), 1, "", desired_replicas=3)}
    state = entity_state(endpoint, ENTITY_V1, seen, is_pending=False)
    assert state == {"deployment": "DEPLOYMENT_READY", "deployment_state_message": "2 replicas ready",
                     "desired_replicas": 3, "ready_replicas": 2, "starting_replicas": 1}
