"""Validates serving-endpoint requests in the Databricks shapes and normalizes them for storage.

Pure functions: a request dict in, a normalized dict out, or InvalidParameter / MalformedRequest naming
the offending field. Every later step (storage, state, rendering) trusts what comes out of here.
"""

from __future__ import annotations

import re
from typing import Any

from services.common import deployments
from services.common.errors import InvalidParameter
from services.common.model_environment import environment_var_refusal
from services.control_plane.rollout_policy import validate_rollout_plan
from services.control_plane.spec_external import default_entity_name, validate_external_model
from services.control_plane.spec_shadow import check_shadow_routes, validate_shadow
from services.control_plane.spec_fields import (
    reject_unknown, require_bool as _bool, require_list as _list, require_non_negative_int as _non_negative_int,
    require_object as _object, require_str as _str,
)
from services.control_plane.spec_options import (
    check_budget_prices, validate_ai_gateway, validate_email_notifications, validate_legacy_rate_limits, validate_tags,
    validate_telemetry_config,
)

ENDPOINT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
SERVED_ENTITY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
MODEL_VERSION = re.compile(r"^[0-9]+$")
MODEL_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
WORKLOAD_SIZES = ("Small", "Medium", "Large")
WORKLOAD_TYPES = (
    "CPU", "CPU_MEDIUM", "CPU_LARGE", "GPU_SMALL", "GPU_MEDIUM", "GPU_LARGE",
    "GPU_XLARGE", "GPU_XLARGE_8", "MULTIGPU_MEDIUM",
)
MAX_SERVED_ENTITIES = 10
# Databricks Model Serving limits: provisioned concurrency per model, environment variables per served model.
MAX_PROVISIONED_CONCURRENCY = 1024
MAX_ENVIRONMENT_VARS = 30
# Podium's own bounds where Databricks documents none: a description is a sentence or a paragraph, not a file.
MAX_DESCRIPTION_CHARS = 4096
MAX_BUDGET_POLICY_ID_CHARS = 255
# Batching (a Podium extension of the served entity): unset, the worker batches the models whose answers
# cannot change by it (services/worker/row_exact.py); 1 turns it off, > 1 asserts the model is row-wise.
MAX_BATCH_SIZE_LIMIT = 1024
MAX_BATCH_WAIT_MS_LIMIT = 1000.0
# Paths under /serving-endpoints/ that belong to the OpenAI-compatible API, not to an endpoint.
RESERVED_ENDPOINT_NAMES = frozenset({"chat", "completions", "embeddings", "responses", "models", "anthropic", "v1"})


def validate_create(body: Any) -> dict:
    """Returns {"name", "config", "tags", ...} for a POST /api/2.0/serving-endpoints body."""
    body = _object(body, "request body")
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidParameter("Missing required field: name")
    validate_endpoint_name(name)
    if "config" not in body or body["config"] is None:
        raise InvalidParameter("Missing required field: config")
    ai_gateway = validate_ai_gateway(body.get("ai_gateway") or {}, "ai_gateway")
    if body.get("rate_limits"):
        # The legacy endpoint rate limits and the AI gateway's are one list here (Databricks deprecated the
        # former for the latter), so the router enforces one list and GET shows them in ai_gateway.
        if "rate_limits" in ai_gateway:
            raise InvalidParameter("Give rate_limits or ai_gateway.rate_limits, not both")
        ai_gateway["rate_limits"] = validate_legacy_rate_limits(body["rate_limits"], "rate_limits")
    config = validate_config(body["config"], "config")
    check_budget_prices({"ai_gateway": ai_gateway}, config)
    return {
        "name": name,
        "config": config,
        "tags": validate_tags(body.get("tags") or [], "tags"),
        "ai_gateway": ai_gateway,
        "email_notifications": validate_email_notifications(body.get("email_notifications") or {}),
        "telemetry_config": validate_telemetry_config(body.get("telemetry_config") or {}),
        "route_optimized": _bool(body.get("route_optimized", False), "route_optimized"),
        "description": _bounded_str(body.get("description") or "", MAX_DESCRIPTION_CHARS, "description"),
        "budget_policy_id": _bounded_str(body.get("budget_policy_id") or "", MAX_BUDGET_POLICY_ID_CHARS,
                                         "budget_policy_id"),
    }


def _bounded_str(value: Any, max_chars: int, field: str) -> str:
    if len(_str(value, field)) > max_chars:
        raise InvalidParameter(f"{field} must be at most {max_chars} characters")
    return value


def validate_endpoint_name(name: str) -> None:
    if not ENDPOINT_NAME.fullmatch(name):
        raise InvalidParameter(
            f"Invalid endpoint name '{name}': use 1-63 letters, digits, '-' or '_', starting with a letter or digit"
        )
    if name.lower() in RESERVED_ENDPOINT_NAMES:
        raise InvalidParameter(
            f"Invalid endpoint name '{name}': it clashes with the OpenAI-compatible path /serving-endpoints/{name}"
        )


def validate_config(config: Any, field: str = "config") -> dict:
    """Returns {"served_entities": [...], "traffic_config": {"routes": [...]}} (PUT .../config body)."""
    config = _object(config, field)
    raw_entities = config.get("served_entities")
    legacy = config.get("served_models")
    if raw_entities and legacy:
        raise InvalidParameter(f"{field}: give served_entities or served_models, not both")
    if legacy:
        raw_entities = [_from_served_model(m, f"{field}.served_models[{i}]")
                        for i, m in enumerate(_list(legacy, f"{field}.served_models"))]
    raw_entities = _list(raw_entities or [], f"{field}.served_entities")
    if not raw_entities:
        raise InvalidParameter(f"{field}.served_entities must name at least one served entity")
    if len(raw_entities) > MAX_SERVED_ENTITIES:
        raise InvalidParameter(f"{field}.served_entities: at most {MAX_SERVED_ENTITIES} served entities per endpoint")
    entities = [validate_served_entity(e, f"{field}.served_entities[{i}]") for i, e in enumerate(raw_entities)]
    if len({e.get("external_model", {}).get("task") for e in entities}) > 1:
        raise InvalidParameter(f"{field}.served_entities: an endpoint serves either custom models or external "
                               "models of one task, not a mix")
    names = [e["name"] for e in entities]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidParameter(f"{field}.served_entities: duplicate served entity name '{duplicates[0]}'")
    traffic = validate_traffic_config(config.get("traffic_config"), names, f"{field}.traffic_config")
    check_shadow_routes(entities, traffic, field)
    out = {"served_entities": entities, "traffic_config": traffic}
    if config.get("auto_capture_config") is not None:
        out["auto_capture_config"] = _auto_capture(config["auto_capture_config"], f"{field}.auto_capture_config")
    if config.get("rollout_plan") is not None:   # Podium's: how an update to this config rolls out
        out["rollout_plan"] = validate_rollout_plan(config["rollout_plan"], f"{field}.rollout_plan")
    return out


def _auto_capture(value: Any, field: str) -> dict:
    """The legacy inference-table settings (auto_capture_config): enabled, the endpoint writes the records
    ai_gateway.inference_table_config writes (services/control_plane/gateway_policy.py), under the data dir."""
    value = _object(value, field)
    reject_unknown(value, ("catalog_name", "schema_name", "table_name_prefix", "enabled"), field)
    out: dict = {n: _str(value[n], f"{field}.{n}") for n in ("catalog_name", "schema_name", "table_name_prefix")
                 if value.get(n) is not None}
    if value.get("enabled") is not None:
        out["enabled"] = _bool(value["enabled"], f"{field}.enabled")
    return out


def _from_served_model(model: Any, field: str) -> dict:
    model = dict(_object(model, field))
    if "model_name" in model:
        model["entity_name"] = model.pop("model_name")
    if "model_version" in model:
        model["entity_version"] = model.pop("model_version")
    return model


def validate_served_entity(entity: Any, field: str) -> dict:
    entity = _object(entity, field)
    shadow = validate_shadow(entity, field)   # Podium's: a copy of a share of the queries, answers compared
    if entity.get("external_model") is not None:
        return _external_entity(entity, field)
    entity_name = entity.get("entity_name")
    if not isinstance(entity_name, str) or not entity_name.strip():
        raise InvalidParameter(f"Missing required field: {field}.entity_name")
    version = entity.get("entity_version")
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    if not isinstance(version, str) or not version:
        raise InvalidParameter(f"Missing required field: {field}.entity_version")
    version = version.lstrip("@")
    if not (MODEL_VERSION.fullmatch(version) or MODEL_ALIAS.fullmatch(version)):
        raise InvalidParameter(f"{field}.entity_version '{version}' is neither a version number nor an alias")
    short_name = entity_name.rsplit(".", 1)[-1]
    name = entity.get("name") or f"{short_name}-{version}"
    if not isinstance(name, str) or not SERVED_ENTITY_NAME.fullmatch(name):
        raise InvalidParameter(f"{field}.name '{name}' must be 1-63 letters, digits, '-', '_' or '.'")
    workload_size = _str(entity.get("workload_size", "Small"), f"{field}.workload_size") or "Small"
    canonical_size = {s.lower(): s for s in WORKLOAD_SIZES}.get(workload_size.lower())
    if canonical_size is None:
        raise InvalidParameter(f"{field}.workload_size '{workload_size}' must be one of {', '.join(WORKLOAD_SIZES)}")
    workload_type = _str(entity.get("workload_type", "CPU"), f"{field}.workload_type") or "CPU"
    if workload_type not in WORKLOAD_TYPES:
        raise InvalidParameter(f"{field}.workload_type '{workload_type}' must be one of {', '.join(WORKLOAD_TYPES)}")
    env = _object(entity.get("environment_vars") or {}, f"{field}.environment_vars")
    if len(env) > MAX_ENVIRONMENT_VARS:
        raise InvalidParameter(f"{field}.environment_vars: at most {MAX_ENVIRONMENT_VARS} per served entity")
    for key, value in env.items():
        if not isinstance(value, str):
            raise InvalidParameter(f"{field}.environment_vars.{key} must be a string")
        refusal = environment_var_refusal(key)
        if refusal is not None:
            raise InvalidParameter(f"{field}.environment_vars.{key} {refusal}")
    normalized = {
        "name": name,
        "entity_name": entity_name,
        "entity_version": version,
        "workload_size": canonical_size,
        "workload_type": workload_type,
        "scale_to_zero_enabled": _bool(entity.get("scale_to_zero_enabled", False), f"{field}.scale_to_zero_enabled"),
        "environment_vars": env,
    }
    for bound in ("min_provisioned_concurrency", "max_provisioned_concurrency"):
        if entity.get(bound) is not None:
            normalized[bound] = _non_negative_int(entity[bound], f"{field}.{bound}")
            if normalized[bound] > MAX_PROVISIONED_CONCURRENCY:
                raise InvalidParameter(f"{field}.{bound} must be at most {MAX_PROVISIONED_CONCURRENCY} "
                                       "(provisioned concurrency per model)")
    low, high = normalized.get("min_provisioned_concurrency"), normalized.get("max_provisioned_concurrency")
    if low is not None and high is not None and low > high:
        raise InvalidParameter(f"{field}: min_provisioned_concurrency is above max_provisioned_concurrency")
    normalized.update(_batching(entity, field), **shadow)
    pinned = entity.get("resolved_version")   # the version an alias pointed to when written (aliases.py)
    if isinstance(pinned, str) and MODEL_VERSION.fullmatch(pinned) and not MODEL_VERSION.fullmatch(version):
        normalized["resolved_version"] = pinned
    return normalized


def _batching(entity: dict, field: str) -> dict:
    """{"max_batch_size", "max_batch_wait_ms"} as given; {} if neither.

    Stored only when given, so entities that never asked for batching keep their Databricks shape.
    """
    out: dict = {}
    size = entity.get("max_batch_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_BATCH_SIZE_LIMIT:
            raise InvalidParameter(f"{field}.max_batch_size must be an integer from 1 to {MAX_BATCH_SIZE_LIMIT}")
        out["max_batch_size"] = size
    wait = entity.get("max_batch_wait_ms")
    if wait is not None:
        if not isinstance(wait, (int, float)) or isinstance(wait, bool) or not 0 <= wait <= MAX_BATCH_WAIT_MS_LIMIT:
            raise InvalidParameter(f"{field}.max_batch_wait_ms must be a number from 0 to {MAX_BATCH_WAIT_MS_LIMIT:g}")
        out["max_batch_wait_ms"] = wait
    return out


def is_all_external(config: dict) -> bool:
    """Whether providers serve every entity of a validated config (so it runs no replica)."""
    return all(e.get("external_model") is not None for e in config["served_entities"])


def _external_entity(entity: dict, field: str) -> dict:
    """An entity served by a provider: no replicas, so none of the sizing fields apply."""
    if entity.get("entity_name") is not None or entity.get("entity_version") is not None:
        raise InvalidParameter(f"{field}: give external_model or entity_name/entity_version, not both")
    external_model = validate_external_model(entity["external_model"], f"{field}.external_model")
    name = entity.get("name") or default_entity_name(external_model)
    if not isinstance(name, str) or not SERVED_ENTITY_NAME.fullmatch(name):
        raise InvalidParameter(f"{field}.name '{name}' must be 1-63 letters, digits, '-', '_' or '.'")
    return {"name": name, "external_model": external_model}


def validate_traffic_config(traffic: Any, entity_names: list[str], field: str) -> dict:
    """Routes as integers summing to 100 over existing served entities; defaulted for one entity."""
    if traffic is None or traffic == {}:
        if len(entity_names) == 1:
            return {"routes": [_route(entity_names[0], 100)]}
        raise InvalidParameter(f"Missing required field: {field} (needed when an endpoint serves several entities)")
    routes_in = _list(_object(traffic, field).get("routes") or [], f"{field}.routes")
    if not routes_in:
        raise InvalidParameter(f"{field}.routes must not be empty")
    routes, seen = [], set()
    for i, route in enumerate(routes_in):
        route = _object(route, f"{field}.routes[{i}]")
        target = route.get("served_entity_name") or route.get("served_model_name")
        if not isinstance(target, str) or not target:
            raise InvalidParameter(f"Missing required field: {field}.routes[{i}].served_entity_name")
        if target not in entity_names:
            raise InvalidParameter(f"{field}.routes[{i}] names served entity '{target}', which the config does not serve")
        if target in seen:
            raise InvalidParameter(f"{field}.routes: served entity '{target}' is routed twice")
        seen.add(target)
        percentage = route.get("traffic_percentage")
        if not isinstance(percentage, int) or isinstance(percentage, bool) or not 0 <= percentage <= 100:
            raise InvalidParameter(f"{field}.routes[{i}].traffic_percentage must be an integer from 0 to 100")
        routes.append(_route(target, percentage))
    total = sum(r["traffic_percentage"] for r in routes)
    if total != 100:
        raise InvalidParameter(f"{field}.routes: traffic percentages must sum to 100, not {total}")
    return {"routes": routes}


def _route(entity_name: str, percentage: int) -> dict:
    return {"served_model_name": entity_name, "served_entity_name": entity_name, "traffic_percentage": percentage}


def model_uri(entity: dict) -> str:
    """models:/<name>/<version> for a version number or an alias pinned to one, models:/<name>@<alias> otherwise."""
    return deployments.model_uri(entity["entity_name"], entity.get("resolved_version") or entity["entity_version"])
