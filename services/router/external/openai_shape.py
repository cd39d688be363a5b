"""The OpenAI shape Podium answers in, built from what any provider said, and the caller's request read back
out of it. Pure.

For the providers whose wire format is not OpenAI's (Bedrock's model families, Vertex AI's Gemini, Cohere):
`turns` reads the chat messages (or the completions prompt) as plain-text turns, `answer` / `embeddings`
build the final JSON, and `TextStream` the `data:` chunks of a streamed answer, ending in `data: [DONE]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from services.common.errors import InvalidParameter
from services.router.external import openai_wire
from services.router.external.replies import Usage
from services.router.external.sse import DONE, data_event, error_event

CHAT, COMPLETIONS, EMBEDDINGS = "llm/v1/chat", "llm/v1/completions", "llm/v1/embeddings"
SYSTEM_ROLES = ("system", "developer")


@dataclass(frozen=True)
class Turns:
    system: str                         # the system prompt ("" when none)
    turns: tuple[tuple[str, str], ...]  # (user | assistant, text), in order


def turns(task: str, payload: dict, provider: str) -> Turns:
    """The request's conversation as plain text: chat messages, or a completions prompt as one user turn."""
    if payload.get("n") not in (None, 1):
        raise InvalidParameter(f"n must be 1: provider {provider} answers with one choice")
    if task == COMPLETIONS:
        prompt = payload["prompt"]
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise InvalidParameter(f"prompt must be a string (provider {provider} completes one prompt per request)")
        return Turns("", (("user", prompt),))
    system: list[str] = []
    out: list[tuple[str, str]] = []
    for i, message in enumerate(payload["messages"]):
        role = message.get("role")
        text = plain_text(message.get("content"), f"messages[{i}].content", provider)
        if role in SYSTEM_ROLES:
            system.append(text)
        elif role in ("user", "assistant"):
            out.append((role, text))
        else:
            raise InvalidParameter(f"messages[{i}].role '{role}' is not available with provider {provider} "
                                   "(use system, user or assistant)")
    if not out:
        raise InvalidParameter("messages must hold at least one user message")
    return Turns("\n\n".join(system), tuple(out))


def plain_text(content: Any, field: str, provider: str) -> str:
    """OpenAI content (a string, or text parts) as plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise InvalidParameter(f"{field}: only text parts are available with provider {provider}")
            parts.append(part["text"])
        return "".join(parts)
    raise InvalidParameter(f"{field} must be a string or an array of text parts")


def stop_list(payload: dict) -> list[str]:
    stop = payload.get("stop")
    if not stop:
        return []
    return [stop] if isinstance(stop, str) else [str(s) for s in stop]


def max_tokens(payload: dict) -> int | None:
    value = payload.get("max_tokens") or payload.get("max_completion_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def embedding_inputs(payload: dict) -> list[str]:
    value = payload["input"]
    inputs = [value] if isinstance(value, str) else value
    if not (isinstance(inputs, list) and all(isinstance(text, str) for text in inputs)):
        raise InvalidParameter("input must be a string or an array of strings")
    return inputs


def usage_json(usage: Usage) -> dict:
    return {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens}


def answer(task: str, text: str, finish: str, usage: Usage, *, answer_id: str, model: str,
           created: int) -> tuple[bytes, Usage]:
    """chat.completion / text_completion with one choice, and its usage."""
    if task == COMPLETIONS:
        choice = {"index": 0, "text": text, "finish_reason": finish, "finishReason": finish, "logprobs": None}
        kind = "text_completion"
    else:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                  "finishReason": finish, "logprobs": None}
        kind = "chat.completion"
    body = {"id": answer_id, "object": kind, "created": created, "model": model, "choices": [choice],
            "usage": usage_json(usage)}
    return orjson.dumps(body), usage


def embeddings(vectors: list[list[float]], input_tokens: int, model: str, payload: dict) -> tuple[bytes, Usage]:
    """The OpenAI embeddings list (base64 when the caller asked for it), and its usage."""
    body = {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": input_tokens, "total_tokens": input_tokens}}
    return openai_wire.finish_response(EMBEDDINGS, body, payload)


class TextStream:
    """A provider's text pieces as OpenAI stream chunks; translators feed it and keep `usage`/`error`/`done`."""

    def __init__(self, task: str, created: int, include_usage: bool, model: str = "", stream_id: str = ""):
        self.task, self.created, self.include_usage = task, created, include_usage
        self.model, self.stream_id = model, stream_id
        self.usage = Usage()
        self.error = ""
        self.done = False
        self._started = False

    def text(self, piece: str) -> list[bytes]:
        out = self._start()
        if piece:
            out.append(self._chunk({"content": piece}, None))
        return out

    def finish(self, finish: str) -> list[bytes]:
        """The last chunks: the finish reason, the usage chunk if asked for, then [DONE]."""
        self.done = True
        out = self._start() + [self._chunk({}, finish)]
        if self.include_usage:
            out.append(data_event({"id": self.stream_id, "object": self._object(), "created": self.created,
                                   "model": self.model, "choices": [], "usage": usage_json(self.usage)}))
        return out + [DONE]

    def fail(self, provider: str, message: str, error_type: str = "provider_error") -> list[bytes]:
        self.error, self.done = message or f"provider {provider} failed mid-stream", True
        return [error_event(f"provider {provider}: {self.error}", error_type)]

    def _start(self) -> list[bytes]:
        if self._started or self.task != CHAT:
            self._started = True
            return []
        self._started = True
        return [self._chunk({"role": "assistant", "content": ""}, None)]

    def _object(self) -> str:
        return "text_completion" if self.task == COMPLETIONS else "chat.completion.chunk"

    def _chunk(self, delta: dict, finish: str | None) -> bytes:
        if self.task == COMPLETIONS:
            choice = {"index": 0, "text": delta.get("content", ""), "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return data_event({"id": self.stream_id, "object": self._object(), "created": self.created,
                           "model": self.model, "choices": [choice]})
