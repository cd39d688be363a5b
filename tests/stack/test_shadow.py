"""Shadow traffic end to end under steady load: a shadow served entity that fails 20 % of its copies gets its
set share of the queries, its answers are compared with the live ones in the router's metrics, and callers
see only the live entity's answers, none failing; caller latency with and without the shadow is printed.
On an endpoint with an inference table each comparison is a row under the live query's request id; a
rollout gated on shadow agreement rolls back a candidate whose shadow disagreed and promotes one that agreed.
A text (LLM-like) shadow with a judge endpoint (the OpenAI-wire stand-in answering yes/no) has its differing
answers judged, as the caller: the verdicts are in the inference table, the metrics and never the caller's."""

from __future__ import annotations

import statistics
import threading
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.external import create_external_endpoint, external_entity
from tests.support.flaky_model import register_flaky_model
from tests.support.load import SteadyLoad
from tests.support.stack import FAULTS, start_stack, wait_for
from tests.support.text_model import register_text_model

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


LOGGED = {"inference_table_config": {"enabled": True, "catalog_name": "main", "schema_name": "default"},
          "usage_tracking_config": {"enabled": True}}


def _query(stack, name: str) -> requests.Response:
    reply = stack.api("POST", f"/serving-endpoints/{name}/invocations",
                      json={"dataframe_split": {"columns": ["x"], "data": [[1.0]]}})
    assert reply.status_code == 200, reply.text
    return reply


def test_each_comparison_is_an_inference_table_row_under_the_live_request_id(shadow_stack):
    stack, name = shadow_stack, "shadow-logged"
    live = register_flaky_model(stack.info, MODEL, 0.0, "live")
    shadow = register_flaky_model(stack.info, MODEL, 0.3, "shadow")
    created = stack.api("POST", "/api/2.0/serving-endpoints", json={"name": name, "ai_gateway": LOGGED, "config": {
        "served_entities": [{"entity_name": MODEL, "entity_version": live.version, "name": "live"},
                            {"entity_name": MODEL, "entity_version": shadow.version, "name": "shadow",
                             "shadow_percentage": 100}],
        "traffic_config": {"routes": [{"served_entity_name": "live", "traffic_percentage": 100}]}}})
    assert created.status_code == 200, created.text
    assert stack.wait_endpoint(name, timeout_s=300)["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    answers = {(reply := _query(stack, name)).headers["x-request-id"]: reply.text for _ in range(30)}

    def rows():
        got = stack.api("GET", f"/api/2.0/serving-endpoints/{name}/inference-table",
                        params={"max_results": 200}).json()["rows"]
        return got if len([r for r in got if r["served_entity_name"] == "shadow"]) >= 30 else None
    table = wait_for(rows, timeout_s=30, what="30 shadow rows in the inference table")
    live_rows = {r["databricks_request_id"]: r for r in table if r["served_entity_name"] == "live"}
    shadow_rows = [r for r in table if r["served_entity_name"] == "shadow"]
    assert set(live_rows) == set(answers)
    assert {r["databricks_request_id"] for r in shadow_rows} == set(answers)   # each copy under its query's id
    codes = {tuple(r["logging_error_codes"]) for r in shadow_rows}
    assert codes == {("SHADOW_EQUAL",), ("SHADOW_ERROR",)}, codes
    for row in shadow_rows:
        assert row["request"] == live_rows[row["databricks_request_id"]]["request"]
        if row["logging_error_codes"] == ["SHADOW_EQUAL"]:
            assert row["status_code"] == 200 and row["response"] == answers[row["databricks_request_id"]]
        else:
            assert row["status_code"] == 500 and "injected failure of shadow" in row["response"]
    [usage] = stack.api("GET", f"/api/2.0/serving-endpoints/{name}/usage").json()["usage"]
    assert usage["request_count"] == 30 and usage["error_count"] == 0   # a shadow's copies are no caller's
    stack.api("DELETE", f"/api/2.0/serving-endpoints/{name}")


def _load(stack, name: str) -> SteadyLoad:
    """Two clients querying back to back until stopped."""
    return SteadyLoad([stack.url], f"/serving-endpoints/{name}/invocations", stack.admin_token,
                      {"dataframe_split": {"columns": ["x"], "data": [[1.0]]}}, clients=2)


def _rollout(stack, name: str, phases: tuple[str, ...]) -> dict:
    def reached():
        answer = stack.api("GET", f"/api/2.0/serving-endpoints/{name}/rollout").json()
        return answer if answer["rollout"] and answer["rollout"]["phase"] in phases else None
    return wait_for(reached, timeout_s=240, interval_s=0.2, what=f"rollout of {name} to reach {phases}")


def test_a_rollout_gated_on_shadow_agreement_rolls_back_a_disagreeing_candidate_and_promotes_an_agreeing_one(
        shadow_stack):
    stack, name = shadow_stack, "shadow-gated"
    live = register_flaky_model(stack.info, MODEL, 0.0, "gated-live")
    failing = register_flaky_model(stack.info, MODEL, 0.3, "gated-failing")   # a failed copy disagrees
    healthy = register_flaky_model(stack.info, MODEL, 0.0, "gated-healthy")
    live_entity = {"entity_name": MODEL, "entity_version": live.version, "name": "live"}
    # The error and latency gates wide open: only shadow agreement decides.
    plan = {"steps": [50, 100], "min_step_duration_s": 2, "min_step_requests": 10,
            "gates": {"max_error_rate_increase": 1, "max_p99_latency_ratio": 100, "p99_latency_slack_ms": 30000,
                      "min_shadow_agreement": 0.95, "min_shadow_comparisons": 20}}

    def shadowed_by(model) -> dict:
        return {"served_entities": [live_entity, {"entity_name": MODEL, "entity_version": model.version,
                                                  "name": "next", "shadow_percentage": 100}],
                "traffic_config": {"routes": [{"served_entity_name": "live", "traffic_percentage": 100}]}}

    def promote(model) -> None:
        reply = stack.api("PUT", f"/api/2.0/serving-endpoints/{name}/config", json={
            "served_entities": [{"entity_name": MODEL, "entity_version": model.version, "name": "next"}],
            "rollout_plan": plan})
        assert reply.status_code == 200 and reply.json()["rollout"]["phase"] == "WAITING", reply.text

    created = stack.api("POST", "/api/2.0/serving-endpoints", json={"name": name, "config": shadowed_by(failing)})
    assert created.status_code == 200, created.text
    stack.wait_endpoint(name, timeout_s=300)
    with _load(stack, name):
        promote(failing)
        rolled_back = _rollout(stack, name, ("ROLLED_BACK", "PROMOTED"))
    assert rolled_back["rollout"]["phase"] == "ROLLED_BACK", rolled_back
    assert "shadow agreement" in rolled_back["rollout"]["reason"], rolled_back["rollout"]["reason"]
    shadow = rolled_back["rollout"]["last_judgement"]["shadow"]
    assert shadow["comparisons"] >= 20 and shadow["agreement"] < 0.95 and shadow["errors"] > 0, shadow

    updated = stack.api("PUT", f"/api/2.0/serving-endpoints/{name}/config", json=shadowed_by(healthy))
    assert updated.status_code == 200, updated.text
    assert stack.wait_endpoint(name, timeout_s=300)["state"]["config_update"] == "NOT_UPDATING"
    with _load(stack, name) as load:
        promote(healthy)
        promoted = _rollout(stack, name, ("ROLLED_BACK", "PROMOTED"))
    assert promoted["rollout"]["phase"] == "PROMOTED", promoted
    # The first step could pass only with its 20 shadow comparisons in, all agreeing.
    assert any("step 1 (50 %) passed its gates" in e["message"] for e in promoted["events"]), promoted["events"]
    # The rollout's judgements since it began (what the UI's charts start from), the first one of step 1.
    assert promoted["judgements"][0]["step"] == 1 and promoted["judgements"][-1]["decision"] == "PROMOTE"
    later = stack.api("GET", f"/api/2.0/serving-endpoints/{name}/rollout",
                      params={"judgements_since": promoted["judgements"][-2]["timestamp"]}).json()["judgements"]
    assert later == promoted["judgements"][-1:]
    assert load.failed() == 0 and load.ok() > 0, load.failures
    stack.api("DELETE", f"/api/2.0/serving-endpoints/{name}")


TEXT_MODEL = "main.default.shadow_text"


def _endpoint_shadow_counts(stack, name: str) -> dict[str, float]:
    """The endpoint's shadow outcomes from its metrics export (GET .../metrics, what the UI reads)."""
    text = stack.api("GET", f"/api/2.0/serving-endpoints/{name}/metrics").text
    return {s.labels["outcome"]: s.value for family in text_string_to_metric_families(text)
            if family.name == "podium_router_shadow_requests" for s in family.samples if s.name.endswith("_total")}


def test_a_text_shadow_is_judged_by_its_judge_endpoint_as_the_caller(shadow_stack, fake_providers):
    stack, name, judge_name = shadow_stack, "shadow-judged", "shadow-judge"
    judge = external_entity(fake_providers, "openai", "llm/v1/chat", name="judge")
    judge["external_model"]["name"] = "__judge__"   # the stand-in answers "Yes." when B contains A, else "No."
    create_external_endpoint(stack, judge_name, judge)
    live = register_text_model(stack.info, TEXT_MODEL, "terse")
    wordy = register_text_model(stack.info, TEXT_MODEL, "wordy")
    live_entity = {"entity_name": TEXT_MODEL, "entity_version": live.version, "name": "live"}
    shadow_entity = {"entity_name": TEXT_MODEL, "entity_version": wordy.version, "name": "shadow",
                     "shadow_percentage": 100, "shadow_judge_endpoint": judge_name}
    routes = {"routes": [{"served_entity_name": "live", "traffic_percentage": 100}]}

    def create(entities: list[dict]) -> requests.Response:
        return stack.api("POST", "/api/2.0/serving-endpoints", json={"name": name, "ai_gateway": LOGGED, "config": {
            "served_entities": entities, "traffic_config": routes}})
    for entities, needle in (
            ([live_entity, {**shadow_entity, "shadow_judge_endpoint": "no-such-judge"}],
             "config.served_entities[1].shadow_judge_endpoint: endpoint 'no-such-judge' does not exist"),
            ([{**live_entity, "shadow_judge_endpoint": judge_name}, shadow_entity],
             "config.served_entities[0].shadow_judge_endpoint judges a shadow's answers")):
        refused = create(entities)
        assert refused.status_code == 400 and refused.json()["error_code"] == "INVALID_PARAMETER_VALUE", refused.text
        assert needle in refused.json()["message"], refused.text
    created = create([live_entity, shadow_entity])
    assert created.status_code == 200, created.text
    assert stack.wait_endpoint(name, timeout_s=300)["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    shown = stack.api("GET", f"/api/2.0/serving-endpoints/{name}").json()["config"]["served_entities"]
    assert [e.get("shadow_judge_endpoint") for e in shown] == [None, judge_name]

    expected = {"paris": "SHADOW_JUDGE_AGREE", "rome": "SHADOW_JUDGE_AGREE", "same-1": "SHADOW_EQUAL",
                "unknown-1": "SHADOW_JUDGE_DISAGREE", "unknown-2": "SHADOW_JUDGE_DISAGREE"}
    asked = {}
    for q in expected:
        reply = stack.api("POST", f"/serving-endpoints/{name}/invocations",
                          json={"dataframe_split": {"columns": ["q"], "data": [[q]]}})
        assert reply.status_code == 200 and reply.json() == {"predictions": [q]}, reply.text   # the live answer
        asked[reply.headers["x-request-id"]] = q

    def shadow_rows(count: int):
        def read():
            rows = stack.api("GET", f"/api/2.0/serving-endpoints/{name}/inference-table",
                             params={"max_results": 200}).json()["rows"]
            rows = [r for r in rows if r["served_entity_name"] == "shadow"]
            return rows if len(rows) >= count else None
        return wait_for(read, timeout_s=60, what=f"{count} judged shadow rows")
    verdicts = {asked[r["databricks_request_id"]]: r["logging_error_codes"] for r in shadow_rows(len(expected))}
    assert verdicts == {q: [code] for q, code in expected.items()}, verdicts
    judged = [r["body"]["messages"][1]["content"] for r in fake_providers.requests
              if r["provider"] == "openai" and r["body"].get("model") == "__judge__"
              and "Answer A:" in str(r["body"]["messages"][-1].get("content"))]
    assert sorted(judged) == sorted(f"Answer A:\n{q}\n\nAnswer B:\n" + ("I do not know." if q.startswith("unknown")
                                                                        else f"The answer is {q}.")
                                    for q in expected if q != "same-1")   # equal answers need no judge
    counts = wait_for(lambda: (c := _endpoint_shadow_counts(stack, name)).get("judge_disagree") == 2 and c,
                      timeout_s=30, what="the judge verdicts in the endpoint's metrics")
    assert counts == {"equal": 1, "judge_agree": 2, "judge_disagree": 2}, counts

    # The judge is asked as the caller: one who may query the endpoint but not the judge gets its answer as
    # ever, and the comparison of its query is counted as the judge's failure.
    caller = stack.user_token("shadow-caller@example.com")
    endpoint_id = stack.api("GET", f"/api/2.0/serving-endpoints/{name}").json()["id"]
    acl = {"access_control_list": [{"user_name": "shadow-caller@example.com", "permission_level": "CAN_QUERY"}]}
    assert stack.api("PUT", f"/api/2.0/permissions/serving-endpoints/{endpoint_id}", json=acl).status_code == 200
    reply = wait_for(lambda: (r := stack.api_as(caller, "POST", f"/serving-endpoints/{name}/invocations", json={
        "dataframe_split": {"columns": ["q"], "data": [["oslo"]]}})).status_code != 404 and r, timeout_s=10,
        what="the grant to reach the router")
    assert reply.status_code == 200 and reply.json() == {"predictions": ["oslo"]}, reply.text
    [failed] = [r for r in shadow_rows(len(expected) + 1) if r["databricks_request_id"] == reply.headers["x-request-id"]]
    assert failed["logging_error_codes"] == ["SHADOW_JUDGE_ERROR"]
    assert wait_for(lambda: _endpoint_shadow_counts(stack, name).get("judge_error") == 1, timeout_s=30,
                    what="the judge's failure counted")
    stack.api("DELETE", f"/api/2.0/serving-endpoints/{name}")
    stack.api("DELETE", f"/api/2.0/serving-endpoints/{judge_name}")
