"""A shadow's judge endpoint (`shadow_judge_endpoint`): reading its verdict (a table), what a comparison of text
answers puts to it, how its verdicts are counted, recorded and published (the shadow mirror in-process, the
judge a stub answering as the guardrails' judge path is called), how the rollout gate counts them, and the
field's validation (names the field)."""

from __future__ import annotations

import asyncio
import dataclasses

import orjson
import pytest
from prometheus_client import CollectorRegistry

from services.common.deployments import EndpointRoutes, RouteTarget
from services.common.errors import EndpointNotFound, InvalidParameter, Unavailable
from services.common.gateway_routes import GatewayPolicy
from services.common.outcomes import SHADOW_VERDICTS, ShadowOutcomes, decode_outcomes, shadow_key
from services.common.principals import Principal
from services.control_plane.config_versions import new_config
from services.control_plane.rollout_policy import ShadowStats, judge_step, validate_rollout_plan
from services.control_plane.spec import validate_config
from services.control_plane.spec_shadow import check_shadow_judges
from services.router.admission import LoadTracker
from services.router.policy.shadow_compare import (
    DIFFERENT, JUDGE_AGREE, JUDGE_DISAGREE, JUDGE_ERROR, MAX_JUDGED_CHARS, compare_answers, judge_request,
    judged_verdict, read_agreement,
)
from services.router.prediction_stream import WorkerReply
from services.router.results import QueryResult
from services.router.shadow import ShadowMirror


def _chat(content) -> dict:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}


@pytest.mark.parametrize("answer, verdict", [
    pytest.param(_chat("YES"), True, id="yes"),
    pytest.param(_chat("no"), False, id="no"),
    pytest.param(_chat("Yes, they agree."), True, id="yes with a sentence"),
    pytest.param(_chat("**NO** - the second answer gives another date"), False, id="markdown"),
    pytest.param(_chat("Verdict: agree"), True, id="a label first"),
    pytest.param(_chat("Answer: Different"), False, id="different"),
    pytest.param(_chat("0.9"), True, id="a score"),
    pytest.param(_chat("Score: 0.2"), False, id="a low score after a label"),
    pytest.param(_chat("7/10"), True, id="out of ten"),
    pytest.param(_chat("30%"), False, id="a percentage"),
    pytest.param(_chat("1"), True, id="one"),
    pytest.param(_chat("0"), False, id="zero"),
    pytest.param(_chat("8"), None, id="a number on no scale"),
    pytest.param(_chat("Maybe"), None, id="no verdict"),
    pytest.param(_chat(""), None, id="empty"),
    pytest.param(_chat(None), None, id="no content"),
    pytest.param({"choices": []}, None, id="no choice"),
    pytest.param({"choices": [{"text": " true"}]}, True, id="a completion"),
    pytest.param("no", False, id="a bare string"),
    pytest.param(None, None, id="not JSON"),
    pytest.param({"error": "x"}, None, id="an error body"),
])
def test_reading_the_judges_verdict(answer, verdict):
    assert read_agreement(answer) is verdict


@pytest.mark.parametrize("verdicts, outcome", [
    pytest.param([True], JUDGE_AGREE, id="agree"),
    pytest.param([True, False], JUDGE_DISAGREE, id="one row disagrees"),
    pytest.param([None, False], JUDGE_DISAGREE, id="a disagreement outweighs an unjudged row"),
    pytest.param([True, None], JUDGE_ERROR, id="a row not judged"),
    pytest.param([], JUDGE_ERROR, id="nothing judged"),
])
def test_the_comparisons_outcome_from_its_rows_verdicts(verdicts, outcome):
    assert judged_verdict(verdicts) == outcome


@pytest.mark.parametrize("live, shadow, texts", [
    pytest.param(_chat("Paris"), _chat("It is Paris."), (("Paris", "It is Paris."),), id="chat"),
    pytest.param(_chat("Paris"), _chat("Paris"), (), id="equal: nothing to judge"),
    pytest.param({"predictions": ["a", "b"]}, {"predictions": ["a", "c"]}, (("b", "c"),), id="text rows"),
    pytest.param({"predictions": ["a", 1]}, {"predictions": ["b", 2]}, (), id="not all text: not judged"),
    pytest.param({"predictions": [1]}, {"predictions": [2]}, (), id="labels"),
])
def test_which_texts_a_comparison_puts_to_the_judge(live, shadow, texts):
    comparison = compare_answers(orjson.dumps(live), orjson.dumps(shadow))
    assert comparison.texts == texts
    if texts:
        assert comparison.verdict == DIFFERENT


def test_the_judge_request_is_a_short_bounded_chat():
    request = judge_request("a" * (MAX_JUDGED_CHARS + 10), "b")
    assert request["temperature"] == 0 and request["max_tokens"] <= 10
    assert [m["role"] for m in request["messages"]] == ["system", "user"]
    assert "YES" in request["messages"][0]["content"] and "NO" in request["messages"][0]["content"]
    assert request["messages"][1]["content"].count("a") == MAX_JUDGED_CHARS


# ---- the shadow mirror with a judge ----

LIVE = RouteTarget("live", 100, "k-live", ("127.0.0.1:1",))
SHADOW = RouteTarget("shadow", 0, "k-shadow", ("127.0.0.1:2",), shadow_percentage=100, shadow_judge_endpoint="judge")
ENDPOINT = EndpointRoutes("e", "id", (LIVE, SHADOW), GatewayPolicy(inference_table=True))


class Pool:
    def __init__(self, answer: bytes):
        self.answer, self.in_flight = answer, {}

    def is_ejected(self, address: str) -> bool:
        return False

    async def predict(self, address, body, content_type, timeout_s):
        return WorkerReply(200, self.answer, "application/json")


class Routing:
    def replica_addresses(self, key):
        return {"k-shadow": SHADOW.replica_addresses}.get(key)


class Log:
    def __init__(self):
        self.records = []

    def record(self, record):
        self.records.append(record)


def _counts(registry: CollectorRegistry) -> dict[str, float]:
    return {s.labels["outcome"]: s.value for f in registry.collect() if f.name == "podium_router_shadow_requests"
            for s in f.samples if s.name.endswith("_total")}


async def _judged(judge, live: dict, shadow: dict, *, endpoint=ENDPOINT, timeout_s=5.0):
    """The counts, the inference rows' codes, the published outcomes and the judge's questions of one copy."""
    registry, log, outcomes, asked = CollectorRegistry(), Log(), {}, []

    async def ask(name: str, body: bytes) -> QueryResult:
        asked.append((name, orjson.loads(body)))
        return await judge()

    mirror = ShadowMirror(Pool(orjson.dumps(shadow)), Routing(), LoadTracker(), registry, senders=1,
                          outcomes=outcomes, inference_log=log, timeout_s=timeout_s)
    mirror._rng.random = lambda: 0.0
    running = asyncio.create_task(mirror.run())
    mirror.offer(endpoint, b'{"messages": []}', "application/json",
                 QueryResult(orjson.dumps(live), "application/json", "live", request_id="r-1"), live_key="k-live",
                 ask=ask if judge is not None else None)
    for _ in range(500):
        if _counts(registry):
            break
        await asyncio.sleep(0.01)
    running.cancel()
    published = dict(zip(SHADOW_VERDICTS, outcomes[shadow_key("k-shadow")].as_list()))
    return _counts(registry), [r.logging_error_codes for r in log.records], published, asked


def _answers(content: str):
    async def judge():
        return QueryResult(orjson.dumps(_chat(content)), "application/json", "j")
    return judge


async def _fails():
    raise EndpointNotFound("Endpoint with name 'judge' does not exist")


async def _hangs():
    await asyncio.sleep(60)


@pytest.mark.parametrize("judge, outcome", [
    pytest.param(_answers("YES"), JUDGE_AGREE, id="agree"),
    pytest.param(_answers("No."), JUDGE_DISAGREE, id="disagree"),
    pytest.param(_answers("I cannot tell"), JUDGE_ERROR, id="no verdict"),
    pytest.param(_fails, JUDGE_ERROR, id="the caller may not query it"),
    pytest.param(_hangs, JUDGE_ERROR, id="past the deadline"),
    pytest.param(None, JUDGE_ERROR, id="no way to ask"),
])
async def test_a_differing_text_answer_is_judged_and_its_verdict_counted_recorded_and_published(judge, outcome):
    counts, codes, published, asked = await _judged(judge, _chat("Paris"), _chat("The capital is Paris."),
                                                    timeout_s=0.2)
    assert counts == {outcome: 1}
    assert codes == [[f"SHADOW_{outcome.upper()}"]]
    assert published[outcome] == 1 and sum(published.values()) == 1
    if judge is not None:
        assert [name for name, _ in asked] == ["judge"]
        assert "Answer A:\nParis" in asked[0][1]["messages"][1]["content"]


async def test_equal_or_non_text_answers_are_not_put_to_the_judge():
    counts, codes, _, asked = await _judged(_answers("NO"), _chat("Paris"), _chat("Paris"))
    assert counts == {"equal": 1} and codes == [["SHADOW_EQUAL"]] and asked == []
    counts, _, _, asked = await _judged(_answers("YES"), {"predictions": [1]}, {"predictions": [2]})
    assert counts == {"different": 1} and asked == []


async def test_without_a_judge_a_differing_text_is_different():
    endpoint = dataclasses.replace(ENDPOINT, routes=(LIVE, dataclasses.replace(SHADOW, shadow_judge_endpoint="")))
    counts, _, _, asked = await _judged(_answers("YES"), _chat("a"), _chat("b"), endpoint=endpoint)
    assert counts == {"different": 1} and asked == []


async def test_a_judges_own_query_is_never_copied():
    """The judge's question sets off a query (here: to an endpoint with shadows): it is not copied, so a
    judge never loops back into the shadows it judges."""
    from services.router.guardrails import ask_judge
    registry = CollectorRegistry()
    mirror = ShadowMirror(Pool(b"{}"), Routing(), LoadTracker(), registry, max_queued_bytes=0)
    mirror._rng.random = lambda: 0.0

    async def ask(name, body):
        mirror.offer(ENDPOINT, b"{}", "application/json", QueryResult(b"{}", "application/json", "live"))
        return QueryResult(b'{"choices": []}', "application/json", "j")
    await ask_judge(ask, "judge", {}, "The judge")
    assert _counts(registry) == {}
    mirror.offer(ENDPOINT, b"{}", "application/json", QueryResult(b"{}", "application/json", "live"))
    assert _counts(registry) == {"dropped": 1}   # outside a judge's question, copies are made


async def test_judges_do_not_chain():
    from services.router.guardrails import ask_judge

    async def ask(name, body):
        return await ask_judge(ask, "judge", {}, "The inner judge")
    with pytest.raises(Unavailable, match="judges do not chain"):
        await ask_judge(ask, "judge", {}, "The judge")


# ---- the rollout gate and the published counts ----

def test_judged_agreement_counts_and_an_unjudged_text_is_no_comparison():
    stats = ShadowStats(equal=6, numeric_difference=1, different=1, errors=0, judge_agree=1, judge_disagree=1,
                        judge_errors=5)
    assert stats.comparisons == 10 and stats.agreement == 0.8
    assert stats.as_dict()["judge_errors"] == 5
    plan = validate_rollout_plan({"steps": [{"traffic_percentage": 10, "min_requests": 1}, 100],
                                  "gates": {"min_shadow_agreement": 0.9, "min_shadow_comparisons": 20}}, "p")
    from services.control_plane.rollout_policy import WindowStats
    side = WindowStats(100, 0, (100,) + (0,) * 24)
    hold = judge_step(plan, 0, 1.0, side, side, stats)
    assert hold.action == "HOLD" and "10 of 20 shadow comparisons (5 not judged" in hold.reason


def test_outcomes_from_routers_before_the_judge_verdicts_read_as_zeros():
    assert decode_outcomes(b'{"shadow:k": [1, 2, 3, 4]}') == {"shadow:k": [1, 2, 3, 4, 0, 0, 0]}
    counts = ShadowOutcomes()
    counts.add(JUDGE_DISAGREE)
    assert counts.as_list() == [0, 0, 0, 0, 0, 1, 0]


# ---- validation ----

LIVE_ENTITY = {"name": "live", "entity_name": "c.s.m", "entity_version": "1"}
ROUTES = {"routes": [{"served_entity_name": "live", "traffic_percentage": 100}]}


def _config(shadow: dict) -> dict:
    return {"served_entities": [LIVE_ENTITY, {"name": "next", "entity_name": "c.s.m", "entity_version": "2",
                                              **shadow}], "traffic_config": ROUTES}


def test_the_judge_is_stored_with_its_shadow():
    config = validate_config(_config({"shadow_percentage": 25, "shadow_judge_endpoint": "judge-1"}))
    assert config["served_entities"][1]["shadow_judge_endpoint"] == "judge-1"


@pytest.mark.parametrize("shadow, needle", [
    pytest.param({"shadow_judge_endpoint": "judge"}, "served_entities[1].shadow_judge_endpoint judges a shadow's",
                 id="not a shadow"),
    pytest.param({"shadow_percentage": 5, "shadow_judge_endpoint": ""}, "served_entities[1].shadow_judge_endpoint "
                 "must be the name of a serving endpoint", id="empty"),
    pytest.param({"shadow_percentage": 5, "shadow_judge_endpoint": 3}, "must be the name", id="not a string"),
    pytest.param({"shadow_percentage": 5, "shadow_judge_endpoint": "a b"}, "must be the name", id="not a name"),
])
def test_refusals(shadow, needle):
    with pytest.raises(InvalidParameter) as refused:
        validate_config(_config(shadow), "config")
    assert needle in refused.value.message and refused.value.code == "INVALID_PARAMETER_VALUE"


USER = Principal(id="u1", name="ann@example.com", kind="USER")
ENDPOINTS = {"judge": {"name": "judge", "acl": [{"principal_id": "u1", "permission_level": "CAN_QUERY"}]},
             "hidden": {"name": "hidden", "acl": [{"principal_id": "u2", "permission_level": "CAN_MANAGE"}]}}


@pytest.mark.parametrize("judge, needle", [
    pytest.param("judge", None, id="an endpoint the writer sees"),
    pytest.param("nowhere", "served_entities[1].shadow_judge_endpoint: endpoint 'nowhere' does not exist",
                 id="unknown"),
    pytest.param("hidden", "endpoint 'hidden' does not exist", id="one the writer may not see"),
    pytest.param("e", "endpoint 'e' cannot judge its own shadow answers", id="itself"),
])
def test_the_judge_must_be_another_endpoint_the_writer_sees(judge, needle):
    config = validate_config(_config({"shadow_percentage": 5, "shadow_judge_endpoint": judge}))
    if needle is None:
        stored = new_config(config, 2, USER, 1000, "e", ENDPOINTS)
        assert stored["served_entities"][1]["shadow_judge_endpoint"] == judge and stored["config_version"] == 2
        return
    with pytest.raises(InvalidParameter) as refused:
        new_config(config, 2, USER, 1000, "e", {**ENDPOINTS, "e": ENDPOINTS["judge"]})
    assert needle in refused.value.message
    with pytest.raises(InvalidParameter):
        check_shadow_judges(config, "e", lambda name: False)
