"""Shadow traffic end to end under steady load: a shadow served entity that fails 20 % of its copies gets its
set share of the queries, its answers are compared with the live ones in the router's metrics, and callers
see only the live entity's answers, none failing; caller latency with and without the shadow is printed."""

from __future__ import annotations

import statistics
import threading
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.flaky_model import register_flaky_model
from tests.support.stack import FAULTS, start_stack

pytestmark = pytest.mark.stack

MODEL = "main.default.shadowed"
NAME = "shadowed"


@pytest.fixture(scope="module")
def shadow_stack(tmp_path_factory):
    running = start_stack(tmp_path_factory.mktemp("shadow"), FAULTS)
    yield running
    running.stop()


def _run_load(stack, count: int, clients: int = 4) -> list[tuple[int, str, float]]:
    """`count` queries over `clients` threads: (status, served entity, latency s) of each."""
    answers: list[tuple[int, str, float]] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with requests.Session() as session:
            for _ in range(n):
                started = time.monotonic()
                reply = session.post(f"{stack.url}/serving-endpoints/{NAME}/invocations",
                                     json={"dataframe_split": {"columns": ["x"], "data": [[1.0]]}},
                                     headers={"Authorization": f"Bearer {stack.admin_token}"}, timeout=30)
                with lock:
                    answers.append((reply.status_code, reply.headers.get("served-model-name", ""),
                                    time.monotonic() - started))
    threads = [threading.Thread(target=client, args=(count // clients,)) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return answers


def _shadow_counts(stack) -> dict[str, float]:
    text = requests.get(f"http://{stack.info['metrics']['router'][0]}/metrics", timeout=10).text
    return {s.labels["outcome"]: s.value for family in text_string_to_metric_families(text)
            if family.name == "podium_router_shadow_requests" for s in family.samples
            if s.name.endswith("_total") and s.labels.get("endpoint_name") == NAME}


def _percentiles(answers) -> tuple[float, float]:
    latencies = sorted(a[2] * 1000 for a in answers)
    return statistics.median(latencies), latencies[int(0.99 * (len(latencies) - 1))]


def test_a_shadow_gets_its_share_compared_and_never_reaches_the_caller(shadow_stack):
    stack = shadow_stack
    live = register_flaky_model(stack.info, MODEL, 0.0, "live")
    shadow = register_flaky_model(stack.info, MODEL, 0.2, "shadow")
    live_entity = {"entity_name": MODEL, "entity_version": live.version, "name": "live"}
    stack.serve(NAME, [live_entity])
    _run_load(stack, 40)   # warm
    without = _run_load(stack, 400)

    refused = stack.api("PUT", f"/api/2.0/serving-endpoints/{NAME}/config", json={
        "served_entities": [live_entity, {"entity_name": MODEL, "entity_version": shadow.version, "name": "shadow",
                                          "shadow_percentage": 50}],
        "traffic_config": {"routes": [{"served_entity_name": "live", "traffic_percentage": 50},
                                      {"served_entity_name": "shadow", "traffic_percentage": 50}]}})
    assert refused.status_code == 400 and "takes no traffic of its own" in refused.json()["message"]
    updated = stack.api("PUT", f"/api/2.0/serving-endpoints/{NAME}/config", json={
        "served_entities": [live_entity, {"entity_name": MODEL, "entity_version": shadow.version, "name": "shadow",
                                          "shadow_percentage": 50}],
        "traffic_config": {"routes": [{"served_entity_name": "live", "traffic_percentage": 100}]}})
    assert updated.status_code == 200, updated.text
    endpoint = stack.wait_endpoint(NAME)
    assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    assert [e.get("shadow_percentage") for e in endpoint["config"]["served_entities"]] == [None, 50]
    _run_load(stack, 40)   # warm
    before = _shadow_counts(stack)
    with_shadow = _run_load(stack, 400)
    time.sleep(1.0)   # the last copies are answered after their queries: let them land before counting
    after = _shadow_counts(stack)
    counts = {k: after.get(k, 0) - before.get(k, 0) for k in after}

    print(f"without shadow: p50 {_percentiles(without)[0]:.1f} ms, p99 {_percentiles(without)[1]:.1f} ms; "
          f"with a 50 % shadow: p50 {_percentiles(with_shadow)[0]:.1f} ms, p99 {_percentiles(with_shadow)[1]:.1f} ms; "
          f"shadow outcomes {counts}")
    assert [a for a in with_shadow if a[0] != 200] == []          # the shadow's 500s never reach a caller
    assert {a[1] for a in with_shadow} == {"live"}
    copies = sum(counts.values())
    assert 150 <= copies <= 250, counts                            # 50 % of 400, drawn
    assert counts.get("equal", 0) > 0 and counts.get("error", 0) > 0   # compared; its failures counted
    assert counts.get("error", 0) <= 0.4 * copies
    stack.api("DELETE", f"/api/2.0/serving-endpoints/{NAME}")
