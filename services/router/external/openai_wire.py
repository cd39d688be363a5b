"""The OpenAI wire format, for the `openai` and `custom` providers (any OpenAI-compatible server). Pure.

Requests pass through in the shape callers sent, with `model` set to the provider's model name and
Databricks-only fields (`client_request_id`, `usage_context`) dropped; `extra_params` merge into the body,
as Databricks does. Answers keep OpenAI's shape, plus `finishReason` beside `finish_reason` (the
databricks-sdk reads only the camel-case one, reference §7.7). Embeddings are always asked for as floats
and base64-encoded here when the caller wants `encoding_format: "base64"` (the openai SDK's default), so
servers that know only floats work too.
"""

from __future__ import annotations

import base64
import sys
from array import array

import orjson

from services.common.errors import InvalidParameter
from services.router.external.replies import Usage

PATHS = {"llm/v1/chat": "/chat/completions", "llm/v1/completions": "/completions",
         "llm/v1/embeddings": "/embeddings"}
DATABRICKS_ONLY_FIELDS = ("client_request_id", "usage_context", "extra_params", "dataframe_split",
                          "dataframe_records", "instances", "inputs")
REQUIRED_FIELD = {"llm/v1/chat": "messages", "llm/v1/completions": "prompt", "llm/v1/embeddings": "input"}


def check_payload(task: str, payload: dict) -> None:
    """The task's required field is there (messages / prompt / input), whatever the provider."""
    field = REQUIRED_FIELD[task]
    value = payload.get(field)
    if value is None or value == [] or value == "":
        raise InvalidParameter(f"Missing required field: {field} (this endpoint serves {task})")
    if task == "llm/v1/chat" and not (isinstance(value, list) and all(isinstance(m, dict) for m in value)):
        raise InvalidParameter("messages must be an array of {\"role\", \"content\"} objects")


def provider_request(model: str, task: str, payload: dict) -> dict:
    """The body to POST to `<api_base><PATHS[task]>`."""
    body = {k: v for k, v in payload.items() if k not in DATABRICKS_ONLY_FIELDS}
    extra = payload.get("extra_params")
    if isinstance(extra, dict):
        body.update(extra)
    body["model"] = model
    if task == "llm/v1/embeddings":
        body.pop("encoding_format", None)
    if body.get("stream"):
        # Ask for the usage chunk always (usage tracking, token limits); it is dropped again
        # unless the caller asked for it too.
        body["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
    return body


def wants_usage_chunk(payload: dict) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def finish_response(task: str, answer: dict, payload: dict) -> tuple[bytes, Usage]:
    """The provider's answer as Podium returns it, and its usage."""
    if task == "llm/v1/embeddings":
        if payload.get("encoding_format") == "base64":
            for item in answer.get("data") or ():
                if isinstance(item, dict) and isinstance(item.get("embedding"), list):
                    item["embedding"] = encode_base64_floats(item["embedding"])
    else:
        add_finish_reason_alias(answer)
    return orjson.dumps(answer), Usage.of(answer.get("usage"))


def add_finish_reason_alias(answer: dict) -> None:
    for choice in answer.get("choices") or ():
        if isinstance(choice, dict) and "finish_reason" in choice:
            choice["finishReason"] = choice["finish_reason"]


def encode_base64_floats(values: list) -> str:
    """float32 little-endian, base64: what the openai SDK decodes for encoding_format=base64."""
    packed = array("f", (float(v) for v in values))
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


def relay_chunk(data: str, include_usage: bool) -> tuple[bytes | None, Usage | None, str]:
    """One provider stream event → (what to send on or None, its usage if any, its error message if any).

    Most events are content deltas: they go on byte for byte, unparsed.
    """
    if '"usage"' not in data and '"error"' not in data:
        return b"data: " + data.encode() + b"\n\n", None, ""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None, None, ""
    if not isinstance(chunk, dict):
        return None, None, ""
    if isinstance(chunk.get("error"), dict):
        return b"data: " + data.encode() + b"\n\n", None, str(chunk["error"].get("message", "provider error"))
    usage = Usage.of(chunk["usage"]) if isinstance(chunk.get("usage"), dict) else None
    if usage is not None and not chunk.get("choices") and not include_usage:
        return None, usage, ""  # the usage-only chunk Podium asked for itself
    if not include_usage:
        chunk.pop("usage", None)
    return b"data: " + orjson.dumps(chunk) + b"\n\n", usage, ""
