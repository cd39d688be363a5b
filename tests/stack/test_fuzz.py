"""Fuzzing the router: schemathesis against its management API's OpenAPI document, and hypothesis-made
query payloads. Whatever arrives: no 5xx, no crash, and every error is a JSON body with error_code and
message. Bounded: a fixed number of examples per operation, on the fault-injection tests' stack rather
than the session's (the fuzzer creates, changes and deletes endpoints, secret scopes and grants, which other
tests must not see)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies as st

from services.router.management_openapi import management_document
from tests.support.models import register_sklearn_classifier

pytestmark = pytest.mark.stack

EXAMPLES = 25   # per operation (26 operations), and 100 query payloads
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def fuzz_stack(fault_stack):
    model = register_sklearn_classifier(fault_stack.info, "main.default.fuzzed")
    fault_stack.serve("fuzzed", [{"entity_name": model.name, "entity_version": model.version}])
    fault_stack.user_token("fuzz-user@example.com")
    assert fault_stack.api("POST", "/api/2.0/secrets/scopes/create", json={"scope": "fuzzed"}).status_code == 200
    assert fault_stack.api("POST", "/api/2.0/secrets/put", json={
        "scope": "fuzzed", "key": "k", "string_value": "v"}).status_code == 200
    return fault_stack


def _management_operations() -> list[tuple[str, str]]:
    paths = management_document()["paths"]
    operations = [(method.upper(), path) for path, item in paths.items() for method in item]
    # Deleting the endpoint last, so the operations after it in the document still find it.
    return sorted(operations, key=lambda operation: operation == ("DELETE", "/api/2.0/serving-endpoints/{name}"))


@pytest.fixture(scope="module")
def management_schema(fuzz_stack):
    document = requests.get(fuzz_stack.url + "/api/2.0/podium/openapi.json", timeout=10).json()
    # Names mostly name what exists (the endpoint, the model, the scope, a user), so the fuzzer reaches
    # past the 404 or 400; each list holds unknown and malformed names too.
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] in KNOWN:
                    parameter["schema"] = {"type": "string", "enum": KNOWN[parameter["name"]]}
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            _prefer_known(body)
    return schemathesis.openapi.from_dict(document)


KNOWN = {"name": ["fuzzed", "no-such-endpoint", "fuzzed-2"],
         "full_name": ["main.default.fuzzed", "main.default", "main", "Main.Default.FUZZED", "no.such", "a.b.c.d"],
         "scope": ["fuzzed", "no-such-scope", "fuzzed-2", "", "bad scope/é"],
         "principal": ["fuzz-user@example.com", "admins", "users", "nobody@example.com", ""],
         "key": ["k", "other", "", "bad key/é"]}


def _prefer_known(schema: dict) -> None:
    """Body fields named in KNOWN (but an endpoint's `name`, which create must be free to pick) take one of its
    values; recursively through arrays."""
    for field, inner in schema.get("properties", {}).items():
        if field in KNOWN and field != "name" and inner.get("type") == "string" and "enum" not in inner:
            schema["properties"][field] = {"type": "string", "enum": KNOWN[field]}
        else:
            _prefer_known(inner)
    if isinstance(schema.get("items"), dict):
        _prefer_known(schema["items"])


SEEN: Counter = Counter()   # (operation, status): printed, so a run shows what the fuzzer reached


def assert_json_error_or_success(reply) -> None:
    SEEN[(reply.request.method, reply.request.path_url.split("?")[0][:60], reply.status_code)] += 1
    assert reply.status_code < 500, (reply.status_code, reply.text[:500])
    if reply.status_code >= 400:
        error = json.loads(reply.text)   # a JSON body, never HTML or text
        assert isinstance(error.get("error_code"), str) and isinstance(error.get("message"), str), reply.text


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
_json = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=20)
_column = st.sampled_from(["sepal_length", "sepal_width", "petal_length", "petal_width", "x", ""])
_iris = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
_payloads = st.one_of(
    # well-formed rows of the model's columns, with any floats: these must be scored
    st.fixed_dictionaries({"dataframe_records": st.lists(st.fixed_dictionaries(
        {c: st.floats(-1e6, 1e6) for c in _iris}), min_size=1, max_size=3)}),
    _json,
    st.fixed_dictionaries({"dataframe_split": st.fixed_dictionaries(
        {"columns": st.lists(_column, max_size=5), "data": st.lists(st.lists(_scalars, max_size=5), max_size=3)},
        optional={"index": st.lists(_scalars, max_size=3)})}),
    st.fixed_dictionaries({"dataframe_records": st.lists(st.dictionaries(_column, _scalars, max_size=5), max_size=3)}),
    st.fixed_dictionaries({"instances": _json}, optional={"params": _json}),
    st.fixed_dictionaries({"inputs": _json}, optional={"params": _json}),
)
_bodies = st.one_of(_payloads.map(lambda p: json.dumps(p).encode()), st.binary(max_size=200))
_content_types = st.sampled_from(["application/json", "text/csv", "application/octet-stream", "", "text/plain"])


def test_query_payload_fuzz(fuzz_stack):
    session = requests.Session()
    headers = {"Authorization": f"Bearer {fuzz_stack.admin_token}"}

    @settings(FUZZ, max_examples=100)
    @given(body=_bodies, content_type=_content_types)
    def query(body: bytes, content_type: str):
        reply = session.post(fuzz_stack.url + "/serving-endpoints/fuzzed/invocations", data=body, timeout=30,
                             headers={**headers, "Content-Type": content_type})
        assert_json_error_or_success(reply)
    query()
    statuses = Counter(status for (_, p, status), n in SEEN.items() if "invocations" in p for _ in range(n))
    print(f"query payloads: {dict(statuses)}")
    assert statuses[200] > 0 and statuses[400] > 0   # it reached the model, and its refusals
    assert requests.get(fuzz_stack.url + "/healthz", timeout=10).status_code == 200   # nothing crashed


@pytest.mark.parametrize("method, path", _management_operations())
def test_management_api_fuzz(fuzz_stack, management_schema, method, path):
    """schemathesis makes the requests (valid and invalid bodies from the document's schemas). After the
    query fuzz: these may change or delete the endpoint it queries."""
    operation = management_schema[path][method]
    headers = {"Authorization": f"Bearer {fuzz_stack.admin_token}"}

    statuses: Counter = Counter()

    @FUZZ
    @given(case=operation.as_strategy())
    def call(case):
        reply = case.call(base_url=fuzz_stack.url, headers=headers, timeout=30)
        statuses[reply.status_code] += 1
        assert_json_error_or_success(reply)
    call()
    print(f"{method} {path}: {dict(statuses)}")
