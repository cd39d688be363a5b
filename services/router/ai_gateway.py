"""The AI gateway's core: queries of endpoints that serve external models, or have rate limits, usage tracking
or an inference table. The router's Gateway hands such an endpoint here once (EndpointRoutes.gateway is set);
a plain custom-model endpoint never comes here: its queries keep the bytes pass-through path.

Per request: admit against the rate limits (Redis), check the request against the input guardrails
(services/router/guardrails.py), call the provider (or forward to the workers), falling back to the
endpoint's other served entities when fallback is on, check the answer against the output guardrails, then,
off the request path, charge the tokens used and queue the inference/usage record. An endpoint without
guardrails or fallback takes none of those steps.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import orjson

from services.common.deployments import EndpointRoutes, RouteTarget
from services.common.request_context import current_request_id
from services.common.errors import BadRequest, DeadlineExceeded, InvalidParameter, PodiumError, Unavailable
from services.common.principals import Principal
from services.router import agent_wire
from services.router.external.replies import ProviderReply, ProviderStream, StreamOutcome, Usage
from services.router.guardrails import (
    INPUT_BLOCKED, OUTPUT_BLOCKED, Ask, GuardedStream, GuardrailBlocked, Judge, guard_body, guard_document,
    masked_for_record,
)
from services.router.inference_log import InferenceRecord
from services.router.policy.fallback import fallback_routes, is_fallback_status
from services.router.policy.rate_limit import Budget
from services.router.results import CLIENT_CLOSED, QueryResult

if TYPE_CHECKING:  # handed in by __main__: the core never imports aiohttp, redis or sqlalchemy itself
    from services.common.tensors import ModelMetadata
    from services.router.external.client import ProviderClient
    from services.router.inference_log import InferenceLog
    from services.router.inference_store import InferenceStore
    from services.router.rate_limit import RateLimiter

log = logging.getLogger(__name__)

MAX_PAGE = 1000
FALLBACK_CODE = "SERVED_BY_FALLBACK"   # logging_error_codes of a query another served entity answered
T = TypeVar("T")


class AiGateway:
    def __init__(self, providers: "ProviderClient", limiter: "RateLimiter", inference_log: "InferenceLog | None",
                 store: "InferenceStore | None", *, max_payload_bytes: int, fallback_timeout_s: float = 60.0,
                 clock: Callable[[], float] = time.time):
        self._providers = providers
        self._limiter = limiter
        self._log = inference_log
        self._store = store
        self._max_payload_bytes = max_payload_bytes
        self._fallback_timeout_s = fallback_timeout_s
        self._clock = clock
        self._background: set[asyncio.Task] = set()

    async def query(self, endpoint: EndpointRoutes, route: RouteTarget, body: bytes, payload: dict | None,
                    caller: Principal, task: str, forward: Callable[[RouteTarget, bytes], Awaitable[QueryResult]],
                    ask: Ask | None = None,
                    describe: Callable[[RouteTarget], Awaitable["ModelMetadata"]] | None = None) -> QueryResult:
        """`route` is the served entity the caller's query goes to first (the router core picked it); `task` is
        set on the OpenAI-style paths (which task the caller asked for); `forward(route, body)` is the plain path
        to a served entity's workers, for custom models; `ask(endpoint, body)` queries another endpoint as the
        caller (the guard endpoint that judges safety and valid_topics); `describe(route)` is a served entity's
        model description (cached per deployment), which says whether its answers may carry token counts."""
        policy = endpoint.gateway
        started, timestamp_ms = time.monotonic(), int(self._clock() * 1000)
        # The answer's x-request-id where it fits the records' column (64), so a record is found by it.
        request_id = current_request_id()
        request_id = request_id if 0 < len(request_id) <= 64 else uuid.uuid4().hex
        served, budgets = route.served_entity_name, []
        record = policy is not None and (policy.usage_tracking or policy.inference_table)
        guardrails = policy.guardrails if policy is not None else None
        judge = (Judge(endpoint.name, guardrails.guard_endpoint, ask or _no_judge)
                 if guardrails is not None and guardrails.guard_endpoint else None)
        sent, codes = body, []   # what went to the model, as the inference table keeps it
        try:
            if policy is None or not policy.is_external:
                if task:
                    raise InvalidParameter(f"Endpoint '{endpoint.name}' serves a custom model, not {task}: query "
                                           f"it at /serving-endpoints/{endpoint.name}/invocations")
                if policy is not None and policy.rate_limits:
                    budgets = await self._limiter.admit(endpoint.name, endpoint.id, policy.rate_limits, caller)
                if guardrails is not None and guardrails.input.is_active:
                    sent = await guard_body(endpoint.name, "", body, guardrails.input, is_answer=False, judge=judge)
                result, served, codes = await self._serve(endpoint, route, lambda target: forward(target, sent))
                if result.stream is not None:   # a generative model's events: their usage is read as they pass
                    outcome = StreamOutcome()
                    events, guarded = agent_wire.metered(result.stream, outcome), None
                    if guardrails is not None and guardrails.output.is_active:
                        guarded = GuardedStream(endpoint.name, guardrails.output, events, judge, is_custom=True)
                    chunks = self._relay(ProviderStream(guarded.relay() if guarded else events, outcome), endpoint,
                                         request_id, served, caller, timestamp_ms, started, sent, payload, budgets,
                                         record, codes, guarded)
                    return QueryResult(b"", result.content_type, served, chunks, request_id, result.model_ms)
                answer, usage = result.body, Usage()
                if record or budgets:   # a generative model's answer may carry its token counts
                    usage = await self._answer_usage(endpoint, served, answer, describe)
                    self._charge(endpoint, budgets, usage, served)
                if guardrails is not None and guardrails.output.is_active:
                    answer = await guard_body(endpoint.name, "", answer, guardrails.output, is_answer=True,
                                              judge=judge)
                if record:
                    self._record(endpoint, request_id, served, caller, timestamp_ms, started, 200, sent, answer,
                                 usage, payload, codes)
                return QueryResult(answer, result.content_type, served, None, request_id, result.model_ms)
            if task and task != policy.task:
                raise InvalidParameter(f"Endpoint '{endpoint.name}' serves {policy.task}, not {task}")
            payload = payload if payload is not None else json_object(body)
            if policy.budgets:   # before the rate limits: a caller over budget takes no call from them
                budgets = await self._limiter.spend.admit(endpoint.name, endpoint.id, policy.budgets, caller)
            if policy.rate_limits:
                budgets += await self._limiter.admit(endpoint.name, endpoint.id, policy.rate_limits, caller)
            if guardrails is not None and guardrails.input.is_active:
                if await guard_document(endpoint.name, policy.task, payload, guardrails.input, is_answer=False,
                                        judge=judge):
                    sent = orjson.dumps(payload)
            provider_started = time.monotonic()
            reply, served, codes = await self._serve(
                endpoint, route, lambda target: self._invoke(endpoint.name, target, payload))
            provider_ms = (time.monotonic() - provider_started) * 1000   # to the first byte, when streamed
            if isinstance(reply, ProviderStream):
                guarded = None
                if guardrails is not None and guardrails.output.is_active:
                    guarded = GuardedStream(endpoint.name, guardrails.output, reply.chunks, judge)
                    reply = ProviderStream(guarded.relay(), reply.outcome)
                chunks = self._relay(reply, endpoint, request_id, served, caller, timestamp_ms, started, sent,
                                     payload, budgets, record, codes, guarded)
                return QueryResult(b"", "text/event-stream", served, chunks, request_id, provider_ms)
            self._charge(endpoint, budgets, reply.usage, served)   # the provider answered: its tokens are spent
            answer = reply.body
            if guardrails is not None and guardrails.output.is_active:
                answer = await guard_body(endpoint.name, policy.task, answer, guardrails.output, is_answer=True,
                                          judge=judge)
        except PodiumError as exc:
            if record:
                if isinstance(exc, GuardrailBlocked):
                    codes = [*codes, exc.logging_code]
                    if exc.logging_code == INPUT_BLOCKED:
                        sent = masked_for_record(body)   # never sent: kept without its personal data
                error = orjson.dumps({"error_code": exc.code, "message": exc.message})
                self._record(endpoint, request_id, served, caller, timestamp_ms, started, exc.http_status, sent,
                             error, Usage(), payload, codes)
            raise
        if record:
            self._record(endpoint, request_id, served, caller, timestamp_ms, started, 200, sent, answer,
                         reply.usage, payload, codes)
        return QueryResult(answer, "application/json", served, None, request_id, provider_ms)

    async def _invoke(self, endpoint_name: str, route: RouteTarget, payload: dict) -> ProviderReply | ProviderStream:
        if route.external_model is None:
            raise Unavailable(f"Endpoint '{endpoint_name}' is not ready yet", retry_after_s=5)
        return await self._providers.invoke(endpoint_name, route.external_model, payload)

    async def _serve(self, endpoint: EndpointRoutes, route: RouteTarget,
                     attempt: Callable[[RouteTarget], Awaitable[T]]) -> tuple[T, str, list]:
        """(the answer, the served entity that gave it, its logging codes): from `route`, or with fallback on,
        from the next served entity each time one answers 429, 5xx or does not answer in time, all within one
        deadline. A stream counts as answered once it starts: it is never sent to another entity."""
        names = endpoint.gateway.fallback_order if endpoint.gateway is not None else ()
        order = fallback_routes(endpoint.routes, route, names) if names else [route]
        if len(order) == 1:
            return await attempt(route), route.served_entity_name, []
        deadline = time.monotonic() + self._fallback_timeout_s
        failure: PodiumError = DeadlineExceeded(f"Endpoint '{endpoint.name}' did not answer within "
                                                f"{self._fallback_timeout_s:g} s")
        for i, target in enumerate(order):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # An equal share of what is left: an entity that never answers still leaves the next one time.
            share = remaining / (len(order) - i)
            try:
                async with asyncio.timeout(share):
                    answer = await attempt(target)
                return answer, target.served_entity_name, [FALLBACK_CODE] if i else []
            except TimeoutError:
                failure = DeadlineExceeded(f"Served entity '{target.served_entity_name}' of endpoint "
                                           f"'{endpoint.name}' did not answer within its share ({share:.3g} s) "
                                           f"of the endpoint's deadline ({self._fallback_timeout_s:g} s)")
            except PodiumError as exc:
                if not is_fallback_status(exc.http_status):
                    raise
                failure = exc
            log.warning("served entity %s of %s failed (%s); falling back", target.served_entity_name,
                        endpoint.name, failure.code)
        raise failure

    async def _relay(self, stream: ProviderStream, endpoint: EndpointRoutes, request_id: str, served: str,
                     caller: Principal, timestamp_ms: int, started: float, body: bytes, payload: dict | None,
                     budgets: list[Budget], record: bool, codes: list[str],
                     guarded: GuardedStream | None) -> AsyncIterator[bytes]:
        """The provider's chunks, as they come (through the output guardrails' `guarded`, if any); once it ends
        (or the caller leaves), charge and record."""
        captured = bytearray() if record else None
        completed = False
        try:
            async for chunk in stream.chunks:
                if captured is not None and len(captured) <= self._max_payload_bytes:
                    captured += chunk
                yield chunk
            completed = True
        finally:
            await stream.chunks.aclose()  # type: ignore[attr-defined]  # frees the provider connection
            self._charge(endpoint, budgets, stream.outcome.usage, served)
            if guarded is not None and guarded.blocked:
                codes = [*codes, OUTPUT_BLOCKED]
            if captured is not None:
                status = stream.outcome.status_code if completed else CLIENT_CLOSED
                status = 400 if OUTPUT_BLOCKED in codes else status
                status = guarded.error.http_status if guarded is not None and guarded.error else status
                self._record(endpoint, request_id, served, caller, timestamp_ms, started, status, body,
                             bytes(captured), stream.outcome.usage, payload, codes)

    @staticmethod
    async def _answer_usage(endpoint: EndpointRoutes, served: str, answer: bytes,
                            describe: Callable[[RouteTarget], Awaitable["ModelMetadata"]] | None) -> Usage:
        """The token counts of a custom model's non-streaming answer (agent_wire.answer_usage), read only where
        the answer names `usage` and the served entity's model is generative (its description, asked of a replica
        once per deployment): a classic model's answer is never parsed. Best effort: 0 tokens otherwise."""
        route = next((r for r in endpoint.routes if r.served_entity_name == served), None)
        if describe is None or route is None or not agent_wire.may_carry_usage(answer):
            return Usage()
        try:
            metadata = await describe(route)
        except PodiumError as exc:
            log.info("cannot tell whether %s of %s is generative: %s", served, endpoint.name, exc.code)
            return Usage()
        if not agent_wire.is_generative(metadata.task, metadata.is_streaming):
            return Usage()
        return agent_wire.answer_usage(answer)

    def _charge(self, endpoint: EndpointRoutes, budgets: list, usage: Usage, served: str) -> None:
        """Rate limits' Budgets and spend budgets' SpendCharges (priced by the served entity that answered)."""
        if budgets and usage.total_tokens:
            price = endpoint.gateway.price_of(served) if endpoint.gateway is not None else None
            task = asyncio.get_running_loop().create_task(self._limiter.charge(
                endpoint.id, budgets, usage.input_tokens, usage.output_tokens, price))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _record(self, endpoint: EndpointRoutes, request_id: str, served: str, caller: Principal, timestamp_ms: int,
                started: float, status: int, request: bytes, response: bytes, usage: Usage,
                payload: dict | None, codes: list[str] = ()) -> None:
        if self._log is None:
            return
        policy = endpoint.gateway
        capture = policy is not None and policy.inference_table
        errors = list(codes)   # guardrail blocks, fallbacks: in usage-only records too
        if capture and len(request) > self._max_payload_bytes:
            errors.append("MAX_REQUEST_SIZE_EXCEEDED")
        if capture and len(response) > self._max_payload_bytes:
            errors.append("MAX_RESPONSE_SIZE_EXCEEDED")
        client_request_id = payload.get("client_request_id") if isinstance(payload, dict) else None
        self._log.record(InferenceRecord(
            request_id=request_id, endpoint_id=endpoint.id, endpoint_name=endpoint.name, served_entity_name=served,
            requester=caller.name,
            timestamp_ms=timestamp_ms, status_code=status,
            execution_duration_ms=int((time.monotonic() - started) * 1000),
            request=request if capture and "MAX_REQUEST_SIZE_EXCEEDED" not in errors else None,
            response=response if capture and "MAX_RESPONSE_SIZE_EXCEEDED" not in errors else None,
            input_token_count=usage.input_tokens, output_token_count=usage.output_tokens,
            client_request_id=client_request_id if isinstance(client_request_id, str) else "",
            logging_error_codes=errors))

    # ---- reading the records back ----

    async def inference_table(self, endpoint: EndpointRoutes, start_time_ms: int | None, end_time_ms: int | None,
                              max_results: int, page_token: str | None) -> dict:
        """{"rows": [...], "next_page_token"?}: the endpoint's captured requests and responses, oldest first
        (this endpoint's, by id: never those of a deleted endpoint that had its name)."""
        store = self._require_store()
        if not 1 <= max_results <= MAX_PAGE:
            raise InvalidParameter(f"max_results must be from 1 to {MAX_PAGE}")
        after_id = _page_token(page_token)
        rows, next_id = await asyncio.to_thread(store.read, endpoint.id, start_time_ms or 0,
                                                end_time_ms or 2**62, max_results, after_id)
        return {"rows": rows, **({"next_page_token": str(next_id)} if next_id is not None else {})}

    async def usage(self, endpoint: EndpointRoutes, start_time_ms: int | None, end_time_ms: int | None) -> dict:
        """{"usage": [...], "budgets"?: [...]}: requests, errors and tokens per requester of the endpoint (by id);
        with spend budgets, what each has spent in its current day or month."""
        store = self._require_store()
        usage = {"usage": await asyncio.to_thread(store.usage, endpoint.id, endpoint.name, start_time_ms or 0,
                                                  end_time_ms or 2**62)}
        if endpoint.gateway is not None and endpoint.gateway.budgets:
            usage["budgets"] = await self._limiter.spend.report(endpoint.id, endpoint.gateway.budgets)
        return usage

    def _require_store(self) -> "InferenceStore":
        if self._store is None:
            raise Unavailable("this router keeps no inference log")
        return self._store

    async def close(self) -> None:
        await asyncio.gather(*self._background, return_exceptions=True)


async def _no_judge(guard_endpoint: str, body: bytes) -> QueryResult:
    raise Unavailable(f"this router cannot query the guard endpoint '{guard_endpoint}'")


def json_object(body: bytes) -> dict:
    """The request body as a JSON object (the OpenAI-style paths parse it too, to find the endpoint)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("Request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest("Request body must be a JSON object")
    return payload


def _page_token(token: str | None) -> int:
    if not token:
        return 0
    if not token.isdigit():
        raise InvalidParameter("page_token is not one this API returned")
    return int(token)
