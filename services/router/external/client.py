"""Outbound calls to external model providers over one shared aiohttp ClientSession.

Every call has a deadline (the endpoint's `timeout_s`, else the router's): for a plain answer it bounds
all attempts together; for a stream it bounds the wait for the answer to start and then each pause between
chunks, so a long answer that keeps flowing is never cut. Connection failures and provider 5xx are retried
up to `max_retries` times with a short backoff, only before anything reached the caller; 429 is never
retried here (the caller gets it with Retry-After). Streams are relayed event by event, never buffered.

Egress (services/common/egress.py): every address a call is about to connect to, after DNS, is checked
against the policy, with one session for targets an admin wrote (private addresses allowed) and one for
the others, so neither a DNS cache entry nor a pooled connection carries one's allowance to the other.
Every call carries `x-podium-hop`, which Podium's own routers refuse (services/router/rest.py), so an
endpoint whose provider is a Podium router fails after one hop instead of looping; `databricks-model-serving`
calls, meant for serving endpoints (another Podium's included), go without it. Streams come as server-sent
events, or (Bedrock) in AWS's binary event-stream framing, decoded with botocore.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson

from botocore.eventstream import EventStreamBuffer, EventStreamError

from services.common.egress import EgressPolicy
from services.common.errors import BadGateway, DeadlineExceeded, InvalidParameter, PermissionDenied, PodiumError
from services.common.gateway_routes import ExternalModelTarget
from services.router.external import bedrock_wire, openai_wire
from services.router.external.access_tokens import AccessTokens
from services.router.external.calls import AWS_EVENT_STREAM, ProviderCall, ProviderCalls
from services.router.external.credentials import Credentials
from services.router.external.egress_connector import EgressConnector, EgressRefused
from services.router.external.provider_errors import provider_error
from services.router.external.replies import ProviderReply, ProviderStream, StreamOutcome
from services.router.external.sse import DONE, SseParser, error_event

log = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({500, 502, 503, 504, 529})  # 529: Anthropic's "overloaded"
FIRST_BACKOFF_S = 0.25
HOP_HEADER = "x-podium-hop"   # set on every provider call; a Podium router refuses a request that carries it


class ProviderClient:
    def __init__(self, credentials: Credentials, *, timeout_s: float, max_retries: int, connect_timeout_s: float,
                 max_connections: int = 256, egress: EgressPolicy = EgressPolicy()):
        self._credentials = credentials
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._connect_timeout_s = connect_timeout_s
        self._max_connections = max_connections
        self._egress = egress
        self._sessions: dict[bool, aiohttp.ClientSession] = {}   # by may_reach_private
        self._calls = ProviderCalls(credentials, AccessTokens(self._sessions, {HOP_HEADER: "1"}))

    async def start(self) -> None:
        for may_reach_private in (False, True):
            self._sessions[may_reach_private] = aiohttp.ClientSession(
                connector=EgressConnector(self._egress, may_reach_private, limit=self._max_connections,
                                          ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=None), auto_decompress=True)

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()

    async def invoke(self, endpoint: str, target: ExternalModelTarget, payload: dict
                     ) -> ProviderReply | ProviderStream:
        """Calls the provider; the answer (or the stream of chunks) is already in the OpenAI shape."""
        task = target.task
        openai_wire.check_payload(task, payload)
        is_stream = payload.get("stream") is True
        if is_stream and task == "llm/v1/embeddings":
            raise InvalidParameter("stream is not available for embeddings")
        timeout_s = target.timeout_s or self._timeout_s
        # A serving endpoint may be another Podium's, whose routers refuse the hop header; Podium's own
        # listeners stay unreachable through the egress policy, so an endpoint still cannot call itself.
        headers = {} if target.provider == "databricks-model-serving" else {HOP_HEADER: "1"}
        call = await self._calls.build(endpoint, target, payload, headers, timeout_s)
        response = await self._send(endpoint, target, call, timeout_s, is_stream)
        created = int(time.time())
        if is_stream:
            outcome = StreamOutcome()
            return ProviderStream(self._relay(endpoint, target, call, response, payload, outcome, created), outcome)
        answer = _json_object(await self._read(endpoint, target, response, timeout_s), target.provider)
        return ProviderReply(*call.answer(answer, created, response.headers))

    async def _send(self, endpoint: str, target: ExternalModelTarget, call: ProviderCall, timeout_s: float,
                    is_stream: bool) -> aiohttp.ClientResponse:
        assert self._sessions, "ProviderClient.start() was not awaited"
        session = self._sessions[target.may_reach_private]
        deadline = time.monotonic() + timeout_s
        retries = self._max_retries if target.max_retries is None else target.max_retries
        for attempt in range(retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            timeout = aiohttp.ClientTimeout(
                total=None if is_stream else remaining, sock_connect=min(self._connect_timeout_s, remaining),
                sock_read=timeout_s if is_stream else None)
            try:
                response = await session.post(call.url, data=call.body, headers=call.headers, timeout=timeout)
            except asyncio.TimeoutError:
                break
            except EgressRefused as exc:
                raise PermissionDenied(f"The provider URL of endpoint '{endpoint}' is refused by Podium's egress "
                                       f"policy: {exc}") from None
            except aiohttp.ClientError as exc:
                failure: PodiumError = BadGateway(f"Provider {target.provider} is unreachable for endpoint "
                                                  f"'{endpoint}' ({type(exc).__name__})")
                if not isinstance(exc, aiohttp.ClientConnectorError):
                    # The connection broke after the request may have gone out: a retry could bill twice.
                    raise failure from None
            else:
                if 200 <= response.status < 300:
                    return response
                raw = await self._read(endpoint, target, response, max(remaining, 1.0))
                if response.status in (401, 403) and call.on_refused is not None:
                    call.on_refused()
                failure = provider_error(target.provider, endpoint, response.status, raw,
                                         response.headers.get("retry-after"), call.secret, time.time())
                if response.status not in RETRIED_STATUSES:
                    raise failure
            if attempt == retries:
                raise failure
            log.warning("provider %s failed for endpoint %s (%s); retrying", target.provider, endpoint, failure.code)
            await asyncio.sleep(min(FIRST_BACKOFF_S * 2 ** attempt, max(0.0, (deadline - time.monotonic()) / 2)))
        raise DeadlineExceeded(f"Provider {target.provider} did not answer endpoint '{endpoint}' "
                               f"within {timeout_s:g} s")

    async def _read(self, endpoint: str, target: ExternalModelTarget, response: aiohttp.ClientResponse,
                    timeout_s: float) -> bytes:
        try:
            async with asyncio.timeout(timeout_s):
                return await response.read()
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"Provider {target.provider} did not finish answering endpoint '{endpoint}' "
                                   f"within {timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise BadGateway(f"Provider {target.provider} broke off its answer to endpoint '{endpoint}' "
                             f"({type(exc).__name__})") from None
        finally:
            response.release()

    async def _relay(self, endpoint: str, target: ExternalModelTarget, call: ProviderCall,
                     response: aiohttp.ClientResponse, payload: dict, outcome: StreamOutcome,
                     created: int) -> AsyncIterator[bytes]:
        """The provider's events as Podium's `data:` chunks, as they arrive; [DONE] last unless it failed."""
        include_usage = openai_wire.wants_usage_chunk(payload)
        translator = call.translator(created, include_usage) if call.translator else None
        events = _aws_events(response) if call.framing == AWS_EVENT_STREAM else _sse_events(response)
        finished = False
        try:
            async for name, data in events:
                if translator is not None:
                    for chunk in translator.on_event(name, data):
                        yield chunk
                    outcome.usage = translator.usage
                    if translator.error:
                        outcome.status_code, outcome.error = 502, translator.error
                    finished = translator.done
                elif data.strip() == "[DONE]":
                    finished = True
                    yield DONE
                else:
                    chunk, usage, error = openai_wire.relay_chunk(data, include_usage)
                    if usage is not None:
                        outcome.usage = usage
                    if error:
                        outcome.status_code, outcome.error = 502, error
                    if chunk is not None:
                        yield chunk
                if finished:
                    break
            if not finished and not outcome.error:
                if translator is not None:
                    raise aiohttp.ClientPayloadError("the stream ended before the provider finished")
                yield DONE  # an OpenAI-compatible server that just closes the stream: a normal end
        except asyncio.TimeoutError:
            outcome.status_code, outcome.error = 504, f"provider {target.provider} stalled mid-stream"
            yield error_event(f"Provider {target.provider} stopped sending for endpoint '{endpoint}'", "timeout")
        except (aiohttp.ClientError, ValueError, EventStreamError) as exc:
            outcome.status_code, outcome.error = 502, f"provider {target.provider} broke off the stream"
            yield error_event(f"Provider {target.provider} broke off the stream for endpoint '{endpoint}' "
                              f"({type(exc).__name__})", "provider_error")
        finally:
            response.release()


async def _sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, str]]:
    """(event name, data) of each server-sent event; an event the provider did not terminate still completes."""
    parser = SseParser()
    async for line in response.content:
        event = parser.feed(line)
        if event is not None:
            yield event
    event = parser.feed(b"\n")
    if event is not None:
        yield event


async def _aws_events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, str]]:
    """(event name, JSON text) of each message in AWS's binary event-stream framing (Bedrock's streams)."""
    buffer = EventStreamBuffer()
    async for data in response.content.iter_any():
        buffer.add_data(data)
        for message in buffer:
            event = bedrock_wire.event_of(message)
            if event[0]:
                yield event


def _json_object(raw: bytes, provider: str) -> dict:
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise BadGateway(f"Provider {provider} answered with something other than a JSON object")
    return answer
