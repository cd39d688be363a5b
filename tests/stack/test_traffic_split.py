"""Traffic splitting end to end: 2,000 queries to a 70/30 route land within ±5 points of each share."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.stack import wait_for

pytestmark = pytest.mark.stack

NAME = "split-ep"
QUERIES = 2000


@pytest.fixture(scope="module")
def split_endpoint(stack, versioned_model):
    first, second = versioned_model
    body = {"name": NAME, "config": {
        "served_entities": [{"entity_name": m.name, "entity_version": m.version} for m in (first, second)],
        "traffic_config": {"routes": [{"served_model_name": "versioned-1", "traffic_percentage": 70},
                                      {"served_entity_name": "versioned-2", "traffic_percentage": 30}]}}}
    created = stack.api("POST", "/api/2.0/serving-endpoints", json=body)
    assert created.status_code == 200, created.text
    # §7.12: while its replicas load, a query is a 503 with an integer Retry-After (clients retry on it).
    [loading] = wait_for(lambda: (r := stack.api("POST", f"/serving-endpoints/{NAME}/invocations", json={})
                                  ).status_code != 404 and [r], what="the router to learn the endpoint")
    assert loading.status_code == 503 and loading.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert int(loading.headers["Retry-After"]) > 0
    endpoint = stack.wait_endpoint(NAME)
    assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    yield endpoint
    stack.api("DELETE", f"/api/2.0/serving-endpoints/{NAME}")


def test_a_70_30_route_splits_2000_queries_70_30(stack, split_endpoint, versioned_model):
    first, second = versioned_model
    body = json.dumps({"dataframe_records": first.frame.to_dict(orient="records")})
    expected = {"versioned-1": first.model.predict(first.frame).tolist(),
                "versioned-2": second.model.predict(first.frame).tolist()}

    def send(count: int) -> list[str]:
        served = []
        with requests.Session() as session:
            for _ in range(count):
                reply = session.post(f"{stack.url}/serving-endpoints/{NAME}/invocations", data=body,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {stack.admin_token}"}, timeout=60)
                assert reply.status_code == 200, reply.text
                entity = reply.headers["served-model-name"]
                assert reply.json()["predictions"] == expected[entity]  # the answer came from that version
                served.append(entity)
        return served

    with ThreadPoolExecutor(4) as pool:
        counts = Counter(entity for part in pool.map(send, [QUERIES // 4] * 4) for entity in part)
    assert sum(counts.values()) == QUERIES
    assert abs(counts["versioned-1"] / QUERIES * 100 - 70) <= 5, counts
    assert abs(counts["versioned-2"] / QUERIES * 100 - 30) <= 5, counts


def test_the_two_versions_answer_differently(versioned_model):
    """Otherwise the check above that each answer came from its version would prove nothing."""
    first, second = versioned_model
    assert first.model.predict(first.frame).tolist() != second.model.predict(first.frame).tolist()
