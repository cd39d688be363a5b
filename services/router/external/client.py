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
endpoint whose provider is a Podium router fails after one hop instead of looping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson

from services.common.egress import EgressPolicy, egress_refusal
from services.common.errors import BadGateway, DeadlineExceeded, InvalidParameter, PermissionDenied, PodiumError
from services.common.gateway_routes import ExternalModelTarget
from services.router.external import anthropic_wire, openai_wire
from services.router.external.credentials import Credentials
from services.router.external.provider_errors import provider_error
from services.router.external.replies import ProviderReply, ProviderStream, StreamOutcome
from services.router.external.sse import DONE, SseParser, error_event

log = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({500, 502, 503, 504, 529})  # 529: Anthropic's "overloaded"
FIRST_BACKOFF_S = 0.25
HOP_HEADER = "x-podium-hop"   # set on every provider call; a Podium router refuses a request that carries it


class EgressRefused(Exception):
    """Every address the provider's host resolved to is refused by the egress policy."""


class EgressConnector(aiohttp.TCPConnector):
    """A connector that drops the addresses the egress policy refuses, after resolving (IP literals included)."""

    def __init__(self, policy: EgressPolicy, may_reach_private: bool, **kwargs):
        super().__init__(**kwargs)
        self._policy = policy
        self._may_reach_private = may_reach_private

    async def _resolve_host(self, host, port, traces=None):
        resolved = await super()._resolve_host(host, port, traces=traces)
        allowed, reason = [], None
        for result in resolved:
            refusal = egress_refusal(result["host"], result["port"], self._may_reach_private, self._policy)
            if refusal is None:
                allowed.append(result)
            else:
                reason = reason or refusal
        if not allowed:
            raise EgressRefused(reason or "it resolved to no address")
        return allowed


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
        key = await self._credentials.key_for(endpoint, target)
        if target.provider == "anthropic":
            url = target.api_base + anthropic_wire.MESSAGES_PATH
            body = anthropic_wire.messages_request(target.name, task, payload)
            headers = {"anthropic-version": anthropic_wire.ANTHROPIC_VERSION}
        else:
            url = target.api_base + openai_wire.PATHS[task]
            body = openai_wire.provider_request(target.name, task, payload)
            headers = {"openai-organization": target.organization} if target.organization else {}
        if key:
            headers[target.auth_header] = f"Bearer {key}" if target.auth_header == "authorization" else key
        headers["content-type"] = "application/json"
        headers[HOP_HEADER] = "1"
        timeout_s = target.timeout_s or self._timeout_s
        response = await self._send(endpoint, target, url, orjson.dumps(body), headers, key, timeout_s, is_stream)
        created = int(time.time())
        if is_stream:
            outcome = StreamOutcome()
            return ProviderStream(self._relay(endpoint, target, response, payload, outcome, created), outcome)
        answer = _json_object(await self._read(endpoint, target, response, timeout_s), target.provider)
        if target.provider == "anthropic":
            return ProviderReply(*anthropic_wire.to_openai_response(task, answer, created))
        return ProviderReply(*openai_wire.finish_response(task, answer, payload))

    async def _send(self, endpoint: str, target: ExternalModelTarget, url: str, body: bytes, headers: dict,
                    key: str, timeout_s: float, is_stream: bool) -> aiohttp.ClientResponse:
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
                response = await session.post(url, data=body, headers=headers, timeout=timeout)
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
                failure = provider_error(target.provider, endpoint, response.status, raw,
                                         response.headers.get("retry-after"), key, time.time())
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

    async def _relay(self, endpoint: str, target: ExternalModelTarget, response: aiohttp.ClientResponse,
                     payload: dict, outcome: StreamOutcome, created: int) -> AsyncIterator[bytes]:
        """The provider's events as Podium's `data:` chunks, as they arrive; [DONE] last unless it failed."""
        parser = SseParser()
        include_usage = openai_wire.wants_usage_chunk(payload)
        translator = (anthropic_wire.StreamTranslator(target.task, created, include_usage)
                      if target.provider == "anthropic" else None)
        finished = False
        try:
            async for line in _lines(response):
                event = parser.feed(line)
                if event is None:
                    continue
                name, data = event
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
        except (aiohttp.ClientError, ValueError) as exc:
            outcome.status_code, outcome.error = 502, f"provider {target.provider} broke off the stream"
            yield error_event(f"Provider {target.provider} broke off the stream for endpoint '{endpoint}' "
                              f"({type(exc).__name__})", "provider_error")
        finally:
            response.release()


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The body's lines, then one blank line: an event the provider did not terminate still completes."""
    async for line in response.content:
        yield line
    yield b"\n"


def _json_object(raw: bytes, provider: str) -> dict:
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise BadGateway(f"Provider {provider} answered with something other than a JSON object")
    return answer
