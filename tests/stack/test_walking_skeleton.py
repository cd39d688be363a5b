"""End to end through `podium up`: register a model, create an endpoint over REST, query it over REST and
gRPC in every MLflow input format, and compare with the model and with MLflow's own scoring server.
(Killing the control plane, Redis, routers and replicas under load: tests/stack/test_faults.py.)"""

from __future__ import annotations

import json
import os
import signal

import grpc
import pytest

from podium_api.v1 import query_pb2, query_pb2_grpc
from tests.support import models
from tests.support.models import register_sklearn_classifier
from tests.support.stack import wait_for, worker_pids

pytestmark = pytest.mark.stack


def _payloads(frame):
    records = frame.to_dict(orient="records")
    return {
        "dataframe_split": {"dataframe_split": frame.to_dict(orient="split")},
        "dataframe_split_no_index": {"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}},
        "dataframe_records": {"dataframe_records": records},
        "instances": {"instances": records},
        "inputs": {"inputs": {c: frame[c].tolist() for c in frame.columns}},
        "inputs_with_params": {"inputs": {c: frame[c].tolist() for c in frame.columns}, "params": {}},
    }


def test_endpoint_shape(iris_endpoint, iris_model):
    entity = iris_endpoint["config"]["served_entities"][0]
    assert entity["name"] == f"iris-{iris_model.version}"  # <model short name>-<version>, as Databricks
    assert entity["entity_name"] == "main.default.iris"
    assert entity["workload_size"] == "Small" and entity["scale_to_zero_enabled"] is False
    assert entity["state"]["deployment"] == "DEPLOYMENT_READY"
    assert iris_endpoint["config"]["traffic_config"]["routes"] == [
        {"served_model_name": entity["name"], "served_entity_name": entity["name"], "traffic_percentage": 100}]
    for field in ("id", "creator", "creation_timestamp", "last_updated_timestamp"):
        assert iris_endpoint[field]
    assert "pending_config" not in iris_endpoint


@pytest.mark.parametrize("style", list(_payloads(__import__("pandas").DataFrame([[0.0] * 4]))))
def test_rest_query_matches_model_and_mlflow_scoring_server(stack, iris_endpoint, iris_model, style):
    import mlflow
    from mlflow.pyfunc import scoring_server

    payload = _payloads(iris_model.frame)[style]
    reply = stack.api("POST", "/serving-endpoints/iris/invocations", json=payload)
    assert reply.status_code == 200, reply.text
    assert reply.headers["served-model-name"] == f"iris-{iris_model.version}"
    assert reply.json()["predictions"] == iris_model.model.predict(iris_model.frame).tolist()
    # Byte for byte what MLflow's own scoring server produces for the same model and body.
    models.use_registry(stack.info)   # another stack's fixtures may have pointed MLflow elsewhere since
    pyfunc = mlflow.pyfunc.load_model(f"models:/{iris_model.name}/{iris_model.version}")
    expected = scoring_server.invocations(json.dumps(payload), "application/json", pyfunc,
                                          pyfunc.metadata.get_input_schema())
    assert reply.content.decode() == expected.response


def test_grpc_query(stack, iris_endpoint, iris_model):
    payload = _payloads(iris_model.frame)["dataframe_split"]
    with grpc.insecure_channel(stack.info["grpc_target"]) as channel:
        reply = query_pb2_grpc.QueryStub(channel).Invoke(
            query_pb2.InvokeRequest(endpoint="iris", body=json.dumps(payload).encode()), timeout=30,
            metadata=stack.grpc_metadata())
        assert json.loads(reply.body)["predictions"] == iris_model.model.predict(iris_model.frame).tolist()
        assert reply.served_model_name == f"iris-{iris_model.version}"
        with pytest.raises(grpc.RpcError) as missing:
            query_pb2_grpc.QueryStub(channel).Invoke(query_pb2.InvokeRequest(endpoint="nope", body=b"{}"), timeout=10,
                                                     metadata=stack.grpc_metadata())
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert ("error-code", "RESOURCE_DOES_NOT_EXIST") in missing.value.trailing_metadata()
        with pytest.raises(grpc.RpcError) as bad:
            query_pb2_grpc.QueryStub(channel).Invoke(query_pb2.InvokeRequest(endpoint="iris", body=b"{"), timeout=10,
                                                     metadata=stack.grpc_metadata())
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert ("error-code", "BAD_REQUEST") in bad.value.trailing_metadata()


@pytest.mark.parametrize("body, code, needle", [
    (b"not json", "BAD_REQUEST", "valid JSON"),
    (b'{"rows": [[1, 2]]}', "BAD_REQUEST", "dataframe_split"),
    (b'{"dataframe_split": {"columns": ["sepal_length"], "data": [[1.0]]}}', "INVALID_PARAMETER_VALUE", "petal_width"),
    (b'{"dataframe_records": [{"sepal_length": "x", "sepal_width": 1, "petal_length": 1, "petal_width": 1}]}',
     "BAD_REQUEST", "sepal_length"),
])
def test_bad_queries_answer_as_mlflow_does(stack, iris_endpoint, body, code, needle):
    reply = stack.api("POST", "/serving-endpoints/iris/invocations", data=body,
                      headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
    error = reply.json()
    assert error["error_code"] == code
    assert needle in error["message"]
    assert "stack_trace" not in error and "Traceback" not in reply.text


def test_unknown_endpoint_is_404(stack):
    for method, path in [("GET", "/api/2.0/serving-endpoints/nope"), ("DELETE", "/api/2.0/serving-endpoints/nope"),
                         ("POST", "/serving-endpoints/nope/invocations")]:
        reply = stack.api(method, path, json={})
        assert reply.status_code == 404
        assert reply.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_duplicate_name_is_409(stack, iris_endpoint, iris_model):
    body = {"name": "iris", "config": {"served_entities": [{"entity_name": iris_model.name, "entity_version": "1"}]}}
    reply = stack.api("POST", "/api/2.0/serving-endpoints", json=body)
    assert reply.status_code == 409
    assert reply.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"


@pytest.mark.parametrize("body, code, field", [
    ({"config": {"served_entities": [{"entity_name": "m", "entity_version": "1"}]}}, "INVALID_PARAMETER_VALUE", "name"),
    ({"name": "x"}, "INVALID_PARAMETER_VALUE", "config"),
    ({"name": "bad name!", "config": {}}, "INVALID_PARAMETER_VALUE", "name"),
    ({"name": "x", "config": {"served_entities": [{"entity_version": "1"}]}}, "INVALID_PARAMETER_VALUE",
     "served_entities[0].entity_name"),
    ({"name": "x", "config": {"served_entities": "nope"}}, "MALFORMED_REQUEST", "served_entities"),
    ({"name": "x", "config": {"served_entities": [{"entity_name": "m", "entity_version": "1",
                                                   "workload_size": "Huge"}]}}, "INVALID_PARAMETER_VALUE",
     "workload_size"),
    ({"name": "x", "config": {"served_entities": [{"entity_name": "m", "entity_version": "1"}],
                              "traffic_config": {"routes": [{"served_model_name": "m-1", "traffic_percentage": 90}]}}},
     "INVALID_PARAMETER_VALUE", "sum to 100"),
    ({"name": "chat", "config": {"served_entities": [{"entity_name": "m", "entity_version": "1"}]}},
     "INVALID_PARAMETER_VALUE", "OpenAI"),
])
def test_invalid_specs_are_400_naming_the_field(stack, body, code, field):
    reply = stack.api("POST", "/api/2.0/serving-endpoints", json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error_code"] == code
    assert field in reply.json()["message"]


def test_malformed_json_body_is_400(stack):
    reply = stack.api("POST", "/api/2.0/serving-endpoints", data=b"{nope",
                      headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
    assert reply.json()["error_code"] in ("BAD_REQUEST", "MALFORMED_REQUEST")


def test_missing_model_fails_the_update_with_the_registry_reason(stack):
    body = {"name": "ghost", "config": {"served_entities": [{"entity_name": "main.default.ghost", "entity_version": "3"}]}}
    assert stack.api("POST", "/api/2.0/serving-endpoints", json=body).status_code == 200
    endpoint = stack.wait_endpoint("ghost")
    assert endpoint["state"] == {"ready": "NOT_READY", "config_update": "UPDATE_FAILED"}
    message = endpoint["pending_config"]["served_entities"][0]["state"]["deployment_state_message"]
    assert "main.default.ghost" in message and "not found" in message.lower()
    assert stack.api("GET", "/healthz").status_code == 200  # nothing crashed
    assert stack.api("DELETE", "/api/2.0/serving-endpoints/ghost").json() == {}


def test_delete_stops_workers_and_a_dead_replica_is_replaced(stack):
    model = register_sklearn_classifier(stack.info, "main.default.short_lived", seed=3)
    uri = f"models:/{model.name}/{model.version}"
    body = {"name": "short-lived", "config": {"served_entities": [{"entity_name": model.name, "entity_version": model.version}]}}
    assert stack.api("POST", "/api/2.0/serving-endpoints/", json=body).status_code == 200
    assert stack.wait_endpoint("short-lived")["state"]["ready"] == "READY"
    [pid] = wait_for(lambda: worker_pids(stack.data_dir, uri), what="one worker")

    os.kill(pid, signal.SIGKILL)
    replacement = wait_for(lambda: [p for p in worker_pids(stack.data_dir, uri) if p != pid], what="a replacement")
    assert pid not in replacement

    def answers():
        reply = stack.api("POST", "/serving-endpoints/short-lived/invocations",
                          json={"dataframe_records": model.frame.to_dict(orient="records")})
        return reply.status_code == 200 and reply.json()["predictions"] == model.model.predict(model.frame).tolist()
    wait_for(answers, what="queries answered by the replacement")

    assert stack.api("DELETE", "/api/2.0/serving-endpoints/short-lived").json() == {}
    wait_for(lambda: not worker_pids(stack.data_dir, uri), what="workers of the deleted endpoint to stop")
    assert stack.api("GET", "/api/2.0/serving-endpoints/short-lived").status_code == 404
