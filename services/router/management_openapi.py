"""The OpenAPI 3 document of the router's management API (serving endpoints, secrets and their ACLs, Unity
Catalog grants on registered models) and its query path.

Served at GET /api/2.0/podium/openapi.json, for clients and for API fuzzers (tests/stack/test_fuzz.py drives
schemathesis with it). The request schemas are the Databricks shapes, loosely: the control plane's
validation is the authority, and a fuzzer should reach it with bodies it must refuse as well.
Per-endpoint model signatures are another document (openapi.py, GET .../{name}/openapi).
"""

from __future__ import annotations

ENDPOINTS = "/api/2.0/serving-endpoints"
SECRETS = "/api/2.0/secrets"
UC_GRANTS = "/api/2.1/unity-catalog/permissions/{securable_type}/{full_name}"
UC_EFFECTIVE = "/api/2.1/unity-catalog/effective-permissions/{securable_type}/{full_name}"

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
    "shadow_percentage": {"type": "integer", "minimum": 1, "maximum": 100},   # Podium's shadow traffic
    "shadow_judge_endpoint": {"type": "string", "minLength": 1},   # Podium's: judges a shadow's text answers
}}
MAX_SERVED_ENTITIES = 10   # as the control plane enforces (services/control_plane/spec.py)
_CONFIG = {"type": "object", "properties": {
    "served_entities": {"type": "array", "items": _SERVED_ENTITY, "maxItems": MAX_SERVED_ENTITIES},
    "traffic_config": {"type": "object", "properties": {"routes": {"type": "array", "maxItems": MAX_SERVED_ENTITIES, "items": {
        "type": "object", "properties": {"served_entity_name": {"type": "string"},
                                         "traffic_percentage": {"type": "integer"}}}}}},
    # Podium's rollout plan (docs/progressive-delivery.md)
    "rollout_plan": {"type": "object", "properties": {
        "steps": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 100}},
        "min_step_duration_s": {"type": "number"}, "min_step_requests": {"type": "integer"},
        "gates": {"type": "object"}}},
}}
_TAGS = {"type": "object", "properties": {
    "add_tags": {"type": "array", "items": {"type": "object", "properties": {
        "key": {"type": "string"}, "value": {"type": "string"}}}},
    "delete_tags": {"type": "array", "items": {"type": "string"}}}}
_RATE_LIMITS = {"type": "array", "maxItems": 3, "items": {"type": "object", "properties": {
    "calls": {"type": "integer"}, "tokens": {"type": "integer"},
    "key": {"type": "string", "enum": ["user", "endpoint", "user_group", "service_principal"]},
    "renewal_period": {"type": "string", "enum": ["minute"]}}}}
_GUARDRAIL_PARAMETERS = {"type": "object", "properties": {
    "pii": {"type": "object", "properties": {"behavior": {"type": "string", "enum": ["NONE", "BLOCK", "MASK"]}}},
    "safety": {"type": "boolean"}, "invalid_keywords": {"type": "array", "items": {"type": "string"}},
    "valid_topics": {"type": "array", "items": {"type": "string"}}}}
_AI_GATEWAY = {"type": "object", "properties": {
    "rate_limits": _RATE_LIMITS,
    "usage_tracking_config": {"type": "object", "properties": {"enabled": {"type": "boolean"}}},
    "inference_table_config": {"type": "object", "properties": {
        "enabled": {"type": "boolean"}, "catalog_name": {"type": "string"}, "schema_name": {"type": "string"}}},
    "guardrails": {"type": "object", "properties": {
        "input": _GUARDRAIL_PARAMETERS, "output": _GUARDRAIL_PARAMETERS,
        "guard_endpoint": {"type": "string"}}},   # Podium's: the endpoint that judges safety and valid_topics
    "fallback_config": {"type": "object", "properties": {"enabled": {"type": "boolean"}}},
    # Podium's spend budgets (docs/ai-gateway.md)
    "budgets": {"type": "array", "items": {"type": "object", "properties": {
        "key": {"type": "string", "enum": ["user", "endpoint", "user_group", "service_principal"]},
        "principal": {"type": "string"}, "limit_tokens": {"type": "integer"}, "limit_usd": {"type": "number"},
        "renewal_period": {"type": "string", "enum": ["day", "month"]}}}}}}
_QUERY = {"type": "object", "properties": {
    "dataframe_split": {"type": "object"}, "dataframe_records": {"type": "array"},
    "instances": {"type": "array"}, "inputs": {}, "params": {"type": "object"}}}

# Secrets and their scope ACLs (docs/identity-wire.md §6; databricks-sdk `service/workspace.py`)
_STRING = {"type": "string"}
_ACL_PERMISSION = {"type": "string", "enum": ["READ", "WRITE", "MANAGE"]}
_ACL_ITEM = {"type": "object", "required": ["principal", "permission"],
             "properties": {"principal": _STRING, "permission": _ACL_PERMISSION}}
_EMPTY = {"type": "object"}


def _query(name: str, required: bool = True) -> dict:
    return {"name": name, "in": "query", "required": required, "schema": _STRING}


def _fields(*required: str, **properties: dict) -> dict:
    return {"type": "object", "required": list(required),
            "properties": {**{name: _STRING for name in required}, **properties}}


# Unity Catalog grants (docs/identity-wire.md §7; databricks-sdk `service/catalog.py` GrantsAPI)
_PRIVILEGE = {"type": "string", "enum": ["EXECUTE", "ALL_PRIVILEGES", "MANAGE"]}
_SECURABLE = [
    {"name": "securable_type", "in": "path", "required": True,
     "schema": {"type": "string", "enum": ["catalog", "schema", "function", "registered_model", "model"]}},
    {"name": "full_name", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}},
]
_ASSIGNMENTS = {"type": "object", "properties": {"privilege_assignments": {"type": "array", "items": {
    "type": "object", "required": ["principal", "privileges"],
    "properties": {"principal": _STRING, "privileges": {"type": "array", "items": _PRIVILEGE}}}}}}
_EFFECTIVE = {"type": "object", "properties": {"privilege_assignments": {"type": "array", "items": {
    "type": "object", "required": ["principal", "privileges"],
    "properties": {"principal": _STRING, "privileges": {"type": "array", "items": {
        "type": "object", "required": ["privilege"], "properties": {
            "privilege": _PRIVILEGE, "inherited_from_name": _STRING,
            "inherited_from_type": {"type": "string", "enum": ["CATALOG", "SCHEMA"]}}}}}}}}}
_CHANGES = {"type": "object", "properties": {
    "changes": {"type": "array", "items": {"type": "object", "required": ["principal"], "properties": {
        "principal": _STRING, "add": {"type": "array", "items": _PRIVILEGE},
        "remove": {"type": "array", "items": _PRIVILEGE}}}},
    "omit_permissions_in_response": {"type": "boolean"}}}


def _operation(summary: str, body: dict | None = None, parameters: list | None = None,
               answer: dict | None = None) -> dict:
    operation: dict = {
        "summary": summary,
        "parameters": parameters or [],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": answer or {"type": "object"}}}},
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
        "info": {"title": "Podium management API", "version": "2.0"},
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
            **_secrets_paths(),
            UC_GRANTS: {
                "get": _operation("A securable's direct grants", parameters=[
                    *_SECURABLE, _query("principal", False),
                    {"name": "max_results", "in": "query", "required": False, "schema": {"type": "integer"}},
                    _query("page_token", False)], answer=_ASSIGNMENTS),
                "patch": _operation("Grant and revoke privileges", _CHANGES, _SECURABLE, _ASSIGNMENTS),
            },
            UC_EFFECTIVE: {"get": _operation("A securable's effective grants, inherited ones included",
                                             parameters=[*_SECURABLE, _query("principal", False)], answer=_EFFECTIVE)},
        },
    }


def _secrets_paths() -> dict:
    """Secret scopes, secrets and scope ACLs, in the order a client uses them (the scope is deleted last)."""
    scope = _query("scope")
    return {
        SECRETS + "/scopes/create": {"post": _operation("Create a secret scope", _fields(
            "scope", initial_manage_principal=_STRING, scope_backend_type={"type": "string", "enum": ["DATABRICKS"]}),
            answer=_EMPTY)},
        SECRETS + "/scopes/list": {"get": _operation("List the scopes one may read", answer={
            "type": "object", "properties": {"scopes": {"type": "array", "items": {"type": "object", "properties": {
                "name": _STRING, "backend_type": _STRING}}}}})},
        SECRETS + "/put": {"post": _operation("Put a secret", _fields(
            "scope", "key", string_value=_STRING, bytes_value={"type": "string", "format": "byte"}), answer=_EMPTY)},
        SECRETS + "/list": {"get": _operation("List a scope's secret keys", parameters=[scope], answer={
            "type": "object", "properties": {"secrets": {"type": "array", "items": {"type": "object", "properties": {
                "key": _STRING, "last_updated_timestamp": {"type": "integer"}}}}}})},
        SECRETS + "/get": {"get": _operation("Refused: values never leave the control plane",
                                             parameters=[scope, _query("key")])},
        SECRETS + "/acls/put": {"post": _operation("Set a principal's permission on a scope", {
            **_fields("scope", "principal", permission=_ACL_PERMISSION), "required": ["scope", "principal", "permission"]},
            answer=_EMPTY)},
        SECRETS + "/acls/get": {"get": _operation("A principal's permission on a scope",
                                                  parameters=[scope, _query("principal")], answer=_ACL_ITEM)},
        SECRETS + "/acls/list": {"get": _operation("A scope's ACL", parameters=[scope], answer={
            "type": "object", "properties": {"items": {"type": "array", "items": _ACL_ITEM}}})},
        SECRETS + "/acls/delete": {"post": _operation("Delete a principal's permission on a scope",
                                                      _fields("scope", "principal"), answer=_EMPTY)},
        SECRETS + "/delete": {"post": _operation("Delete a secret", _fields("scope", "key"), answer=_EMPTY)},
        SECRETS + "/scopes/delete": {"post": _operation("Delete a secret scope", _fields("scope"), answer=_EMPTY)},
    }
