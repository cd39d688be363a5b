"""Cohere's v2 API (`/v2/chat`, `/v2/embed`) ↔ the OpenAI shape. Pure.

Chat keeps the roles (system, user, assistant) with plain-text content; a completions prompt is one user
turn (Cohere retired its generate API). `top_p` / `top_k` / `stop` become `p` / `k` / `stop_sequences`.
Answers: the text parts joined, `finish_reason` (COMPLETE, MAX_TOKENS, ...) mapped, `usage.tokens`
renamed. Streams are Cohere's named events (`message-start`, `content-delta`, `message-end`).
Embeddings ask for floats with `input_type` `search_document` unless `extra_params` names another.
"""

from __future__ import annotations

from typing import Any

import orjson

from services.router.external import openai_shape
from services.router.external.openai_shape import EMBEDDINGS, TextStream
from services.router.external.replies import Usage

PROVIDER = "cohere"
PATHS = {"llm/v1/chat": "/v2/chat", "llm/v1/completions": "/v2/chat", EMBEDDINGS: "/v2/embed"}
FINISH = {"COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length", "TOOL_CALL": "tool_calls",
          "ERROR": "stop", "ERROR_TOXIC": "content_filter"}
DEFAULT_INPUT_TYPE = "search_document"


def request_body(model: str, task: str, payload: dict) -> dict:
    extra = payload.get("extra_params") if isinstance(payload.get("extra_params"), dict) else {}
    if task == EMBEDDINGS:
        return {"model": model, "texts": openai_shape.embedding_inputs(payload), "input_type": DEFAULT_INPUT_TYPE,
                "embedding_types": ["float"], **extra}
    conversation = openai_shape.turns(task, payload, PROVIDER)
    messages = [{"role": "system", "content": conversation.system}] if conversation.system else []
    messages += [{"role": role, "content": text} for role, text in conversation.turns]
    body: dict[str, Any] = {"model": model, "messages": messages}
    if openai_shape.max_tokens(payload):
        body["max_tokens"] = openai_shape.max_tokens(payload)
    for ours, theirs in (("temperature", "temperature"), ("top_p", "p"), ("top_k", "k"), ("seed", "seed"),
                         ("frequency_penalty", "frequency_penalty"), ("presence_penalty", "presence_penalty")):
        if payload.get(ours) is not None:
            body[theirs] = payload[ours]
    if openai_shape.stop_list(payload):
        body["stop_sequences"] = openai_shape.stop_list(payload)
    if payload.get("stream"):
        body["stream"] = True
    return {**body, **extra}


def _usage(usage: Any) -> Usage:
    tokens = (usage or {}).get("tokens") if isinstance(usage, dict) else None
    if not isinstance(tokens, dict):
        tokens = (usage or {}).get("billed_units") if isinstance(usage, dict) else None
    tokens = tokens if isinstance(tokens, dict) else {}
    return Usage(int(tokens.get("input_tokens") or 0), int(tokens.get("output_tokens") or 0))


def to_openai(model: str, task: str, answer: dict, payload: dict, created: int) -> tuple[bytes, Usage]:
    if task == EMBEDDINGS:
        vectors = (answer.get("embeddings") or {}).get("float") if isinstance(answer.get("embeddings"), dict) \
            else answer.get("embeddings")
        billed = ((answer.get("meta") or {}).get("billed_units") or {}).get("input_tokens") or 0
        return openai_shape.embeddings(list(vectors or []), int(billed), model, payload)
    content = (answer.get("message") or {}).get("content") or []
    text = "".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text")
    finish = FINISH.get(str(answer.get("finish_reason")), "stop")
    return openai_shape.answer(task, text, finish, _usage(answer.get("usage")), answer_id=str(answer.get("id", "")),
                               model=model, created=created)


class StreamTranslator:
    """Cohere's v2 stream events in, OpenAI `data:` chunks out."""

    def __init__(self, model: str, task: str, created: int, include_usage: bool):
        self._text = TextStream(task, created, include_usage, model=model)

    usage = property(lambda self: self._text.usage)
    error = property(lambda self: self._text.error)
    done = property(lambda self: self._text.done)

    def on_event(self, name: str, data: str) -> list[bytes]:
        try:
            event = orjson.loads(data) if data else {}
        except orjson.JSONDecodeError:
            return []
        event = event if isinstance(event, dict) else {}
        kind = event.get("type") or name
        if kind == "message-start":
            self._text.stream_id = str(event.get("id", ""))
            return self._text.text("")
        if kind == "content-delta":
            content = ((event.get("delta") or {}).get("message") or {}).get("content") or {}
            return self._text.text(content.get("text", "") if isinstance(content, dict) else "")
        if kind == "message-end":
            delta = event.get("delta") or {}
            self._text.usage = _usage(delta.get("usage"))
            return self._text.finish(FINISH.get(str(delta.get("finish_reason")), "stop"))
        if kind == "error" or "error" in event:
            error = event.get("error")
            message = error.get("message") if isinstance(error, dict) else event.get("message") or error
            return self._text.fail(PROVIDER, str(message or ""))
        return []
