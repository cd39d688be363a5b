"""OpenAPI 3.1 documents of an endpoint's query API, built from its served models' MLflow signatures.

`build_document` is pure: an endpoint (ServingEndpointDetailed) and each served entity's signature in,
the document out. `SignatureReader` caches the signatures the model registry reader (registry.py, in its
threads under a deadline) gives: a version's signature never changes, an alias's may, so those expire.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from services.common.deployments import model_uri

if TYPE_CHECKING:
    from services.router.registry import ModelRegistry

JSON = "application/json"
_SCALARS = {
    "double": {"type": "number", "format": "double"}, "float": {"type": "number", "format": "float"},
    "long": {"type": "integer", "format": "int64"}, "integer": {"type": "integer", "format": "int32"},
    "boolean": {"type": "boolean"}, "string": {"type": "string"}, "binary": {"type": "string", "format": "byte"},
    "datetime": {"type": "string", "format": "date-time"},
}
_ERROR = {"type": "object", "required": ["error_code", "message"],
          "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}}}


# ---- reading signatures ----

class SignatureReader:
    def __init__(self, registry: "ModelRegistry", *, alias_ttl_s: float = 60.0, max_entries: int = 256,
                 clock: Callable[[], float] = time.monotonic):
        self._registry = registry
        self._alias_ttl_s = alias_ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._cache: OrderedDict[str, tuple[dict, float | None]] = OrderedDict()

    async def signature(self, entity_name: str, entity_version: str) -> dict:
        """The signature parts (ModelRegistry.signature), or {"error": reason} when the registry cannot give
        them (not cached)."""
        uri = model_uri(entity_name, entity_version)
        hit = self._cache.get(uri)
        if hit is not None and (hit[1] is None or hit[1] > self._clock()):
            self._cache.move_to_end(uri)
            return hit[0]
        try:
            value = await self._registry.signature(entity_name, entity_version)
        except Exception as exc:  # e.g. the version was deleted from the registry: say so in the document
            return {"error": getattr(exc, "message", None) or str(exc) or type(exc).__name__}
        is_version = "@" not in uri  # models:/<name>/<version>: immutable in the registry
        self._cache[uri] = (value, None if is_version else self._clock() + self._alias_ttl_s)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
        return value


# ---- building the document (pure) ----

def build_document(endpoint: dict, signatures: dict[str, dict], server_url: str = "") -> dict:
    """The OpenAPI document of `endpoint`'s invocations paths, one schema per served entity."""
    name = endpoint["name"]
    config = endpoint.get("config") or endpoint.get("pending_config") or {}
    entities = config.get("served_entities", [])
    schemas: dict = {"Error": _ERROR}
    paths: dict = {}
    request_refs = []
    for entity in entities:
        sm = entity["name"]
        signature = signatures.get(sm, {})
        schemas[f"{sm}.request"] = request_schema(signature)
        schemas[f"{sm}.response"] = response_schema(signature)
        request_refs.append({"$ref": f"#/components/schemas/{sm}.request"})
        about = f"Served entity {sm}: {entity['entity_name']} version {entity['entity_version']}."
        if signature.get("error"):
            about += f" Its signature could not be read: {signature['error']}"
        elif signature.get("inputs") is None:
            about += " The model was logged without a signature: any MLflow scoring format is accepted."
        paths[f"/serving-endpoints/{name}/served-models/{sm}/invocations"] = {"post": _operation(
            f"query-{name}-{sm}", f"Query served entity {sm} only", about, request_refs[-1],
            {"$ref": f"#/components/schemas/{sm}.response"})}
    if entities:
        routes = ", ".join(f"{r['served_entity_name']} {r['traffic_percentage']}%"
                           for r in config.get("traffic_config", {}).get("routes", []))
        responses = [{"$ref": f"#/components/schemas/{e['name']}.response"} for e in entities]
        paths = {f"/serving-endpoints/{name}/invocations": {"post": _operation(
            f"query-{name}", f"Query endpoint {name}", f"Traffic goes to the served entities by the routes: {routes}.",
            _one_of(request_refs), _one_of(responses))}, **paths}
    document = {
        "openapi": "3.1.0",
        "info": {"title": f"Serving endpoint {name}", "version": str(config.get("config_version", 0)),
                 "description": "The query API of a Podium serving endpoint, from its served models' MLflow "
                                "signatures. Answers carry the served entity in the served-model-name header."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearerAuth": []}],
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document


def request_schema(signature: dict) -> dict:
    """The invocations body: one of MLflow's scoring formats, shaped by the input schema and params."""
    inputs = signature.get("inputs")
    params = _params_schema(signature.get("params"))
    if not inputs:
        formats = {f: {} for f in ("dataframe_split", "dataframe_records", "instances", "inputs")}
    elif all(spec.get("type") == "tensor" for spec in inputs):
        formats = _tensor_formats(inputs)
    else:
        formats = _column_formats(inputs)
    options = []
    for field, schema in formats.items():
        properties = {field: schema, **({"params": params} if params else {})}
        options.append({"type": "object", "title": field, "required": [field], "properties": properties,
                        "additionalProperties": False})
    return {"oneOf": options}


def response_schema(signature: dict) -> dict:
    outputs = signature.get("outputs")
    if not outputs:
        predictions: dict = {}
    elif all(spec.get("type") == "tensor" for spec in outputs):
        predictions = _tensor_schema(outputs[0]) if len(outputs) == 1 else {
            "type": "object", "properties": {s.get("name", f"output_{i}"): _tensor_schema(s)
                                             for i, s in enumerate(outputs)}}
    elif len(outputs) == 1 and not outputs[0].get("name"):
        predictions = {"type": "array", "items": type_schema(outputs[0])}
    else:
        predictions = {"type": "array", "items": _record_schema(outputs)}
    return {"type": "object", "required": ["predictions"], "properties": {"predictions": predictions}}


def type_schema(spec: dict) -> dict:
    """JSON Schema of one MLflow type (ColSpec, Array, Object, Map, Any)."""
    kind = spec.get("type")
    if kind in _SCALARS:
        return dict(_SCALARS[kind])
    if kind == "array":
        return {"type": "array", "items": type_schema(spec["items"])}
    if kind == "object":
        properties = spec.get("properties", {})
        return {"type": "object", "properties": {k: type_schema(v) for k, v in properties.items()},
                "required": [k for k, v in properties.items() if v.get("required", True)]}
    if kind == "map":
        return {"type": "object", "additionalProperties": type_schema(spec["values"])}
    return {}  # "any", or a type this version does not know: accept anything


def _column_formats(inputs: list[dict]) -> dict:
    named = [s for s in inputs if s.get("name")]
    cell = _one_of([type_schema(s) for s in inputs])
    if len(named) != len(inputs):  # unnamed columns: rows are positional lists
        rows = {"type": "array", "items": {"type": "array", "items": cell}}
        return {"dataframe_split": {"type": "object", "required": ["data"], "properties": {"data": rows}},
                "instances": rows, "inputs": rows}
    names = [s["name"] for s in named]
    record = _record_schema(named)
    return {
        "dataframe_split": {"type": "object", "required": ["columns", "data"], "properties": {
            "columns": {"type": "array", "items": {"type": "string", "enum": names}},
            "data": {"type": "array", "items": {"type": "array", "items": cell}},
            "index": {"type": "array", "items": {"type": "integer"}}}},
        "dataframe_records": {"type": "array", "items": record},
        "instances": {"type": "array", "items": record},
        "inputs": {"type": "object", "required": record["required"], "properties": {
            s["name"]: {"type": "array", "items": type_schema(s)} for s in named}},
    }


def _tensor_formats(inputs: list[dict]) -> dict:
    if len(inputs) == 1:
        tensor = _tensor_schema(inputs[0])
        return {"instances": tensor, "inputs": tensor}
    by_name = {"type": "object", "required": [s.get("name", "") for s in inputs],
               "properties": {s.get("name", ""): _tensor_schema(s) for s in inputs}}
    return {"inputs": by_name}


def _tensor_schema(spec: dict) -> dict:
    """Nested arrays as deep as the shape; fixed dimensions become item counts."""
    tensor = spec.get("tensor-spec", {})
    dtype = str(tensor.get("dtype", ""))
    if dtype.startswith(("float", "double")):
        schema: dict = {"type": "number"}
    elif dtype.startswith(("int", "uint")):
        schema = {"type": "integer"}
    elif dtype == "bool":
        schema = {"type": "boolean"}
    elif dtype in ("str", "object", "bytes"):
        schema = {"type": "string"}
    else:
        schema = {}
    for size in reversed(tensor.get("shape") or [-1]):
        schema = {"type": "array", "items": schema}
        if isinstance(size, int) and size >= 0:
            schema.update(minItems=size, maxItems=size)
    return schema


def _record_schema(columns: list[dict]) -> dict:
    return {"type": "object", "properties": {s["name"]: type_schema(s) for s in columns},
            "required": [s["name"] for s in columns if s.get("required", True)]}


def _params_schema(params: list[dict] | None) -> dict:
    if not params:
        return {}
    properties = {}
    for spec in params:
        schema = type_schema({"type": spec.get("type")})
        if spec.get("shape"):
            schema = {"type": "array", "items": schema}
        properties[spec["name"]] = {**schema, "default": spec.get("default")}
    # MLflow ignores (with a warning) params the signature does not declare, so others are not refused.
    return {"type": "object", "properties": properties}


def _one_of(schemas: list[dict]) -> dict:
    distinct = []
    for schema in schemas:
        if schema not in distinct:
            distinct.append(schema)
    return distinct[0] if len(distinct) == 1 else {"oneOf": distinct} if distinct else {}


def _operation(operation_id: str, summary: str, description: str, request: dict, response: dict) -> dict:
    error = {"content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {
        "operationId": operation_id, "summary": summary, "description": description,
        "requestBody": {"required": True, "content": {JSON: {"schema": request}}},
        "responses": {
            "200": {"description": "The predictions", "content": {JSON: {"schema": response}},
                    "headers": {"served-model-name": {"description": "The served entity that answered",
                                                      "schema": {"type": "string"}}}},
            "400": {"description": "The body fits no scoring format or not the signature", **error},
            "404": {"description": "No such endpoint or served entity", **error},
            "503": {"description": "No ready replica yet; retry after Retry-After seconds", **error},
        },
    }
