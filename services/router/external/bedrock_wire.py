"""Amazon Bedrock's runtime API (InvokeModel) ↔ the OpenAI shape, for the model families Podium serves. Pure.

Bedrock frames each family's own body: `anthropic` (Claude: Anthropic's messages body with
`anthropic_version: bedrock-2023-05-31` and no `model`), `amazon` (Titan: `inputText` and
`textGenerationConfig`; Titan embeddings take one `inputText` per call), `meta` (Llama: one `prompt` in
Llama 3's chat template, `max_gen_len`), `cohere` (Command R: `message`, `chat_history`, `preamble`;
Embed: `texts` and `input_type`) and `ai21labs` (Jamba: OpenAI-style `messages`, answers and chunks). Token counts come from Bedrock's `X-Amzn-Bedrock-*-Token-Count`
headers where the body has none, and from the last stream chunk's `amazon-bedrock-invocationMetrics`. Calls go to `POST /model/<model id>/invoke` (streams:
`/invoke-with-response-stream`, answered in AWS's binary event-stream framing whose `chunk` events carry
the family's JSON base64-encoded in `bytes`), signed with SigV4 by botocore, as the AWS SDKs sign them.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as AwsCredentials
from botocore.eventstream import EventStreamMessage

from services.common.errors import InvalidParameter
from services.router.external import anthropic_wire, cohere_wire, openai_shape
from services.router.external.openai_shape import CHAT, EMBEDDINGS, TextStream
from services.router.external.replies import Usage

SERVICE = "bedrock"
ANTHROPIC_VERSION = "bedrock-2023-05-31"
PROVIDER = "amazon-bedrock"
TITAN_FINISH = {"FINISH": "stop", "STOP_CRITERIA_MET": "stop", "LENGTH": "length", "CONTENT_FILTERED": "content_filter"}
LLAMA_FINISH = {"stop": "stop", "length": "length"}


def invoke_path(model: str, is_stream: bool) -> str:
    """The model id percent-encoded as one path segment (ids hold ':'), as the AWS SDKs send it."""
    return f"/model/{quote(model, safe='')}/" + ("invoke-with-response-stream" if is_stream else "invoke")


def request_body(family: str, model: str, task: str, payload: dict) -> dict:
    """The InvokeModel body for `family` (anthropic | amazon | meta)."""
    if task == EMBEDDINGS and family == "cohere":
        extra = payload.get("extra_params") if isinstance(payload.get("extra_params"), dict) else {}
        return {"texts": openai_shape.embedding_inputs(payload), "input_type": "search_document", **extra}
    if task == EMBEDDINGS:
        inputs = openai_shape.embedding_inputs(payload)
        if len(inputs) != 1:
            raise InvalidParameter(f"provider {PROVIDER} ({family}) embeds one input per request")
        return {"inputText": inputs[0]}
    if family == "anthropic":
        body = anthropic_wire.messages_request(model, task, payload)
        body.pop("model", None)
        body.pop("stream", None)   # the path says whether it streams
        body.pop("metadata", None)  # Bedrock's Claude refuses Anthropic's metadata field
        return {"anthropic_version": ANTHROPIC_VERSION, **body}
    conversation = openai_shape.turns(task, payload, PROVIDER)
    limit, temperature, top_p = openai_shape.max_tokens(payload), payload.get("temperature"), payload.get("top_p")
    if family == "cohere":
        return _command_r(conversation, payload, limit, temperature, top_p)
    if family == "ai21labs":
        return _jamba(conversation, payload, limit)
    if family == "amazon":
        config: dict[str, Any] = {}
        if limit:
            config["maxTokenCount"] = limit
        if isinstance(temperature, (int, float)):
            config["temperature"] = min(1.0, temperature / 2)   # OpenAI's 0-2 onto Titan's 0-1
        if isinstance(top_p, (int, float)):
            config["topP"] = top_p
        if openai_shape.stop_list(payload):
            config["stopSequences"] = openai_shape.stop_list(payload)
        text = _titan_prompt(conversation) if task == CHAT else conversation.turns[0][1]
        return {"inputText": text, **({"textGenerationConfig": config} if config else {})}
    body = {"prompt": _llama_prompt(conversation) if task == CHAT else conversation.turns[0][1]}
    if limit:
        body["max_gen_len"] = limit
    if isinstance(temperature, (int, float)):
        body["temperature"] = min(1.0, temperature / 2)
    if isinstance(top_p, (int, float)):
        body["top_p"] = top_p
    return body


def _command_r(conversation: openai_shape.Turns, payload: dict, limit: int | None, temperature: Any,
               top_p: Any) -> dict:
    """Cohere Command R on Bedrock: the last user turn as `message`, the turns before it as `chat_history`."""
    *history, (role, message) = conversation.turns
    if role != "user":
        raise InvalidParameter(f"the last message must be the user's with provider {PROVIDER} (cohere)")
    body: dict[str, Any] = {"message": message}
    if history:
        body["chat_history"] = [{"role": "USER" if r == "user" else "CHATBOT", "message": text} for r, text in history]
    if conversation.system:
        body["preamble"] = conversation.system
    if limit:
        body["max_tokens"] = limit
    if isinstance(temperature, (int, float)):
        body["temperature"] = min(1.0, temperature / 2)
    if isinstance(top_p, (int, float)):
        body["p"] = top_p
    if payload.get("top_k") is not None:
        body["k"] = payload["top_k"]
    if openai_shape.stop_list(payload):
        body["stop_sequences"] = openai_shape.stop_list(payload)
    return body


def _jamba(conversation: openai_shape.Turns, payload: dict, limit: int | None) -> dict:
    messages = [{"role": "system", "content": conversation.system}] if conversation.system else []
    body: dict[str, Any] = {"messages": messages + [{"role": r, "content": t} for r, t in conversation.turns]}
    if limit:
        body["max_tokens"] = limit
    for same in ("temperature", "top_p"):
        if isinstance(payload.get(same), (int, float)):
            body[same] = payload[same]
    if openai_shape.stop_list(payload):
        body["stop"] = openai_shape.stop_list(payload)
    return body


def _jamba_choice(answer: dict, key: str) -> tuple[str, str | None]:
    """(text, finish reason) of the first choice of a Jamba answer (key "message") or chunk (key "delta")."""
    choices = answer.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    content = (choice.get(key) or {}).get("content")
    return (content if isinstance(content, str) else ""), choice.get("finish_reason")


def _titan_prompt(conversation: openai_shape.Turns) -> str:
    lines = [conversation.system] if conversation.system else []
    lines += [f"{'User' if role == 'user' else 'Bot'}: {text}" for role, text in conversation.turns]
    return "\n".join(lines + ["Bot:"])


def _llama_prompt(conversation: openai_shape.Turns) -> str:
    """Llama 3's chat template, which Bedrock's Llama models expect in `prompt`."""
    def turn(role: str, text: str) -> str:
        return f"<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>"
    parts = ["<|begin_of_text|>"]
    if conversation.system:
        parts.append(turn("system", conversation.system))
    parts += [turn(role, text) for role, text in conversation.turns]
    return "".join(parts) + "<|start_header_id|>assistant<|end_header_id|>\n\n"


def header_usage(headers: Mapping[str, str]) -> Usage | None:
    """The token counts Bedrock reports in every InvokeModel answer's headers; None when absent."""
    counts = [headers.get(f"X-Amzn-Bedrock-{kind}-Token-Count", "") for kind in ("Input", "Output")]
    if not all(c.isdigit() for c in counts):
        return None
    return Usage(int(counts[0]), int(counts[1]))


def to_openai(family: str, model: str, task: str, answer: dict, payload: dict, created: int,
              reported: Usage | None = None) -> tuple[bytes, Usage]:
    """An InvokeModel answer in the OpenAI shape, and its usage (`reported`: Bedrock's header counts)."""
    if task == EMBEDDINGS:
        vectors = answer.get("embeddings") if family == "cohere" else [answer.get("embedding")]
        vectors = [v if isinstance(v, list) else [] for v in (vectors if isinstance(vectors, list) else [])]
        tokens = reported.input_tokens if reported else _int(answer.get("inputTextTokenCount"))
        return openai_shape.embeddings(vectors, tokens, model, payload)
    if family == "anthropic":
        return anthropic_wire.to_openai_response(task, answer, created)
    if family == "ai21labs":
        text, finish = _jamba_choice(answer, "message")
        return openai_shape.answer(task, text, finish or "stop", Usage.of(answer.get("usage")),
                                   answer_id=str(answer.get("id", "")), model=model, created=created)
    if family == "cohere":
        finish = cohere_wire.FINISH.get(str(answer.get("finish_reason")), "stop")
        return openai_shape.answer(task, str(answer.get("text", "")), finish, reported or Usage(),
                                   answer_id=str(answer.get("response_id", "")), model=model, created=created)
    if family == "amazon":
        results = answer.get("results") or [{}]
        result = results[0] if isinstance(results[0], dict) else {}
        usage = Usage(_int(answer.get("inputTextTokenCount")), _int(result.get("tokenCount")))
        finish = TITAN_FINISH.get(str(result.get("completionReason")), "stop")
        return openai_shape.answer(task, str(result.get("outputText", "")), finish, usage,
                                   answer_id="", model=model, created=created)
    usage = Usage(_int(answer.get("prompt_token_count")), _int(answer.get("generation_token_count")))
    finish = LLAMA_FINISH.get(str(answer.get("stop_reason")), "stop")
    return openai_shape.answer(task, str(answer.get("generation", "")), finish, usage,
                               answer_id="", model=model, created=created)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def sign(url: str, body: bytes, headers: dict[str, str], access_key_id: str, secret_access_key: str,
         region: str) -> dict[str, str]:
    """`headers` plus SigV4's `X-Amz-Date` and `Authorization` for POSTing `body` to `url`."""
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(AwsCredentials(access_key_id, secret_access_key), SERVICE, region).add_auth(request)
    return dict(request.headers.items())


def event_of(message: EventStreamMessage) -> tuple[str, str]:
    """One event-stream message as (event name, JSON text): a `chunk`'s decoded bytes, or an exception."""
    headers = message.headers
    if headers.get(":message-type") == "event" and headers.get(":event-type") == "chunk":
        try:
            return "chunk", base64.b64decode(orjson.loads(message.payload)["bytes"]).decode()
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return "exception", '{"message": "an unreadable chunk"}'
    if headers.get(":message-type") in ("exception", "error"):
        kind = headers.get(":exception-type") or headers.get(":error-code") or "exception"
        try:
            detail = orjson.loads(message.payload)
        except orjson.JSONDecodeError:
            detail = {}
        message_text = detail.get("message") if isinstance(detail, dict) else None
        return "exception", orjson.dumps({"type": kind, "message": str(message_text or kind)}).decode()
    return "", ""


class StreamTranslator:
    """Bedrock stream events (decoded by `event_of`) in, OpenAI `data:` chunks out."""

    def __init__(self, family: str, model: str, task: str, created: int, include_usage: bool):
        self._family = family
        self._anthropic = (anthropic_wire.StreamTranslator(task, created, include_usage)
                           if family == "anthropic" else None)
        self._text = TextStream(task, created, include_usage, model=model)

    @property
    def usage(self) -> Usage:
        return self._anthropic.usage if self._anthropic else self._text.usage

    @property
    def error(self) -> str:
        return self._anthropic.error if self._anthropic else self._text.error

    @property
    def done(self) -> bool:
        return self._anthropic.done if self._anthropic else self._text.done

    def on_event(self, name: str, data: str) -> list[bytes]:
        if name == "exception":
            detail = orjson.loads(data)
            if self._anthropic:
                self._anthropic.error, self._anthropic.done = detail["message"], True
            return self._text.fail(PROVIDER, f"{detail['type']}: {detail['message']}")
        if name != "chunk":
            return []
        if self._anthropic:
            return self._anthropic.on_event("", data)
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(chunk, dict):
            return []
        if self._family == "ai21labs":
            piece, reason = _jamba_choice(chunk, "delta")
            finishes = {"stop": "stop", "length": "length"}
            if isinstance(chunk.get("usage"), dict):
                self._text.usage = Usage.of(chunk["usage"])
        elif self._family == "cohere":
            piece = chunk.get("text") if chunk.get("event_type") == "text-generation" else ""
            reason, finishes = chunk.get("finish_reason") if chunk.get("is_finished") else None, cohere_wire.FINISH
        elif self._family == "amazon":
            piece, reason, finishes = chunk.get("outputText"), chunk.get("completionReason"), TITAN_FINISH
            self._text.usage = Usage(_int(chunk.get("inputTextTokenCount")) or self._text.usage.input_tokens,
                                     _int(chunk.get("totalOutputTextTokenCount")) or self._text.usage.output_tokens)
        else:
            piece, reason, finishes = chunk.get("generation"), chunk.get("stop_reason"), LLAMA_FINISH
            self._text.usage = Usage(_int(chunk.get("prompt_token_count")) or self._text.usage.input_tokens,
                                     max(self._text.usage.output_tokens, _int(chunk.get("generation_token_count"))))
        metrics = chunk.get("amazon-bedrock-invocationMetrics")
        if isinstance(metrics, dict):   # the last chunk's totals are the ones Bedrock bills
            self._text.usage = Usage(_int(metrics.get("inputTokenCount")), _int(metrics.get("outputTokenCount")))
        out = self._text.text(piece if isinstance(piece, str) else "")
        if reason:
            out += self._text.finish(finishes.get(str(reason), "stop"))
        return out
