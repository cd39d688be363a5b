"""The serving-endpoint API driven by `mlflow.deployments.get_deploy_client("databricks")`, unmodified."""

from __future__ import annotations

import pytest
import requests

pytestmark = pytest.mark.stack

NAME = "mlflow-ep"


@pytest.fixture
def client(stack, monkeypatch):
    from mlflow.deployments import get_deploy_client

    # mlflow builds a fresh WorkspaceClient from the environment on every call (§1 of the wire reference).
    monkeypatch.setenv("DATABRICKS_HOST", stack.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", stack.admin_token)
    return get_deploy_client("databricks")


@pytest.fixture(scope="module")
def mlflow_endpoint(stack, iris_model):
    """Created with mlflow's current form (name and tags inside `config`), waited for over REST."""
    from mlflow.deployments import get_deploy_client

    with pytest.MonkeyPatch.context() as env:
        env.setenv("DATABRICKS_HOST", stack.url)
        env.setenv("DATABRICKS_TOKEN", stack.admin_token)
        created = get_deploy_client("databricks").create_endpoint(config={
            "name": NAME,
            "config": {"served_entities": [{"entity_name": iris_model.name, "entity_version": iris_model.version,
                                            "workload_size": "Small", "scale_to_zero_enabled": False}]},
            "tags": [{"key": "client", "value": "mlflow"}],
        })
    assert created["name"] == NAME and created["state"]["config_update"] == "IN_PROGRESS"  # mlflow never waits
    yield stack.wait_endpoint(NAME)
    if stack.api("GET", f"/api/2.0/serving-endpoints/{NAME}").status_code == 200:
        stack.api("DELETE", f"/api/2.0/serving-endpoints/{NAME}")


def _status(error: requests.HTTPError) -> int:
    return error.response.status_code


def test_get_list_and_predict(client, mlflow_endpoint, iris_model):
    assert mlflow_endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    endpoint = client.get_endpoint(NAME)
    assert endpoint["name"] == NAME and endpoint["tags"] == [{"key": "client", "value": "mlflow"}]
    # list_endpoints calls GET /api/2.0/serving-endpoints/ (trailing slash) and reads `.endpoints` (§7.2).
    assert NAME in [e["name"] for e in client.list_endpoints()]
    prediction = client.predict(endpoint=NAME, inputs={"dataframe_split": iris_model.frame.to_dict(orient="split")})
    assert prediction["predictions"] == iris_model.model.predict(iris_model.frame).tolist()


def test_tags_rate_limits_and_ai_gateway(client, mlflow_endpoint):
    tags = client.update_endpoint_tags(NAME, {"add_tags": [{"key": "team", "value": "ml"}], "delete_tags": ["client"]})
    assert tags == {"tags": [{"key": "team", "value": "ml"}]}
    limits = client.update_endpoint_rate_limits(NAME, {"rate_limits": [{"calls": 20, "renewal_period": "minute"}]})
    assert limits == {"rate_limits": [{"calls": 20, "key": "endpoint", "renewal_period": "minute"}]}
    # The deprecated update_endpoint sends a config holding only rate_limits to PUT .../rate-limits.
    with pytest.warns(FutureWarning):
        legacy = client.update_endpoint(NAME, {"rate_limits": [{"calls": 30, "key": "user", "renewal_period": "minute"}]})
    assert legacy == {"rate_limits": [{"calls": 30, "key": "user", "renewal_period": "minute"}]}
    gateway = client.update_endpoint_ai_gateway(NAME, {
        "usage_tracking_config": {"enabled": True},
        "guardrails": {"input": {"pii": {"behavior": "BLOCK"}, "invalid_keywords": ["password"]}},
        "rate_limits": [{"calls": 5, "key": "user", "renewal_period": "minute"}],
    })
    assert gateway["guardrails"]["input"] == {"pii": {"behavior": "BLOCK"}, "invalid_keywords": ["password"]}
    assert gateway["rate_limits"] == [{"calls": 5, "key": "user", "renewal_period": "minute"}]
    endpoint = client.get_endpoint(NAME)
    assert endpoint["ai_gateway"] == dict(gateway) and endpoint["tags"] == [{"key": "team", "value": "ml"}]


def test_errors_keep_their_meaning_through_mlflow(client, mlflow_endpoint, iris_model):
    """mlflow rebuilds the status from the error_code (§5): canonical codes give the expected statuses."""
    with pytest.raises(requests.HTTPError) as missing:
        client.get_endpoint("no-such-endpoint")
    assert _status(missing.value) == 404 and "RESOURCE_DOES_NOT_EXIST" in str(missing.value)
    with pytest.raises(requests.HTTPError) as duplicate:
        client.create_endpoint(config={"name": NAME, "config": {"served_entities": [
            {"entity_name": iris_model.name, "entity_version": "1"}]}})
    assert _status(duplicate.value) == 400 and "RESOURCE_ALREADY_EXISTS" in str(duplicate.value)  # 409 on the wire
    with pytest.raises(requests.HTTPError) as invalid:
        client.update_endpoint_rate_limits(NAME, {"rate_limits": [{"calls": 1, "renewal_period": "second"}]})
    assert _status(invalid.value) == 400 and "INVALID_PARAMETER_VALUE" in str(invalid.value)
    with pytest.raises(requests.HTTPError) as bad_query:
        client.predict(endpoint=NAME, inputs={"rows": [[1, 2, 3, 4]]})
    assert _status(bad_query.value) == 400 and "BAD_REQUEST" in str(bad_query.value)


def test_deprecated_create_update_config_and_delete(client, stack, iris_model):
    with pytest.warns(UserWarning, match="deprecated"):
        created = client.create_endpoint(name="mlflow-old", config={
            "served_entities": [{"entity_name": iris_model.name, "entity_version": iris_model.version}],
            "tags": [{"key": "form", "value": "deprecated"}],
            "rate_limits": [{"calls": 7, "renewal_period": "minute"}]})
    assert created["name"] == "mlflow-old" and created["tags"] == [{"key": "form", "value": "deprecated"}]
    assert created["ai_gateway"]["rate_limits"] == [{"calls": 7, "key": "endpoint", "renewal_period": "minute"}]
    stack.wait_endpoint("mlflow-old")
    updated = client.update_endpoint_config("mlflow-old", {"served_entities": [
        {"name": "renamed", "entity_name": iris_model.name, "entity_version": iris_model.version}]})
    assert updated["name"] == "mlflow-old" and updated["pending_config"]["config_version"] == 2
    assert updated["state"]["config_update"] == "IN_PROGRESS"
    # The same model version: its replica is reused, so the new config serves at the next scaler pass.
    assert stack.wait_endpoint("mlflow-old")["config"]["served_entities"][0]["name"] == "renamed"
    assert client.delete_endpoint("mlflow-old") == {}  # mlflow needs a JSON body (§7.13)
    with pytest.raises(requests.HTTPError):
        client.get_endpoint("mlflow-old")
