"""Shadow traffic: a copy of a share of an endpoint's queries sent to its shadow served entities, whose
answers are compared with the live ones and never reach the caller (docs/progressive-delivery.md).

The query path only draws and puts the copy in a bounded queue (never awaits it): a full queue drops the
copy, counted. A few tasks take copies off the queue and send them to a replica of the shadow deployment
under the forwarding deadline (their load is counted for the scaler like any query's); each answer is
compared with the live one row by row (policy/shadow_compare.py). Prometheus series, per endpoint and
shadow entity: `podium_router_shadow_requests_total{outcome}` (equal, numeric_difference, different,
error, dropped, and with a judge endpoint judge_agree, judge_disagree, judge_error),
`podium_router_shadow_rows_total{comparison}`, and the largest numeric and text-length differences seen,
`podium_router_shadow_max_abs_difference` and `podium_router_shadow_max_length_difference`.
The same outcomes, per shadow deployment, go into the router's published outcomes (services/common/outcomes.py)
for a rollout's shadow-agreement gate. On an endpoint with an inference table, each shadow answer is also a row
of that table: the live query's request id, the shadow entity's name, its status and answer, and the
comparison as `logging_error_codes` (SHADOW_EQUAL, SHADOW_NUMERIC_DIFFERENCE, SHADOW_DIFFERENT, SHADOW_ERROR,
SHADOW_JUDGE_AGREE, SHADOW_JUDGE_DISAGREE, SHADOW_JUDGE_ERROR).

A shadow entity with a judge endpoint (`shadow_judge_endpoint`) has its differing text answers (an LLM's)
judged: the sender asks the judge, as the query's caller, through the guardrails' judge path (guardrails.py
`ask_judge`: the caller's permissions, rate limits and records apply, and judges do not chain), under the
copies' deadline, whether the two answers agree; the outcome is then judge_agree, judge_disagree or
judge_error (the judge failed or gave no verdict), never the caller's concern. A query a judge's question
sets off is never copied.

Copied: answered, unstreamed queries of custom-model endpoints, with or without an AI gateway, as long as no
guardrail rewrites what the model is sent or what the caller gets (the shadow would then see or be judged
against other bytes than the live entity). A shadow is never compared with itself: a query its own
deployment answered live (during a rollout that promotes it) is not copied to it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.common.deployments import EndpointRoutes, RouteTarget
from services.common.errors import PodiumError
from services.common.outcomes import ShadowOutcomes, shadow_key
from services.common.request_context import current_request_id
from services.router.guardrails import Ask, ask_judge, is_judging
from services.router.inference_log import InferenceRecord
from services.router.policy.replica_choice import pick_replica
from services.router.policy.shadow_compare import (
    DIFFERENT, EQUAL, JUDGE_ERROR, MAX_JUDGED_ROWS, NUMERIC, Comparison, compare_answers, judge_request,
    judged_verdict, read_agreement,
)

if TYPE_CHECKING:
    from services.router.admission import LoadTracker
    from services.router.backends import RoutingTableFollower, WorkerPool
    from services.router.inference_log import InferenceLog
    from services.router.results import QueryResult

log = logging.getLogger(__name__)

LABELS = ("endpoint_name", "served_entity_name")


@dataclass(frozen=True)
class ShadowCopy:
    endpoint_name: str
    route: RouteTarget
    body: bytes
    content_type: str
    live_body: bytes
    endpoint_id: str = ""
    request_id: str = ""
    is_recorded: bool = False    # the endpoint has an inference table: the comparison is a row of it
    ask: Ask | None = None       # queries another endpoint as the caller: the shadow's judge endpoint


class ShadowMirror:
    def __init__(self, pool: "WorkerPool", routing: "RoutingTableFollower", tracker: "LoadTracker",
                 registry: CollectorRegistry, *, queue_limit: int = 100, senders: int = 4, timeout_s: float = 30.0,
                 max_queued_bytes: int = 64 * 1024 * 1024, rng: random.Random | None = None,
                 outcomes: dict | None = None, inference_log: "InferenceLog | None" = None,
                 max_payload_bytes: int = 1024 * 1024, clock=time.time):
        self._pool, self._routing, self._tracker = pool, routing, tracker
        # The router's published outcomes (shared with metrics.py): {shadow_key(deployment key): ShadowOutcomes}.
        self._outcomes = outcomes if outcomes is not None else {}
        self._log, self._max_payload_bytes, self._clock = inference_log, max_payload_bytes, clock
        self._queue: asyncio.Queue[ShadowCopy] = asyncio.Queue(maxsize=queue_limit)
        # Bodies may be large (16 MB each): the queue is bounded in bytes as well as in copies.
        self._max_queued_bytes, self._queued_bytes = max_queued_bytes, 0
        self._senders, self._timeout_s = senders, timeout_s
        self._rng = rng or random.Random()
        self._requests = Counter("podium_router_shadow_requests", "Copies of queries for shadow served entities, "
                                 "by outcome", LABELS + ("outcome",), registry=registry)
        self._rows = Counter("podium_router_shadow_rows", "Rows of shadow answers compared with the live ones",
                             LABELS + ("comparison",), registry=registry)
        self._largest = Gauge("podium_router_shadow_max_abs_difference", "The largest numeric difference of a "
                              "shadow answer from the live one", LABELS, registry=registry)
        self._longest = Gauge("podium_router_shadow_max_length_difference", "The largest difference in length, "
                              "in characters, of a shadow's text answer from the live one", LABELS, registry=registry)
        self._max: dict[tuple[str, str], float] = {}
        self._max_length: dict[tuple[str, str], int] = {}

    def offer(self, endpoint: EndpointRoutes, body: bytes, content_type: str, result: "QueryResult", *,
              live_key: str = "", ask: Ask | None = None) -> None:
        """Queues a copy of an answered query for each of the endpoint's shadow entities its draw picks;
        `live_key` is the deployment that answered it, `ask(endpoint, body)` queries another endpoint as the
        caller (a shadow's judge endpoint)."""
        if result.stream is not None or not is_copied(endpoint) or is_judging():
            return
        policy = endpoint.gateway
        for route in endpoint.routes:
            if route.shadow_percentage <= 0 or route.deployment_key == live_key:
                continue
            if self._rng.random() * 100 >= route.shadow_percentage:
                continue
            size = len(body) + len(result.body)
            if self._queue.full() or self._queued_bytes + size > self._max_queued_bytes:
                self._count(endpoint.name, route, "dropped")   # under pressure the shadow loses copies, never
                continue                                       # the caller time
            self._queue.put_nowait(ShadowCopy(endpoint.name, route, body, content_type, result.body, endpoint.id,
                                              result.request_id or current_request_id(),
                                              policy is not None and policy.inference_table, ask))
            self._queued_bytes += size

    async def run(self) -> None:
        async with asyncio.TaskGroup() as senders:
            for _ in range(self._senders):
                senders.create_task(self._send_forever())

    async def _send_forever(self) -> None:
        while True:
            copy = await self._queue.get()
            self._queued_bytes -= len(copy.body) + len(copy.live_body)
            try:
                await self._send(copy)
            except Exception:   # one copy's failure is counted and never stops the sender
                log.exception("shadow copy failed")
                self._count(copy.endpoint_name, copy.route, "error")

    async def _send(self, copy: ShadowCopy) -> None:
        addresses = self._routing.replica_addresses(copy.route.deployment_key) or ()
        address = pick_replica([a for a in addresses if not self._pool.is_ejected(a)] or list(addresses),
                               self._pool.in_flight, self._rng.randint)
        if address is None:   # no ready replica: a copy never waits for one
            self._count(copy.endpoint_name, copy.route, "dropped")
            return
        timestamp_ms, started = int(self._clock() * 1000), time.monotonic()
        try:
            with self._tracker.track(copy.route.deployment_key):
                reply = await self._pool.predict(address, copy.body, copy.content_type or "application/json",
                                                 self._timeout_s)
        except (PodiumError, asyncio.TimeoutError) as exc:
            self._count(copy.endpoint_name, copy.route, "error")
            status = exc.http_status if isinstance(exc, PodiumError) else 504
            self._record(copy, timestamp_ms, started, status, b"", "error")
            return
        if reply.http_status != 200:
            self._count(copy.endpoint_name, copy.route, "error")
            self._record(copy, timestamp_ms, started, reply.http_status, reply.body, "error")
            return
        comparison = compare_answers(copy.live_body, reply.body)
        verdict = comparison.verdict
        if copy.route.shadow_judge_endpoint and comparison.texts:
            verdict = await self._judge(copy, comparison)
        self._count(copy.endpoint_name, copy.route, verdict)
        self._record(copy, timestamp_ms, started, 200, reply.body, verdict)
        labels = (copy.endpoint_name, copy.route.served_entity_name)
        for name, rows in ((EQUAL, comparison.rows_equal), (NUMERIC, comparison.rows_numeric),
                           (DIFFERENT, comparison.rows_different)):
            if rows:
                self._rows.labels(*labels, name).inc(rows)
        if comparison.verdict == NUMERIC and comparison.max_abs_difference > self._max.get(labels, 0.0):
            self._max[labels] = comparison.max_abs_difference
            self._largest.labels(*labels).set(comparison.max_abs_difference)
        if comparison.max_length_difference > self._max_length.get(labels, 0):
            self._max_length[labels] = comparison.max_length_difference
            self._longest.labels(*labels).set(comparison.max_length_difference)

    async def _judge(self, copy: ShadowCopy, comparison: Comparison) -> str:
        """What the shadow's judge endpoint says of the differing texts (judge_agree or judge_disagree), or
        judge_error: it failed, gave no verdict, or did not answer within the copies' deadline."""
        judge = copy.route.shadow_judge_endpoint
        where = (f"The judge endpoint '{judge}' of shadow entity '{copy.route.served_entity_name}' of endpoint "
                 f"'{copy.endpoint_name}'")
        if copy.ask is None:
            return JUDGE_ERROR
        try:
            async with asyncio.timeout(self._timeout_s):
                verdicts = [read_agreement(await ask_judge(copy.ask, judge, judge_request(live, shadow), where))
                            for live, shadow in comparison.texts[:MAX_JUDGED_ROWS]]
        except (PodiumError, TimeoutError) as exc:
            log.info("%s", exc.message if isinstance(exc, PodiumError) else f"{where} did not answer in time")
            return JUDGE_ERROR
        return judged_verdict(verdicts)

    def _count(self, endpoint_name: str, route: RouteTarget, outcome: str) -> None:
        self._requests.labels(endpoint_name, route.served_entity_name, outcome).inc()
        if outcome != "dropped":   # a dropped copy was never compared: it neither agrees nor disagrees
            key = shadow_key(route.deployment_key)
            counts = self._outcomes.get(key)
            if counts is None:
                counts = self._outcomes[key] = ShadowOutcomes()
            counts.add(outcome)

    def _record(self, copy: ShadowCopy, timestamp_ms: int, started: float, status: int, answer: bytes,
                outcome: str) -> None:
        if not copy.is_recorded or self._log is None:
            return
        codes = [f"SHADOW_{outcome.upper()}"]
        for part, payload in (("REQUEST", copy.body), ("RESPONSE", answer)):
            if len(payload) > self._max_payload_bytes:
                codes.append(f"MAX_{part}_SIZE_EXCEEDED")
        self._log.record(InferenceRecord(
            request_id=copy.request_id, endpoint_id=copy.endpoint_id, endpoint_name=copy.endpoint_name,
            served_entity_name=copy.route.served_entity_name, requester="", timestamp_ms=timestamp_ms,
            status_code=status, execution_duration_ms=int((time.monotonic() - started) * 1000),
            request=copy.body if len(copy.body) <= self._max_payload_bytes else b"",
            response=answer if len(answer) <= self._max_payload_bytes else b"", logging_error_codes=codes))


def is_copied(endpoint: EndpointRoutes) -> bool:
    """Whether the endpoint's queries may be copied to its shadows: no external model, and no guardrail that
    changes what the model is sent or what the caller gets."""
    policy = endpoint.gateway
    if policy is None:
        return True
    rules = policy.guardrails
    return not policy.is_external and (rules is None or not rules.is_active)
