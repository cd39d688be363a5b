"""Local stand-ins for OpenAI and Anthropic: aiohttp servers speaking their public wire formats.

The only stand-ins in the suite (external providers cannot be reached from tests). They check the key
the way the real APIs do (OpenAI: `Authorization: Bearer`, Anthropic: `x-api-key` + `anthropic-version`),
answer chat / completions / embeddings (and SSE streams) deterministically, and misbehave on request: the
last user message (or prompt; for OpenAI chat also the model's name) `__429__`, `__500__`, `__503__`,
`__flaky__` (one 503, then fine), `__slow__`,
`__echo_key__` (a 400 quoting the key, as careless providers do), `__midstream_error__`, or `__hold__`
(a stream that stops after its first word until the test sets `release`, or HOLD_S passes: it shows the
router relays chunks as they come). The OpenAI chat model `__judge__` answers as a guardrails judge
or a shadow's judge (`_judgement`). Every request is kept in `requests` so tests can check what Podium sent.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import orjson
from aiohttp import web

SLOW_S = 3.0
HOLD_S = 10.0


def _words(text: str) -> int:
    return len(text.split())


class FakeProviders:
    def __init__(self, openai_key: str, anthropic_key: str):
        self.openai_key = openai_key
        self.anthropic_key = anthropic_key
        self.requests: list[dict] = []
        self.attempts: Counter[str] = Counter()
        self.url = ""
        self.release = threading.Event()
        self.released_in_time: list[bool] = []   # per __hold__ stream: did the test release it
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-providers", daemon=True)
        self._runner: web.AppRunner | None = None

    # ---- lifecycle: the server runs on its own loop in a thread, so blocking clients can call it ----

    def start(self) -> "FakeProviders":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.openai_chat)
        app.router.add_post("/v1/completions", self.openai_completions)
        app.router.add_post("/v1/embeddings", self.openai_embeddings)
        app.router.add_post("/v1/messages", self.anthropic_messages)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # ---- shared behaviour ----

    async def _take(self, request: web.Request, provider: str) -> dict:
        body = orjson.loads(await request.read())
        self.requests.append({"provider": provider, "path": request.path, "headers": dict(request.headers),
                              "body": body})
        return body

    async def _misbehave(self, trigger: str, provider: str, key: str) -> web.Response | None:
        self.attempts[trigger] += 1
        if trigger == "__429__":
            return _error(provider, 429, "rate_limit_error", "Rate limit reached for requests",
                          headers={"retry-after": "7"})
        if trigger == "__500__":
            return _error(provider, 500, "server_error", "The server had an error while processing your request")
        if trigger == "__503__":
            return _error(provider, 503, "server_error", "The engine is currently overloaded")
        if trigger == "__flaky__" and self.attempts[trigger] % 2 == 1:
            return _error(provider, 503, "server_error", "temporarily overloaded")
        if trigger == "__slow__":
            await asyncio.sleep(SLOW_S)
        if trigger == "__echo_key__":
            return _error(provider, 400, "invalid_request_error", f"bad request made with key {key}")
        return None

    # ---- OpenAI ----

    def _openai_auth(self, request: web.Request) -> tuple[str, web.Response | None]:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if key != self.openai_key:
            return key, _error("openai", 401, "invalid_request_error", f"Incorrect API key provided: {key}.")
        return key, None

    async def openai_chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._take(request, "openai")
        key, refused = self._openai_auth(request)
        if refused:
            return refused
        last = str(body["messages"][-1].get("content", ""))
        # A model named like a trigger misbehaves whatever the prompt: one served entity of several fails.
        failure = await self._misbehave(last, "openai", key) or await self._misbehave(body["model"], "openai", key)
        if failure:
            return failure
        answer = _judgement(body["messages"]) if body["model"] == "__judge__" else f"echo: {last}"
        prompt_tokens = sum(_words(str(m.get("content", ""))) for m in body["messages"])
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": _words(answer),
                 "total_tokens": prompt_tokens + _words(answer)}
        if body.get("stream"):
            return await self._openai_stream(request, body, answer.split(" "), usage, chat=True)
        return web.json_response({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop",
                         "logprobs": None}], "usage": usage})

    async def openai_completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._take(request, "openai")
        key, refused = self._openai_auth(request)
        if refused:
            return refused
        prompt = body["prompt"] if isinstance(body["prompt"], str) else body["prompt"][0]
        failure = await self._misbehave(prompt, "openai", key)
        if failure:
            return failure
        answer = f"echo: {prompt}"
        usage = {"prompt_tokens": _words(prompt), "completion_tokens": _words(answer),
                 "total_tokens": _words(prompt) + _words(answer)}
        if body.get("stream"):
            return await self._openai_stream(request, body, answer.split(" "), usage, chat=False)
        return web.json_response({
            "id": "cmpl-1", "object": "text_completion", "created": 1700000000, "model": body["model"],
            "choices": [{"index": 0, "text": answer, "finish_reason": "stop", "logprobs": None}], "usage": usage})

    async def openai_embeddings(self, request: web.Request) -> web.Response:
        body = await self._take(request, "openai")
        key, refused = self._openai_auth(request)
        if refused:
            return refused
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if body.get("encoding_format") not in (None, "float"):
            return _error("openai", 400, "invalid_request_error", "this server only knows float embeddings")
        return web.json_response({
            "object": "list", "model": body["model"],
            "data": [{"object": "embedding", "index": i, "embedding": [float(len(text)), float(i), 0.25]}
                     for i, text in enumerate(inputs)],
            "usage": {"prompt_tokens": sum(_words(t) for t in inputs), "total_tokens": sum(_words(t) for t in inputs)}})

    async def _openai_stream(self, request: web.Request, body: dict, words: list[str], usage: dict,
                             chat: bool) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        kind = "chat.completion.chunk" if chat else "text_completion"

        def chunk(piece: str | None, finish: str | None, first: bool = False) -> bytes:
            if chat:
                delta = {"role": "assistant", "content": ""} if first else ({"content": piece} if piece else {})
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": piece or "", "finish_reason": finish, "logprobs": None}
            return b"data: " + orjson.dumps({"id": "chunk-1", "object": kind, "created": 1700000000,
                                             "model": body["model"], "choices": [choice]}) + b"\n\n"

        await response.write(b": keep-alive\n\n")  # real OpenAI-compatible servers send comments; never relayed
        if chat:
            await response.write(chunk(None, None, first=True))
        for i, word in enumerate(words):
            await response.write(chunk(word if i == 0 else " " + word, None))
            await asyncio.sleep(0.01)
            if words[-1] == "__hold__" and i == 0:
                await self._hold()
            if words[-1] == "__midstream_error__" and i == 1:
                await response.write(b'data: {"error": {"message": "model crashed", "type": "server_error"}}\n\n')
                return response
        await response.write(chunk(None, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(b"data: " + orjson.dumps({"id": "chunk-1", "object": kind, "created": 1700000000,
                                                            "model": body["model"], "choices": [],
                                                            "usage": usage}) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    async def _hold(self) -> None:
        released = await asyncio.get_running_loop().run_in_executor(None, self.release.wait, HOLD_S)
        self.released_in_time.append(released)
        self.release.clear()

    # ---- Anthropic ----

    async def anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        body = await self._take(request, "anthropic")
        key = request.headers.get("x-api-key", "")
        if key != self.anthropic_key:
            return _error("anthropic", 401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error("anthropic", 400, "invalid_request_error", "anthropic-version: header is required")
        if "max_tokens" not in body or any(m["role"] not in ("user", "assistant") for m in body["messages"]):
            return _error("anthropic", 400, "invalid_request_error", "bad messages or max_tokens")
        last = body["messages"][-1]["content"]
        failure = await self._misbehave(last, "anthropic", key)
        if failure:
            return failure
        words = f"echo: {last}".split(" ")
        stop_reason = "end_turn"
        if len(words) > body["max_tokens"]:
            words, stop_reason = words[:body["max_tokens"]], "max_tokens"
        input_tokens = sum(_words(m["content"]) for m in body["messages"]) + _words(body.get("system", ""))
        if body.get("stream"):
            return await self._anthropic_stream(request, body, words, input_tokens, stop_reason)
        return web.json_response({
            "id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "text", "text": " ".join(words)}], "stop_reason": stop_reason,
            "stop_sequence": None, "usage": {"input_tokens": input_tokens, "output_tokens": len(words)}})

    async def _anthropic_stream(self, request: web.Request, body: dict, words: list[str], input_tokens: int,
                                stop_reason: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def event(name: str, data: dict) -> None:
            await response.write(f"event: {name}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n")

        await event("message_start", {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": body["model"], "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": input_tokens, "output_tokens": 1}}})
        await event("content_block_start", {"type": "content_block_start", "index": 0,
                                            "content_block": {"type": "text", "text": ""}})
        await event("ping", {"type": "ping"})
        for i, word in enumerate(words):
            await event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "text_delta", "text": word if i == 0 else " " + word}})
            await asyncio.sleep(0.01)
            if words[-1] == "__midstream_error__" and i == 1:
                await event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                return response
        await event("content_block_stop", {"type": "content_block_stop", "index": 0})
        await event("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason,
                                                                         "stop_sequence": None},
                                      "usage": {"output_tokens": len(words)}})
        await event("message_stop", {"type": "message_stop"})
        return response


def _judgement(messages: list[dict]) -> str:
    """The model `__judge__` as a guard endpoint: UNSAFE for a text with "attack"; ON_TOPIC when the text
    names one of the allowed topics its instruction lists ("The allowed topics are: a; b."). As a shadow's judge
    (asked whether "Answer A:" and "Answer B:" agree): "Yes." when B contains A's text, else "No."."""
    instruction, text = str(messages[0].get("content", "")), str(messages[-1].get("content", "")).lower()
    if "compare two answers" in instruction:
        first, _, second = text.removeprefix("answer a:\n").partition("\n\nanswer b:\n")
        return "Yes." if first.strip() and first.strip() in second else "No."
    if "safety" in instruction:
        return "UNSAFE" if "attack" in text else "SAFE"
    topics = instruction.split("allowed topics are: ", 1)[-1].split(". ", 1)[0].split("; ")
    return "ON_TOPIC" if any(topic.lower() in text for topic in topics) else "OFF_TOPIC"


def _error(provider: str, status: int, kind: str, message: str, headers: dict | None = None) -> web.Response:
    if provider == "anthropic":
        body = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return web.json_response(body, status=status, headers=headers)
