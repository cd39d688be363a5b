"""Adaptive batching end to end through `podium up`: served entities with max_batch_size, concurrent queries
in every input format answered byte for byte as the unbatched endpoint answers them, batches really merged
(a model that records its rows per call), nothing merged across params or columns, a bad request failing
alone, and the settings validated, shown and changed like any other config."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from podium_api.v1 import management_pb2 as pb
from podium_api.v1 import management_pb2_grpc
from tests.support.batch_model import register_row_recorder, rows_per_call
from tests.support.stack import WithCredential

pytestmark = pytest.mark.stack

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def iris_batched(stack, iris_model, iris_endpoint) -> dict:
    """The iris model served again, batching up to 8 rows (waiting up to 20 ms); `iris` serves it unbatched."""
    return stack.serve("iris-batched", [{"entity_name": iris_model.name, "entity_version": iris_model.version,
                                         "max_batch_size": 8, "max_batch_wait_ms": 20}])


@pytest.fixture(scope="module")
def iris_unbatched(stack, iris_model) -> dict:
    """The iris model with batching turned off (`iris` batches by default: its labels are guarded)."""
    return stack.serve("iris-unbatched", [{"entity_name": iris_model.name, "entity_version": iris_model.version,
                                           "max_batch_size": 1}])


@pytest.fixture(scope="module")
def recorder(stack, tmp_path_factory) -> dict:
    log_path = f"rows-{uuid.uuid4().hex}.log"   # in the replica's scratch: its sandbox lets it write nowhere else
    model = register_row_recorder(stack.info, "main.default.row_recorder", log_path, delay_s=0.05)
    endpoint = stack.serve("rows-batched", [{"entity_name": model.name, "entity_version": model.version,
                                             "max_batch_size": 8, "max_batch_wait_ms": 30}])
    return {**endpoint, "log_path": log_path}


def _payloads(frame) -> list[dict]:
    bodies = []
    for start in range(len(frame)):
        part = frame.iloc[start:start + 1 + start % 2]
        records = part.to_dict(orient="records")
        bodies += [{"dataframe_split": part.to_dict(orient="split")},
                   {"dataframe_records": records},
                   {"instances": records},
                   {"inputs": {c: part[c].tolist() for c in COLUMNS}}]
    return bodies


def _concurrently(calls, threads: int = 16) -> list:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda call: call(), calls))


def test_settings_are_shown_and_carried_to_the_replica(stack, iris_batched):
    entity = stack.api("GET", "/api/2.0/serving-endpoints/iris-batched").json()["config"]["served_entities"][0]
    assert (entity["max_batch_size"], entity["max_batch_wait_ms"]) == (8, 20)
    plain = stack.api("GET", "/api/2.0/serving-endpoints/iris").json()["config"]["served_entities"][0]
    assert "max_batch_size" not in plain
    logs = "".join(stack.api("GET", f"/api/2.0/serving-endpoints/iris-batched/served-models/{entity['name']}/{which}")
                   .json()["logs"] for which in ("logs", "build-logs"))
    assert "batching up to 8 rows, as the served entity asks, a batch waiting up to 20 ms" in logs


def test_a_default_entity_batches_where_it_cannot_change_an_answer(stack, iris_endpoint, iris_unbatched):
    for endpoint, expected in (("iris", "batching up to 64 rows by default: LogisticRegression answers labels"),
                               ("iris-unbatched", "batching is off (max_batch_size 1)")):
        entity = stack.api("GET", f"/api/2.0/serving-endpoints/{endpoint}").json()["config"]["served_entities"][0]
        assert "max_batch_size" not in entity or endpoint != "iris"   # the Databricks shape, unless asked
        logs = "".join(stack.api("GET", f"/api/2.0/serving-endpoints/{endpoint}/served-models/{entity['name']}/{which}")
                       .json()["logs"] for which in ("logs", "build-logs"))
        assert expected in logs


@pytest.mark.parametrize("endpoint", ["iris-batched", "iris"])
def test_concurrent_queries_in_every_format_match_the_unbatched_endpoint(stack, iris_batched, iris_unbatched,
                                                                         iris_model, endpoint):
    bodies = _payloads(iris_model.frame) * 3
    batched = _concurrently([lambda b=b: stack.api("POST", f"/serving-endpoints/{endpoint}/invocations", json=b)
                             for b in bodies])
    for body, reply in zip(bodies, batched):
        alone = stack.api("POST", "/serving-endpoints/iris-unbatched/invocations", json=body)
        assert (reply.status_code, reply.content) == (alone.status_code, alone.content), body
        assert reply.status_code == 200


def test_concurrent_oip_infer_matches_the_unbatched_endpoint(stack, iris_batched, iris_model):
    frame = iris_model.frame
    bodies = [{"inputs": [{"name": c, "datatype": "FP64", "shape": [rows], "data": frame[c].tolist()[start:start + rows]}
                          for c in COLUMNS]} for start, rows in ((0, 1), (1, 2), (3, 1), (4, 1), (0, 5))] * 4
    batched = _concurrently([lambda b=b: stack.api("POST", "/v2/models/iris-batched/infer", json=b) for b in bodies])
    for body, reply in zip(bodies, batched):
        alone = stack.api("POST", "/v2/models/iris/infer", json=body)
        assert reply.status_code == alone.status_code == 200, reply.text
        assert reply.json()["outputs"] == alone.json()["outputs"]


def test_concurrent_requests_are_merged_into_one_predict_call(stack, recorder):
    before = len(rows_per_call(recorder["log_path"]))
    xs = [float(i) for i in range(1, 25)]
    replies = _concurrently([lambda x=x: stack.api("POST", "/serving-endpoints/rows-batched/invocations",
                                                   json={"dataframe_records": [{"x": x}]}) for x in xs])
    assert [r.json() for r in replies] == [{"predictions": [{"x": 2 * x}]} for x in xs]
    calls = rows_per_call(recorder["log_path"])[before:]
    assert sum(calls) == len(xs)
    assert max(calls) > 1 and len(calls) < len(xs), calls   # merged
    assert max(calls) <= 8                                  # never beyond max_batch_size


def test_requests_with_other_params_or_columns_are_not_merged_and_a_bad_one_fails_alone(stack, recorder):
    def query(body):
        return lambda: stack.api("POST", "/serving-endpoints/rows-batched/invocations", json=body)

    bad = {"dataframe_split": {"columns": ["x"], "data": [[-1.0]]}}
    bodies = ([{"dataframe_split": {"columns": ["x"], "data": [[2.0]]}, "params": {"scale": 10.0}}] * 6
              + [{"dataframe_split": {"columns": ["x", "y"], "data": [[3.0, 0.0]]}}] * 6
              + [{"dataframe_split": {"columns": ["x"], "data": [[4.0]]}}] * 6 + [bad] * 2)
    replies = _concurrently([query(b) for b in bodies], threads=len(bodies))
    expected_x = [40.0] * 6 + [6.0] * 6 + [8.0] * 6
    assert [r.json() for r in replies[:18]] == [{"predictions": [{"x": x}]} for x in expected_x]
    alone = query(bad)()
    assert alone.status_code == 400 and alone.json()["error_code"] == "BAD_REQUEST"
    for reply in replies[18:]:
        assert (reply.status_code, reply.content) == (alone.status_code, alone.content)
    # Whatever went together, every 2·x·scale answer above proves no request got another's params or columns.


def test_bad_settings_are_refused_naming_the_field(stack, iris_model):
    for entity, field in (({"max_batch_size": 0}, "max_batch_size"),
                          ({"max_batch_size": 8, "max_batch_wait_ms": -2}, "max_batch_wait_ms")):
        body = {"name": "bad-batching", "config": {"served_entities": [
            {"entity_name": iris_model.name, "entity_version": iris_model.version, **entity}]}}
        reply = stack.api("POST", "/api/2.0/serving-endpoints", json=body)
        assert reply.status_code == 400 and reply.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert f"served_entities[0].{field}" in reply.json()["message"]
    assert stack.api("GET", "/api/2.0/serving-endpoints/bad-batching").status_code == 404


def test_grpc_create_and_update_config_carry_the_settings(stack, iris_model):
    with grpc.insecure_channel(stack.info["control_plane_target"]) as channel:
        stub = WithCredential(management_pb2_grpc.ManagementStub(channel), stack.admin_token)

        def call(operation: str, body: dict | None = None) -> dict:
            request = pb.ManagementCall(operation=operation, params={"name": "grpc-batched"},
                                        body=json.dumps(body).encode() if body is not None else b"")
            return json.loads(stub.Call(request, timeout=10).json)
        entity = {"entity_name": iris_model.name, "entity_version": iris_model.version, "max_batch_size": 4}
        created = call("CREATE_ENDPOINT", {"name": "grpc-batched", "config": {"served_entities": [entity]}})
        assert created["pending_config"]["served_entities"][0]["max_batch_size"] == 4
        assert "max_batch_wait_ms" not in created["pending_config"]["served_entities"][0]   # never waits unless asked
        stack.wait_endpoint("grpc-batched")
        updated = call("UPDATE_CONFIG", {"served_entities": [{**entity, "max_batch_size": 16, "max_batch_wait_ms": 1}]})
        assert updated["pending_config"]["config_version"] == 2   # a config change like any other
        done = stack.wait_endpoint("grpc-batched")
        assert done["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
        served = done["config"]["served_entities"][0]
        assert (served["max_batch_size"], served["max_batch_wait_ms"]) == (16, 1)
        with pytest.raises(grpc.RpcError) as bad:
            call("UPDATE_CONFIG", {"served_entities": [{**entity, "max_batch_size": "many"}]})
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "max_batch_size" in bad.value.details()
        reply = stack.api("POST", "/serving-endpoints/grpc-batched/invocations",
                          json={"dataframe_split": iris_model.frame.to_dict(orient="split")})
        assert reply.json()["predictions"] == iris_model.model.predict(iris_model.frame).tolist()
        call("DELETE_ENDPOINT")
