"""OpenAPI documents from MLflow signatures, and the signature cache, without processes."""

from __future__ import annotations

import time

import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi

from services.common.deployments import model_uri
from services.router.openapi import SignatureReader, build_document, request_schema, response_schema, type_schema
from services.router.registry import ModelNotFound, ModelRegistry

COLUMNS = {"inputs": [{"type": "double", "name": "a", "required": True},
                      {"type": "string", "name": "b", "required": False}],
           "outputs": [{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}],
           "params": [{"name": "k", "default": 3, "shape": None, "type": "long"}]}
TENSOR = {"inputs": [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 2]}}],
          "outputs": [{"type": "double", "name": "score", "required": True},
                      {"type": "string", "name": "label", "required": True}], "params": None}


def _endpoint(*entities: tuple[str, str]) -> dict:
    served = [{"name": n, "entity_name": "c.s.m", "entity_version": v} for n, v in entities]
    routes = [{"served_entity_name": n, "traffic_percentage": 100 // len(entities)} for n, _ in entities]
    return {"name": "ep", "config": {"served_entities": served, "traffic_config": {"routes": routes},
                                     "config_version": 3}}


def _validator(schema: dict) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("body, valid", [
    ({"dataframe_split": {"columns": ["a", "b"], "data": [[1.5, "x"], [2, "y"]]}}, True),
    ({"dataframe_records": [{"a": 1.0, "b": "x"}, {"a": 2.0}]}, True),
    ({"instances": [{"a": 1.0}]}, True),
    ({"inputs": {"a": [1.0, 2.0], "b": ["x", "y"]}}, True),
    ({"inputs": {"a": [1.0]}, "params": {"k": 5}}, True),
    ({"dataframe_records": [{"b": "x"}]}, False),              # a is required
    ({"dataframe_records": [{"a": "one"}]}, False),            # a is a double
    ({"dataframe_split": {"columns": ["c"], "data": [[1]]}}, False),  # no column c
    ({"inputs": {"a": [1]}, "instances": [{"a": 1}]}, False),  # two formats at once
    ({"rows": [[1]]}, False),                                  # no format at all
    ({"inputs": {"a": [1.0]}, "params": {"k": "five"}}, False),
])
def test_column_signature_request_schema(body, valid):
    assert _validator(request_schema(COLUMNS)).is_valid(body) is valid


@pytest.mark.parametrize("body, valid", [
    ({"inputs": [[1.0, 2.0], [3.0, 4.0]]}, True),
    ({"instances": [[1.0, 2.0]]}, True),
    ({"inputs": [[1.0, 2.0, 3.0]]}, False),  # the shape says 2 per row
    ({"inputs": [["a", "b"]]}, False),
    ({"dataframe_records": [{"a": 1}]}, False),
])
def test_tensor_signature_request_schema(body, valid):
    assert _validator(request_schema(TENSOR)).is_valid(body) is valid


def test_response_schemas():
    assert _validator(response_schema(COLUMNS)).is_valid({"predictions": [0, 1, 2]})
    assert not _validator(response_schema(COLUMNS)).is_valid({"predictions": [0.5]})
    assert _validator(response_schema(TENSOR)).is_valid({"predictions": [{"score": 0.1, "label": "x"}]})
    assert not _validator(response_schema(TENSOR)).is_valid([0, 1])  # answers are objects (§7.9)
    assert response_schema({})["properties"]["predictions"] == {}


@pytest.mark.parametrize("spec, value, valid", [
    ({"type": "array", "items": {"type": "long"}}, [1, 2], True),
    ({"type": "array", "items": {"type": "long"}}, [1.5], False),
    ({"type": "object", "properties": {"x": {"type": "long", "required": True},
                                       "y": {"type": "string", "required": False}}}, {"x": 1}, True),
    ({"type": "object", "properties": {"x": {"type": "long", "required": True}}}, {"y": "1"}, False),
    ({"type": "map", "values": {"type": "double"}}, {"p": 0.5, "q": 1}, True),
    ({"type": "map", "values": {"type": "double"}}, {"p": "high"}, False),
    ({"type": "any"}, {"anything": [1, "x"]}, True),
    ({"type": "datetime"}, "2024-01-01T00:00:00", True),
    ({"type": "boolean"}, 1, False),
])
def test_type_schema(spec, value, valid):
    assert _validator(type_schema(spec)).is_valid(value) is valid


def test_document_is_valid_openapi_with_a_path_per_served_entity():
    document = build_document(_endpoint(("m-1", "1"), ("m-2", "2")),
                              {"m-1": COLUMNS, "m-2": {"error": "RESOURCE_DOES_NOT_EXIST: no version 2"}},
                              "http://127.0.0.1:8080")
    validate_openapi(document)
    assert document["info"]["version"] == "3" and document["servers"] == [{"url": "http://127.0.0.1:8080"}]
    assert list(document["paths"]) == ["/serving-endpoints/ep/invocations",
                                       "/serving-endpoints/ep/served-models/m-1/invocations",
                                       "/serving-endpoints/ep/served-models/m-2/invocations"]
    split = document["paths"]["/serving-endpoints/ep/invocations"]["post"]
    assert "m-1 50%" in split["description"]
    assert len(split["requestBody"]["content"]["application/json"]["schema"]["oneOf"]) == 2
    assert "no version 2" in document["paths"]["/serving-endpoints/ep/served-models/m-2/invocations"]["post"][
        "description"]


def test_document_without_signature_or_config():
    document = build_document(_endpoint(("m-1", "1")), {"m-1": {"inputs": None, "outputs": None, "params": None}})
    validate_openapi(document)
    assert "servers" not in document and "without a signature" in str(document)
    empty = build_document({"name": "ep"}, {})
    validate_openapi(empty)
    assert empty["paths"] == {}


class _Registry:
    """Stands in for ModelRegistry: answers every signature with the model URI it was asked for."""

    def __init__(self):
        self.reads: list[str] = []

    async def signature(self, name: str, version: str) -> dict:
        uri = model_uri(name, version)
        self.reads.append(uri)
        if "missing" in name:
            raise ModelNotFound("RESOURCE_DOES_NOT_EXIST: no such model")
        return {"inputs": None, "outputs": None, "params": None, "uri": uri}


async def test_signature_reader_caches_versions_for_good_and_aliases_for_a_while():
    now = [0.0]
    registry = _Registry()
    reads = registry.reads
    reader = SignatureReader(registry, alias_ttl_s=60, max_entries=2, clock=lambda: now[0])
    assert (await reader.signature("c.s.m", "1"))["uri"] == "models:/c.s.m/1"
    await reader.signature("c.s.m", "1")
    await reader.signature("c.s.m", "champion")
    now[0] = 59.0
    await reader.signature("c.s.m", "champion")
    assert reads == ["models:/c.s.m/1", "models:/c.s.m@champion"]
    now[0] = 61.0
    await reader.signature("c.s.m", "champion")  # the alias may point elsewhere now: read again
    assert reads[-1] == "models:/c.s.m@champion" and len(reads) == 3
    assert (await reader.signature("c.s.missing", "1")) == {"error": "RESOURCE_DOES_NOT_EXIST: no such model"}
    await reader.signature("c.s.missing", "1")  # failures are not cached: a later registration is seen
    assert reads.count("models:/c.s.missing/1") == 2
    await reader.signature("c.s.other", "1")  # max_entries=2: the least recently used (version 1) goes
    await reader.signature("c.s.m", "1")
    assert reads.count("models:/c.s.m/1") == 2


async def test_the_registry_reads_signatures_under_a_deadline_off_the_event_loop():
    class _Stuck(ModelRegistry):
        def _signature(self, name: str, version: str) -> dict:
            import threading
            threads.append(threading.current_thread() is threading.main_thread())
            time.sleep(0.5)
            return {}

    threads: list[bool] = []
    registry = _Stuck("sqlite:///unused.db", "", timeout_s=0.05)
    try:
        answer = await SignatureReader(registry).signature("m", "1")
    finally:
        registry.close()
    assert threads == [False]
    assert answer == {"error": "the model registry did not answer within 0.05 s"}


async def test_the_registry_reader_leaves_mlflow_s_process_wide_uris_alone(tmp_path):
    import mlflow

    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    registry = ModelRegistry(uri, uri, timeout_s=60)
    try:
        with pytest.raises(ModelNotFound):
            await registry.signature("c.s.absent", "1")
    finally:
        registry.close()
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == before


def test_management_document_is_valid_openapi_naming_every_serving_endpoints_route():
    from services.router.management_openapi import management_document

    document = management_document("http://127.0.0.1:8080")
    validate_openapi(document)
    operations = {(m.upper(), p) for p, item in document["paths"].items() for m in item}
    assert ("POST", "/api/2.0/serving-endpoints") in operations
    assert ("PUT", "/api/2.0/serving-endpoints/{name}/config") in operations
    assert ("POST", "/serving-endpoints/{name}/invocations") in operations
    assert document["servers"] == [{"url": "http://127.0.0.1:8080"}]
