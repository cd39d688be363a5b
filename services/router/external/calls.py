"""The HTTP call each provider needs for one request: URL, headers (keys, tokens, signatures) and body, and how
its answer and stream turn back into the OpenAI shape. The wire formats are in the `*_wire.py` modules;
this opens the endpoint's secrets and fetches access tokens where a provider needs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import orjson
from yarl import URL

from services.common.errors import PermissionDenied
from services.common.gateway_routes import ExternalModelTarget
from services.router.external import anthropic_wire, bedrock_wire, cohere_wire, openai_wire, vertex_wire
from services.router.external.access_tokens import AccessTokens
from services.router.external.credentials import Credentials
from services.router.external.replies import Usage

SSE, AWS_EVENT_STREAM = "sse", "aws-event-stream"


class Translator(Protocol):
    usage: Usage
    error: str
    done: bool

    def on_event(self, name: str, data: str) -> list[bytes]: ...


@dataclass
class ProviderCall:
    url: URL
    body: bytes
    headers: dict[str, str]
    secret: str                                              # cut out of any error message the provider sends
    # (the provider's JSON answer, created, the answer's headers) → the OpenAI shape, and its usage
    answer: Callable[[dict, int, Mapping[str, str]], tuple[bytes, Usage]]
    translator: Callable[[int, bool], Translator] | None     # (created, include_usage); None: OpenAI's own events
    framing: str = SSE
    on_refused: Callable[[], None] | None = None             # the provider answered 401/403


class ProviderCalls:
    def __init__(self, credentials: Credentials, tokens: AccessTokens):
        self._credentials = credentials
        self._tokens = tokens

    async def build(self, endpoint: str, target: ExternalModelTarget, payload: dict, headers: dict[str, str],
                    timeout_s: float) -> ProviderCall:
        """`headers`: what every call carries; the provider's auth and content type are added here."""
        task, is_stream = target.task, payload.get("stream") is True
        headers = {**headers, "content-type": "application/json"}
        provider = target.provider
        if provider == "amazon-bedrock":
            return await self._bedrock(endpoint, target, payload, headers, is_stream)
        if provider == "google-cloud-vertex-ai":
            return await self._vertex(endpoint, target, payload, headers, is_stream, timeout_s)
        key = await self._credentials.key_for(endpoint, target)
        if provider == "anthropic":
            return _json_call(target.api_base + anthropic_wire.MESSAGES_PATH,
                              anthropic_wire.messages_request(target.name, task, payload),
                              {**headers, "anthropic-version": anthropic_wire.ANTHROPIC_VERSION,
                               target.auth_header: key}, key,
                              lambda answer, created: anthropic_wire.to_openai_response(task, answer, created),
                              lambda created, usage: anthropic_wire.StreamTranslator(task, created, usage))
        if provider == "cohere":
            return _json_call(target.api_base + cohere_wire.PATHS[task],
                              cohere_wire.request_body(target.name, task, payload),
                              {**headers, "authorization": f"Bearer {key}"}, key,
                              lambda answer, created: cohere_wire.to_openai(target.name, task, answer, payload, created),
                              lambda created, usage: cohere_wire.StreamTranslator(target.name, task, created, usage))
        body = openai_wire.provider_request(target.name, task, payload)
        refused = None
        if provider == "databricks-model-serving":
            # A serving endpoint is named by its URL; its own model field would be taken as a parameter.
            url = f"{target.api_base}/serving-endpoints/{quote(target.name, safe='')}/invocations"
            body.pop("model", None)
        elif target.options.get("openai_api_type") in ("azure", "azuread"):
            url = (f"{target.api_base}/openai/deployments/{quote(target.options['openai_deployment_name'], safe='')}"
                   f"{openai_wire.PATHS[task]}?{urlencode({'api-version': target.options['openai_api_version']})}")
            if "microsoft_entra_client_id" in target.options:
                key = await self._entra_token(endpoint, target, timeout_s)
                refused = partial(self._tokens.forget, key)
        else:
            url = target.api_base + openai_wire.PATHS[task]
        if target.organization:
            headers["openai-organization"] = target.organization
        auth_header = target.auth_header or "authorization"   # an Entra ID token goes as a bearer token
        if key:
            headers[auth_header] = f"Bearer {key}" if auth_header == "authorization" else key
        call = _json_call(url, body, headers, key, lambda answer, created: openai_wire.finish_response(
            task, answer, payload), None)
        call.on_refused = refused
        return call

    async def _entra_token(self, endpoint: str, target: ExternalModelTarget, timeout_s: float) -> str:
        secret = await self._secret(endpoint, target, "microsoft_entra_client_secret")
        options = target.options
        return await self._tokens.entra(endpoint, options["microsoft_entra_authority_host"],
                                        options["microsoft_entra_tenant_id"], options["microsoft_entra_client_id"],
                                        secret, target.may_reach_private, timeout_s)

    async def _bedrock(self, endpoint: str, target: ExternalModelTarget, payload: dict, headers: dict[str, str],
                       is_stream: bool) -> ProviderCall:
        family, task = target.options["bedrock_provider"], target.task
        access_key_id = await self._secret(endpoint, target, "aws_access_key_id")
        secret_access_key = await self._secret(endpoint, target, "aws_secret_access_key")
        body = orjson.dumps(bedrock_wire.request_body(family, target.name, task, payload))
        url = target.api_base + bedrock_wire.invoke_path(target.name, is_stream)
        headers["accept"] = "application/vnd.amazon.eventstream" if is_stream else "application/json"
        signed = bedrock_wire.sign(url, body, headers, access_key_id, secret_access_key, target.options["aws_region"])
        return ProviderCall(
            URL(url, encoded=True), body, signed, secret_access_key,
            lambda answer, created, answer_headers: bedrock_wire.to_openai(
                family, target.name, task, answer, payload, created, bedrock_wire.header_usage(answer_headers)),
            lambda created, usage: bedrock_wire.StreamTranslator(family, target.name, task, created, usage),
            AWS_EVENT_STREAM)

    async def _vertex(self, endpoint: str, target: ExternalModelTarget, payload: dict, headers: dict[str, str],
                      is_stream: bool, timeout_s: float) -> ProviderCall:
        task, options = target.task, target.options
        secret = await self._secret(endpoint, target, "private_key")
        try:
            info = vertex_wire.service_account(secret)
        except ValueError as exc:
            raise PermissionDenied(f"The credentials configured for endpoint '{endpoint}' cannot be used: {exc}") \
                from None
        token = await self._tokens.google(endpoint, info["client_email"], secret,
                                          lambda now_s: vertex_wire.token_request(info, now_s),
                                          target.may_reach_private, timeout_s)
        url = target.api_base + vertex_wire.path(options["project_id"], options["region"], target.name, task, is_stream)
        call = _json_call(url, vertex_wire.request_body(task, payload),
                          {**headers, "authorization": f"Bearer {token}"}, token,
                          lambda answer, created: vertex_wire.to_openai(target.name, task, answer, payload, created),
                          lambda created, usage: vertex_wire.StreamTranslator(target.name, task, created, usage))
        call.on_refused = partial(self._tokens.forget, token)
        return call

    async def _secret(self, endpoint: str, target: ExternalModelTarget, field: str) -> str:
        value = await self._credentials.secret_for(endpoint, target.secrets.get(field, ""), field)
        if not value:
            raise PermissionDenied(f"The credentials configured for endpoint '{endpoint}' lack {field}")
        return value


def _json_call(url: str, body: dict[str, Any], headers: dict[str, str], secret: str,
               answer: Callable[[dict, int], tuple[bytes, Usage]],
               translator: Callable[[int, bool], Translator] | None) -> ProviderCall:
    return ProviderCall(URL(url), orjson.dumps(body), headers, secret,
                        lambda provider_answer, created, _headers: answer(provider_answer, created), translator)
