"""Fuzzing the router: schemathesis against its management API's OpenAPI document, and hypothesis-made
query payloads. Whatever arrives: no 5xx, no crash, and every error is a JSON body with error_code and
message. Bounded: a fixed number of examples per operation, on the fault-injection tests' stack rather
than the session's (the fuzzer creates, changes and deletes endpoints, which other tests must not see)."""

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

EXAMPLES = 25   # per operation (12 operations), and 100 query payloads
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def fuzz_stack(fault_stack):
    model = register_sklearn_classifier(fault_stack.info, "main.default.fuzzed")
    fault_stack.serve("fuzzed", [{"entity_name": model.name, "entity_version": model.version}])
    return fault_stack


def _management_operations() -> list[tuple[str, str]]:
    paths = management_document()["paths"]
    return [(method.upper(), path) for path, item in paths.items() for method in item]


@pytest.fixture(scope="module")
def management_schema(fuzz_stack):
    document = requests.get(fuzz_stack.url + "/api/2.0/podium/openapi.json", timeout=10).json()
    # Path parameters mostly name the endpoint that exists, so the fuzzer reaches past the 404.
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "name":
                    parameter["schema"] = {"type": "string", "enum": ["fuzzed", "no-such-endpoint", "fuzzed-2"]}
    return schemathesis.openapi.from_dict(document)


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

    @FUZZ
    @given(case=operation.as_strategy())
    def call(case):
        assert_json_error_or_success(case.call(base_url=fuzz_stack.url, headers=headers, timeout=30))
    call()
    statuses = Counter(status for (m, _, status), n in SEEN.items() if m == method for _ in range(n))
    print(f"{method} {path}: {dict(statuses)}")
