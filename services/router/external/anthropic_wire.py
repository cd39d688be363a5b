"""Anthropic's messages API ↔ the OpenAI shape Podium answers in, both ways. Pure.

Requests: `system` messages become the `system` prompt, `user`/`assistant` turns stay, `stop` becomes
`stop_sequences`, `max_tokens` (required by Anthropic) defaults, and `temperature` is halved (OpenAI's
0–2 onto Anthropic's 0–1, as the MLflow AI gateway does). A completions `prompt` is one user turn.
Answers: text blocks joined, `stop_reason` mapped onto `finish_reason`, `usage` renamed. Streams: the
named events (`message_start`, `content_block_delta`, `message_delta`, `message_stop`, `error`) become
`data:` chunks of `chat.completion.chunk` / `text_completion`, then `data: [DONE]`.
"""

from __future__ import annotations

from typing import Any

import orjson

from services.common.errors import InvalidParameter
from services.router.external.replies import Usage
from services.router.external.sse import DONE, data_event, error_event

ANTHROPIC_VERSION = "2023-06-01"
MESSAGES_PATH = "/v1/messages"
DEFAULT_MAX_TOKENS = 1024
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                "pause_turn": "stop", "refusal": "content_filter"}
SYSTEM_ROLES = ("system", "developer")
CHAT, COMPLETIONS = "llm/v1/chat", "llm/v1/completions"


def messages_request(model: str, task: str, payload: dict) -> dict:
    """The body to POST to `<api_base>/v1/messages`."""
    if task == COMPLETIONS:
        system, messages = "", [{"role": "user", "content": _prompt(payload["prompt"])}]
    else:
        system, messages = _split_system(payload["messages"])
    if payload.get("n") not in (None, 1):
        raise InvalidParameter("n must be 1: provider anthropic answers with one choice")
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": payload.get("max_tokens") or payload.get("max_completion_tokens") or DEFAULT_MAX_TOKENS,
    }
    if system:
        body["system"] = system
    if isinstance(payload.get("temperature"), (int, float)):
        body["temperature"] = payload["temperature"] / 2
    for same in ("top_p", "top_k"):
        if payload.get(same) is not None:
            body[same] = payload[same]
    stop = payload.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if payload.get("user"):
        body["metadata"] = {"user_id": str(payload["user"])}
    if payload.get("stream"):
        body["stream"] = True
    if isinstance(payload.get("extra_params"), dict):
        body.update(payload["extra_params"])
    return body


def _prompt(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    if not isinstance(prompt, str):
        raise InvalidParameter("prompt must be a string (provider anthropic completes one prompt per request)")
    return prompt


def _split_system(messages: list[dict]) -> tuple[str, list[dict]]:
    system: list[str] = []
    turns: list[dict] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        text = _text(message.get("content"), f"messages[{i}].content")
        if role in SYSTEM_ROLES:
            system.append(text)
        elif role in ("user", "assistant"):
            turns.append({"role": role, "content": text})
        else:
            raise InvalidParameter(f"messages[{i}].role '{role}' is not available with provider anthropic "
                                   "(use system, user or assistant)")
    if not turns:
        raise InvalidParameter("messages must hold at least one user message")
    return "\n\n".join(system), turns


def _text(content: Any, field: str) -> str:
    """OpenAI content (a string, or text parts) as plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise InvalidParameter(f"{field}: only text parts are available with provider anthropic")
            parts.append(part["text"])
        return "".join(parts)
    raise InvalidParameter(f"{field} must be a string or an array of text parts")


def _usage(usage: Any) -> Usage:
    if not isinstance(usage, dict):
        return Usage()
    counts = (usage.get(k) for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
    prompt = sum(c for c in counts if isinstance(c, int))
    output = usage.get("output_tokens")
    return Usage(prompt, output if isinstance(output, int) else 0)


def _openai_usage(usage: Usage) -> dict:
    return {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens}


def to_openai_response(task: str, message: dict, created: int) -> tuple[bytes, Usage]:
    """A messages answer as chat.completion / text_completion, and its usage."""
    text = "".join(b.get("text", "") for b in message.get("content") or () if isinstance(b, dict)
                   and b.get("type") == "text")
    finish = STOP_REASONS.get(message.get("stop_reason") or "end_turn", "stop")
    usage = _usage(message.get("usage"))
    if task == COMPLETIONS:
        choice = {"index": 0, "text": text, "finish_reason": finish, "finishReason": finish, "logprobs": None}
        kind = "text_completion"
    else:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                  "finishReason": finish, "logprobs": None}
        kind = "chat.completion"
    answer = {"id": message.get("id", ""), "object": kind, "created": created, "model": message.get("model", ""),
              "choices": [choice], "usage": _openai_usage(usage)}
    return orjson.dumps(answer), usage


class StreamTranslator:
    """Anthropic stream events in, OpenAI `data:` chunks out. Its `usage`, `error`, `done` say how it went."""

    def __init__(self, task: str, created: int, include_usage: bool):
        self._task, self._created, self._include_usage = task, created, include_usage
        self._id, self._model = "", ""
        self._finish = "stop"
        self.usage = Usage()
        self.error = ""
        self.done = False

    def on_event(self, name: str, data: str) -> list[bytes]:
        try:
            event = orjson.loads(data) if data else {}
        except orjson.JSONDecodeError:
            return []
        event = event if isinstance(event, dict) else {}
        kind = event.get("type") or name
        if kind == "message_start":
            message = event.get("message") or {}
            self._id, self._model = message.get("id", ""), message.get("model", "")
            self.usage = _usage(message.get("usage"))
            return [self._chunk({"role": "assistant", "content": ""}, None)] if self._task == CHAT else []
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                return [self._chunk({"content": delta["text"]}, None)]
            return []
        if kind == "message_delta":
            reason = (event.get("delta") or {}).get("stop_reason")
            if reason:
                self._finish = STOP_REASONS.get(reason, "stop")
            usage = event.get("usage") or {}
            if isinstance(usage.get("output_tokens"), int):
                self.usage.output_tokens = usage["output_tokens"]
            if isinstance(usage.get("input_tokens"), int) and usage["input_tokens"]:
                self.usage.input_tokens = _usage(usage).input_tokens
            return []
        if kind == "message_stop":
            self.done = True
            out = [self._chunk({}, self._finish)]
            if self._include_usage:
                out.append(data_event({"id": self._id, "object": self._object(), "created": self._created,
                                       "model": self._model, "choices": [], "usage": _openai_usage(self.usage)}))
            return out + [DONE]
        if kind == "error":
            error = event.get("error") or {}
            self.error = str(error.get("message") or "provider anthropic failed mid-stream")
            self.done = True
            return [error_event(f"provider anthropic: {self.error}", str(error.get("type") or "provider_error"))]
        return []  # ping, content_block_start/stop: nothing to say

    def _object(self) -> str:
        return "text_completion" if self._task == COMPLETIONS else "chat.completion.chunk"

    def _chunk(self, delta: dict, finish: str | None) -> bytes:
        if self._task == COMPLETIONS:
            choice = {"index": 0, "text": delta.get("content", ""), "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return data_event({"id": self._id, "object": self._object(), "created": self._created,
                           "model": self._model, "choices": [choice]})
