"""Google Cloud Vertex AI (Gemini's generateContent, text embeddings' predict) ↔ the OpenAI shape. Pure.

Chat: `system` messages become `systemInstruction`, `assistant` turns the `model` role, sampling fields
go in `generationConfig`. Answers: the first candidate's text parts joined, `finishReason` mapped,
`usageMetadata` renamed. Streams (`:streamGenerateContent?alt=sse`) are `data:` events each holding a
partial answer, the last one with its `finishReason`. Embeddings: `:predict` with one instance per input.

Calls carry an OAuth access token, obtained as Google's service-account flow does: a JWT signed (with
google-auth) by the service account's private key, exchanged at its key's `token_uri`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
from google.auth import crypt, jwt

from services.router.external import openai_shape
from services.router.external.openai_shape import EMBEDDINGS, TextStream
from services.router.external.replies import Usage

PROVIDER = "google-cloud-vertex-ai"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_S = 3600
FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "FINISH_REASON_UNSPECIFIED": "stop", "OTHER": "stop",
          "MALFORMED_FUNCTION_CALL": "stop"}   # the rest (SAFETY, RECITATION, BLOCKLIST, ...) are filters


def path(project_id: str, region: str, model: str, task: str, is_stream: bool) -> str:
    method = "predict" if task == EMBEDDINGS else ("streamGenerateContent?alt=sse" if is_stream else "generateContent")
    return (f"/v1/projects/{quote(project_id, safe='')}/locations/{quote(region, safe='')}/publishers/google/models/"
            f"{quote(model, safe='')}:{method}")


def request_body(task: str, payload: dict) -> dict:
    extra = payload.get("extra_params") if isinstance(payload.get("extra_params"), dict) else {}
    if task == EMBEDDINGS:
        return {"instances": [{"content": text} for text in openai_shape.embedding_inputs(payload)], **extra}
    conversation = openai_shape.turns(task, payload, PROVIDER)
    body: dict[str, Any] = {"contents": [{"role": "model" if role == "assistant" else "user", "parts": [{"text": text}]}
                                         for role, text in conversation.turns]}
    if conversation.system:
        body["systemInstruction"] = {"parts": [{"text": conversation.system}]}
    config: dict[str, Any] = {}
    for ours, theirs in (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK"), ("seed", "seed"),
                         ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty")):
        if payload.get(ours) is not None:
            config[theirs] = payload[ours]
    if openai_shape.max_tokens(payload):
        config["maxOutputTokens"] = openai_shape.max_tokens(payload)
    if openai_shape.stop_list(payload):
        config["stopSequences"] = openai_shape.stop_list(payload)
    if config:
        body["generationConfig"] = config
    return {**body, **extra}


def _usage(metadata: Any) -> Usage:
    metadata = metadata if isinstance(metadata, dict) else {}
    return Usage(int(metadata.get("promptTokenCount") or 0), int(metadata.get("candidatesTokenCount") or 0))


def _candidate(answer: dict) -> tuple[str, str | None]:
    """The first candidate's text and finish reason (None while a stream goes on)."""
    candidates = answer.get("candidates") or [{}]
    candidate = candidates[0] if isinstance(candidates[0], dict) else {}
    parts = (candidate.get("content") or {}).get("parts") or []
    text = "".join(p.get("text", "") for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))
    reason = candidate.get("finishReason")
    return text, (FINISH.get(reason, "content_filter") if reason else None)


def to_openai(model: str, task: str, answer: dict, payload: dict, created: int) -> tuple[bytes, Usage]:
    if task == EMBEDDINGS:
        vectors, tokens = [], 0
        for prediction in answer.get("predictions") or ():
            embedding = (prediction or {}).get("embeddings") or {}
            vectors.append(embedding.get("values") or [])
            tokens += int((embedding.get("statistics") or {}).get("token_count") or 0)
        return openai_shape.embeddings(vectors, tokens, model, payload)
    text, finish = _candidate(answer)
    return openai_shape.answer(task, text, finish or "stop", _usage(answer.get("usageMetadata")),
                               answer_id=str(answer.get("responseId", "")), model=model, created=created)


class StreamTranslator:
    """Gemini's streamed partial answers in, OpenAI `data:` chunks out."""

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
        if not isinstance(event, dict):
            return []
        if isinstance(event.get("error"), dict):
            return self._text.fail(PROVIDER, str(event["error"].get("message") or ""))
        if event.get("usageMetadata"):
            self._text.usage = _usage(event["usageMetadata"])
        text, finish = _candidate(event)
        out = self._text.text(text)
        return out + self._text.finish(finish) if finish else out


def service_account(secret: str) -> dict:
    """The service account's JSON key (as Google issues it); ValueError naming what is missing."""
    try:
        info = orjson.loads(secret)
    except orjson.JSONDecodeError:
        raise ValueError("private_key must hold the service account's JSON key") from None
    if not isinstance(info, dict) or not all(isinstance(info.get(k), str) for k in ("client_email", "private_key")):
        raise ValueError("the service account key lacks client_email or private_key")
    return info


def token_request(info: dict, now_s: int) -> tuple[str, dict[str, str]]:
    """(token URI, form) of the JWT-bearer exchange for an access token, the assertion signed with google-auth."""
    token_uri = info.get("token_uri") or DEFAULT_TOKEN_URI
    signer = crypt.RSASigner.from_service_account_info(info)
    claims = {"iss": info["client_email"], "scope": SCOPE, "aud": token_uri, "iat": now_s,
              "exp": now_s + ASSERTION_LIFETIME_S}
    return token_uri, {"grant_type": JWT_BEARER, "assertion": jwt.encode(signer, claims).decode()}
