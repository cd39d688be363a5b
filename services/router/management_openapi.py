"""The OpenAPI 3 document of the router's management API (serving endpoints) and its query path.

Served at GET /api/2.0/podium/openapi.json, for clients and for API fuzzers (tests/stack/test_fuzz.py drives
schemathesis with it). The request schemas are the Databricks shapes, loosely: the control plane's
validation is the authority, and a fuzzer should reach it with bodies it must refuse as well.
Per-endpoint model signatures are another document (openapi.py, GET .../{name}/openapi).
"""

from __future__ import annotations

ENDPOINTS = "/api/2.0/serving-endpoints"

_ERROR = {"type": "object", "required": ["error_code", "message"],
          "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}}}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
_SERVED_MODEL = {"name": "served_model", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
_SERVED_ENTITY = {"type": "object", "properties": {
    "name": {"type": "string"}, "entity_name": {"type": "string"}, "entity_version": {"type": "string"},
    "workload_size": {"type": "string", "enum": ["Small", "Medium", "Large"]},
    "workload_type": {"type": "string"}, "scale_to_zero_enabled": {"type": "boolean"},
    "min_provisioned_concurrency": {"type": "integer"}, "max_provisioned_concurrency": {"type": "integer"},
    "environment_vars": {"type": "object", "additionalProperties": {"type": "string"}},
    # Podium's adaptive batching (extensions to the Databricks object)
    "max_batch_size": {"type": "integer", "minimum": 1, "maximum": 1024},
    "max_batch_wait_ms": {"type": "number", "minimum": 0, "maximum": 1000},
}}
MAX_SERVED_ENTITIES = 10   # as the control plane enforces (services/control_plane/spec.py)
_CONFIG = {"type": "object", "properties": {
    "served_entities": {"type": "array", "items": _SERVED_ENTITY, "maxItems": MAX_SERVED_ENTITIES},
    "traffic_config": {"type": "object", "properties": {"routes": {"type": "array", "maxItems": MAX_SERVED_ENTITIES, "items": {
        "type": "object", "properties": {"served_entity_name": {"type": "string"},
                                         "traffic_percentage": {"type": "integer"}}}}}},
}}
_TAGS = {"type": "object", "properties": {
    "add_tags": {"type": "array", "items": {"type": "object", "properties": {
        "key": {"type": "string"}, "value": {"type": "string"}}}},
    "delete_tags": {"type": "array", "items": {"type": "string"}}}}
_RATE_LIMITS = {"type": "array", "maxItems": 3, "items": {"type": "object", "properties": {
    "calls": {"type": "integer"}, "tokens": {"type": "integer"},
    "key": {"type": "string", "enum": ["user", "endpoint", "user_group", "service_principal"]},
    "renewal_period": {"type": "string", "enum": ["minute"]}}}}
_AI_GATEWAY = {"type": "object", "properties": {
    "rate_limits": _RATE_LIMITS,
    "usage_tracking_config": {"type": "object", "properties": {"enabled": {"type": "boolean"}}},
    "inference_table_config": {"type": "object", "properties": {
        "enabled": {"type": "boolean"}, "catalog_name": {"type": "string"}, "schema_name": {"type": "string"}}}}}
_QUERY = {"type": "object", "properties": {
    "dataframe_split": {"type": "object"}, "dataframe_records": {"type": "array"},
    "instances": {"type": "array"}, "inputs": {}, "params": {"type": "object"}}}


def _operation(summary: str, body: dict | None = None, parameters: list | None = None) -> dict:
    operation: dict = {
        "summary": summary,
        "parameters": parameters or [],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
            "default": {"description": "An error", "content": {"application/json": {"schema": _ERROR}}},
        },
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return operation


def management_document(server_url: str = "") -> dict:
    """The document, its server being where the caller reached this router."""
    by_name = [_NAME]
    return {
        "openapi": "3.0.3",
        "info": {"title": "Podium serving endpoints API", "version": "2.0"},
        "servers": [{"url": server_url}] if server_url else [],
        "security": [{"bearer": []}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            ENDPOINTS: {
                "get": _operation("List serving endpoints"),
                "post": _operation("Create a serving endpoint", {"type": "object", "properties": {
                    "name": {"type": "string"}, "config": _CONFIG, "tags": _TAGS["properties"]["add_tags"],
                    "ai_gateway": _AI_GATEWAY, "rate_limits": _RATE_LIMITS}}),
            },
            ENDPOINTS + "/{name}": {
                "get": _operation("Get a serving endpoint", parameters=by_name),
                "delete": _operation("Delete a serving endpoint", parameters=by_name),
            },
            ENDPOINTS + "/{name}/config": {"put": _operation("Update the config", _CONFIG, by_name)},
            ENDPOINTS + "/{name}/tags": {"patch": _operation("Add and delete tags", _TAGS, by_name)},
            ENDPOINTS + "/{name}/ai-gateway": {"put": _operation("Set the AI gateway", _AI_GATEWAY, by_name)},
            ENDPOINTS + "/{name}/rate-limits": {"put": _operation(
                "Set rate limits (legacy)", {"type": "object", "properties": {"rate_limits": _RATE_LIMITS}}, by_name)},
            ENDPOINTS + "/{name}/openapi": {"get": _operation("The endpoint's query API", parameters=by_name)},
            ENDPOINTS + "/{name}/served-models/{served_model}/logs": {
                "get": _operation("A served model's logs", parameters=[_NAME, _SERVED_MODEL])},
            ENDPOINTS + "/{name}/served-models/{served_model}/build-logs": {
                "get": _operation("A served model's build logs", parameters=[_NAME, _SERVED_MODEL])},
            "/serving-endpoints/{name}/invocations": {"post": _operation("Query an endpoint", _QUERY, by_name)},
        },
    }
