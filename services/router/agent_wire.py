"""The wire of generative models (MLflow agents, chat models, pyfuncs with predict_stream). Pure.

- A query asks to stream with `"stream": true` in its JSON object; the router reads it only for deployments
  whose model streams, so a classic model's query is never parsed here.
- A stream leaves as data-only server-sent events, one per event the model yields, ended by `data: [DONE]`
  (what mlflow's Databricks `predict_stream` and the openai SDK stop at; docs/agents.md). A failure after the
  first event is one `data: {"error": {...}}` event (the openai SDK raises APIError on it), and no [DONE].
- The OpenAI-style paths reach a custom model only where its task answers them: /chat/completions a chat
  model (`llm/v1/chat`, `agent/v1/chat`: ChatModel answers chat.completion objects) or a ChatAgent
  (`agent/v2/chat`: its own `{"messages": [...]}` and `{"delta": {...}}` chunks, as Databricks answers them and
  databricks-langchain's ChatDatabricks reads them), /responses a ResponsesAgent (`agent/v1/responses`). The
  body is the model's request without the OpenAI `model` field (the endpoint's name, not an input of the
  model); a Responses `input` given as a string (the openai SDK allows it, MLflow's ResponsesAgent signature
  takes only a list of items) is the one user message it means.
- On endpoints with AI gateway settings, the relayed events are read for the usage record as they pass: the
  token counts of events that carry `usage`, and the failure that ended a stream. A non-streaming answer of a
  generative model (its deployment has a task or streams) is read for its top-level `usage` where it names one
  and is at most MAX_METERED_ANSWER bytes; a classic model's answer (`{"predictions": ...}`) never is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from services.common.errors import WIRE_STATUS, BadRequest, InvalidParameter, PodiumError
from services.router.external.replies import StreamOutcome, Usage
from services.router.external.sse import DONE

# The OpenAI-style task a path asks for → the model tasks (MLmodel metadata.task) that answer it.
OPENAI_MODEL_TASKS = {
    "llm/v1/chat": ("llm/v1/chat", "agent/v1/chat", "agent/v2/chat"),
    "agent/v1/responses": ("agent/v1/responses",),
}
PATH_OF_TASK = {"llm/v1/chat": "chat/completions", "agent/v1/responses": "responses"}
APPS_PREFIX = "apps/"   # databricks-openai's `model="apps/<name>"`: an agent deployed as a Databricks App
NO_APPS = ("Podium does not serve Databricks Apps (it has no Apps API). Serve the agent as a serving endpoint and "
           "query it by the endpoint's name (model=\"<endpoint name>\")")
# The largest non-streaming answer read for its token counts: parsing it costs about a millisecond per MiB.
MAX_METERED_ANSWER = 1 << 20


def asks_stream(body: bytes) -> bool:
    """Whether the query is a JSON object with `"stream": true` (anything unparsable does not stream: the
    model's own parser answers it)."""
    if b'"stream"' not in body:   # most non-streaming queries stop here, unparsed
        return False
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(request, dict) and request.get("stream") is True


def with_stream(body: bytes) -> bytes:
    """The query's JSON object with `"stream": true` (BadRequest when it is no JSON object)."""
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("Request body is not valid JSON") from None
    if not isinstance(request, dict):
        raise BadRequest("Request body must be a JSON object")
    return orjson.dumps({**request, "stream": True})


def endpoint_named(payload: dict) -> str:
    """The endpoint an OpenAI-style query names in its `model`. InvalidParameter where it names none, or names a
    Databricks App (`apps/<name>`, which databricks-openai's clients send to the App's own URL): Podium has no
    Apps, and no endpoint name has a `/`."""
    name = payload.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidParameter("Missing required field: model (the name of the serving endpoint)")
    if name.startswith(APPS_PREFIX):
        raise InvalidParameter(f"model '{name}' names a Databricks App: {NO_APPS}")
    return name


def model_request(endpoint_name: str, openai_task: str, model_task: str, payload: dict) -> bytes:
    """The body an OpenAI-style query sends to the endpoint's model; InvalidParameter where the model's task
    does not answer that path."""
    if model_task not in OPENAI_MODEL_TASKS.get(openai_task, ()):
        served = f"serves a model of task {model_task}" if model_task else "serves a custom model with no task"
        path = PATH_OF_TASK.get(openai_task, openai_task)
        raise InvalidParameter(f"Endpoint '{endpoint_name}' {served}, which does not answer /serving-endpoints/"
                               f"{path}: query it at /serving-endpoints/{endpoint_name}/invocations")
    request = {k: v for k, v in payload.items() if k != "model"}
    if openai_task == "agent/v1/responses" and isinstance(request.get("input"), str):
        request["input"] = [{"role": "user", "content": request["input"]}]
    return orjson.dumps(request)


def sse_event(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


def error_event(code: str, message: str) -> bytes:
    return sse_event(orjson.dumps({"error": {"error_code": code, "message": message}}))


async def sse(first, rest: AsyncIterator) -> AsyncIterator[bytes]:
    """Server-sent events of a replica's stream: `first` (already received) and each later event as it comes.
    Closing this closes `rest` (the replica stops the model)."""
    try:
        yield sse_event(first.data)
        async for event in rest:
            if event.http_status:
                error = _model_error(event.data)
                yield error_event(*error)
                return
            yield sse_event(event.data)
        yield DONE
    except PodiumError as exc:
        yield error_event(exc.code, exc.message)
    finally:
        await rest.aclose()   # type: ignore[attr-defined]


def _model_error(body: bytes) -> tuple[str, str]:
    try:
        error = orjson.loads(body)
        return str(error.get("error_code", "BAD_REQUEST")), str(error.get("message", ""))
    except (orjson.JSONDecodeError, AttributeError):
        return "BAD_REQUEST", body.decode(errors="replace")


async def metered(events: AsyncIterator[bytes], outcome: StreamOutcome) -> AsyncIterator[bytes]:
    """The `data:` events of `sse` unchanged, one per chunk; fills `outcome` for the endpoint's usage record and
    token limits as they pass: the token counts of the last event that carries `usage`, and the status of a
    failure that ended the stream. Only events naming `usage` or starting with `error` are parsed."""
    try:
        async for chunk in events:
            if b'"usage"' in chunk or chunk.startswith(b'data: {"error"'):
                read_outcome(chunk, outcome)
            yield chunk
    finally:
        await events.aclose()   # type: ignore[attr-defined]


def read_outcome(chunk: bytes, outcome: StreamOutcome) -> None:
    """Takes one relayed event's usage, or its failure, into `outcome`.

    Usage is where MLflow's interfaces put it: a ChatModel chunk's and a ChatAgentChunk's `usage`
    (`prompt_tokens`, `completion_tokens`), a ResponsesAgent's `response.completed` event's `response.usage`
    (`input_tokens`, `output_tokens`)."""
    try:
        event = orjson.loads(chunk[len(b"data: "):])
    except orjson.JSONDecodeError:
        return
    if not isinstance(event, dict):
        return
    error = event.get("error")
    if isinstance(error, dict):
        code = str(error.get("error_code", "INTERNAL_ERROR"))
        outcome.status_code, outcome.error = WIRE_STATUS.get(code, (500, ""))[0], str(error.get("message", code))
        return
    usage = event.get("usage")
    if not isinstance(usage, dict) and isinstance(event.get("response"), dict):
        usage = event["response"].get("usage")
    if isinstance(usage, dict):
        outcome.usage = usage_of(usage)


def is_generative(task: str, is_streaming: bool) -> bool:
    """Whether a deployment's model (MLmodel's `metadata.task`, whether it has predict_stream) answers in one of
    MLflow's generative interfaces, whose answers may carry `usage`; classic models have neither."""
    return bool(task) or is_streaming


def may_carry_usage(answer: bytes) -> bool:
    """Whether a non-streaming answer is worth reading for its usage (`answer_usage`): it names `usage` and is
    small enough. Most answers stop here, unparsed."""
    return len(answer) <= MAX_METERED_ANSWER and b'"usage"' in answer


def answer_usage(answer: bytes) -> Usage:
    """The token counts of a generative model's non-streaming answer: its top-level `usage`, where MLflow's
    interfaces put it (a ChatModel's chat.completion, a ChatAgentResponse: `prompt_tokens`, `completion_tokens`;
    a ResponsesAgent's response: `input_tokens`, `output_tokens`; any OpenAI-shaped dict); 0 where it has none."""
    if not may_carry_usage(answer):
        return Usage()
    try:
        document = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return Usage()
    usage = document.get("usage") if isinstance(document, dict) else None
    return usage_of(usage) if isinstance(usage, dict) else Usage()


def usage_of(usage: dict) -> Usage:
    """Token counts named the Chat Completions way or the Responses way; a missing or malformed count is 0."""
    def count(*names: str) -> int:
        value = next((usage[n] for n in names if n in usage), 0)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
    return Usage(count("prompt_tokens", "input_tokens"), count("completion_tokens", "output_tokens"))


def event_data(chunk: bytes, pending: bytearray) -> list[bytes]:
    """The `data:` payloads of the complete events in `pending` + `chunk` (consumed from `pending`), [DONE] left
    out: for relaying a stream of server-sent events as separate messages (gRPC)."""
    pending += chunk
    out = []
    while (end := pending.find(b"\n\n")) >= 0:
        block = bytes(pending[:end])
        del pending[:end + 2]
        data = b"\n".join(line[5:].lstrip(b" ") for line in block.split(b"\n") if line.startswith(b"data:"))
        if data and data != b"[DONE]":
            out.append(data)
    return out
