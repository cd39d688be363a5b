"""Local stand-ins for Azure OpenAI (and Entra ID), Amazon Bedrock, Google Vertex AI, Cohere and Databricks
Model Serving: one aiohttp server speaking each provider's public wire format, as FakeProviders does for
OpenAI and Anthropic (tests/support/fake_providers.py).

Each checks what the real service checks before it answers: Azure's `api-key` header or an Entra ID bearer
token it issued (client-credentials grant) and the `api-version` query; Bedrock's SigV4 signature, recomputed
with botocore from the bytes received (bedrock_standin.py); Vertex's bearer token, issued only for a JWT assertion that verifies
against the service account's public key (google-auth); Cohere's and Databricks' bearer tokens. A request
that fails a check gets the provider's own error status and shape. Answers echo the last user text
("echo: <text>", one word per streamed event) in the provider's shape: OpenAI's for Azure and Databricks,
the family's body for Bedrock (with its token-count headers; streams in AWS's binary event-stream framing), generateContent's and Cohere
v2's. Every request is kept in `requests` (provider, path, query, headers, body) for tests to check.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time

import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import jwt

from tests.support import bedrock_standin
from tests.support.bedrock_standin import word_pieces

AZURE_KEY = "azure-test-KEY-5e1c0b7d9a"
ENTRA_CLIENT_ID, ENTRA_TENANT_ID, ENTRA_SECRET = "app-0001", "tenant-0001", "entra-test-SECRET-71c2"
COHERE_KEY = "cohere-test-KEY-2b4d6f"
DATABRICKS_TOKEN = "dapi-test-TOKEN-8e7d6c"
GCP_PROJECT, GCP_CLIENT_EMAIL = "podium-test", "podium@podium-test.iam.gserviceaccount.com"
AZURE_API_VERSION = "2024-10-21"
_LLAMA_USER = re.compile(r"<\|start_header_id\|>user<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>", re.S)


def _words(text: str) -> int:
    return len(text.split())


def _echo(text: str) -> list[str]:
    return f"echo: {text}".split(" ")




class ProviderStandIns:
    def __init__(self, aws_region: str = "us-east-1"):
        self.aws_region = aws_region
        self.requests: list[dict] = []
        self.url = ""
        self.issued: dict[str, str] = {}   # access token → who it was issued to (entra | google)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()).decode()
        self._public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="provider-standins", daemon=True)
        self._runner: web.AppRunner | None = None

    def service_account_key(self) -> str:
        """A service account's JSON key, as Google issues it, whose token_uri is this stand-in."""
        return orjson.dumps({"type": "service_account", "project_id": GCP_PROJECT, "private_key_id": "k1",
                             "private_key": self._private_pem, "client_email": GCP_CLIENT_EMAIL,
                             "token_uri": self.url + "/google/token"}).decode()

    def sent(self, provider: str) -> list[dict]:
        return [r for r in self.requests if r["provider"] == provider]

    # ---- lifecycle: the server runs on its own loop in a thread, so blocking clients can call it ----

    def start(self) -> "ProviderStandIns":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self.entra_token)
        app.router.add_post("/openai/deployments/{deployment}/{operation:.+}", self.azure)
        app.router.add_post("/serving-endpoints/{name}/invocations", self.databricks)
        app.router.add_post("/model/{model}/{action}", self.bedrock)
        app.router.add_post("/v2/{operation}", self.cohere)
        app.router.add_post("/google/token", self.google_token)
        app.router.add_post("/v1/projects/{project}/locations/{region}/publishers/google/models/{call}", self.vertex)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _take(self, request: web.Request, provider: str, *, form: bool = False) -> tuple[dict, bytes]:
        raw = await request.read()
        body = dict(await request.post()) if form else orjson.loads(raw)
        self.requests.append({"provider": provider, "path": request.path, "raw_path": request.raw_path,
                              "query": dict(request.query), "headers": dict(request.headers), "body": body})
        return body, raw

    # ---- token services ----

    async def entra_token(self, request: web.Request) -> web.Response:
        form, _ = await self._take(request, "entra", form=True)
        if request.match_info["tenant"] != ENTRA_TENANT_ID or form.get("grant_type") != "client_credentials" \
                or form.get("client_id") != ENTRA_CLIENT_ID or form.get("client_secret") != ENTRA_SECRET \
                or form.get("scope") != "https://cognitiveservices.azure.com/.default":
            return web.json_response({"error": "invalid_client", "error_description": "AADSTS7000215"}, status=401)
        token = f"entra-token-{len(self.issued)}"
        self.issued[token] = "entra"
        return web.json_response({"token_type": "Bearer", "expires_in": 3599, "access_token": token})

    async def google_token(self, request: web.Request) -> web.Response:
        form, _ = await self._take(request, "google-token", form=True)
        try:
            claims = jwt.decode(form.get("assertion", ""), certs=self._public_pem, audience=self.url + "/google/token")
        except ValueError as exc:
            return web.json_response({"error": "invalid_grant", "error_description": str(exc)}, status=400)
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or \
                claims.get("iss") != GCP_CLIENT_EMAIL or "cloud-platform" not in claims.get("scope", ""):
            return web.json_response({"error": "invalid_grant", "error_description": "bad claims"}, status=400)
        token = f"ya29.standin-{len(self.issued)}"
        self.issued[token] = "google"
        return web.json_response({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _bearer(self, request: web.Request) -> str:
        return request.headers.get("Authorization", "").removeprefix("Bearer ")

    # ---- OpenAI-shaped: Azure OpenAI and Databricks serving endpoints ----

    async def azure(self, request: web.Request) -> web.StreamResponse:
        body, _ = await self._take(request, "azure")
        key, bearer = request.headers.get("api-key"), self._bearer(request)
        if key != AZURE_KEY and self.issued.get(bearer) != "entra":
            return _openai_error(401, "Access denied due to invalid subscription key or wrong API endpoint.")
        if request.query.get("api-version") != AZURE_API_VERSION:
            return _openai_error(404, "Resource not found")
        operation = request.match_info["operation"]
        return await _openai_answer(request, operation, body, body.get("model", request.match_info["deployment"]))

    async def databricks(self, request: web.Request) -> web.StreamResponse:
        body, _ = await self._take(request, "databricks")
        if self._bearer(request) != DATABRICKS_TOKEN:
            return web.json_response({"error_code": "UNAUTHENTICATED", "message": "Invalid access token."}, status=401)
        if "model" in body:
            return web.json_response({"error_code": "BAD_REQUEST", "message": "model is not a parameter"},
                                     status=400)
        operation = ("chat/completions" if "messages" in body else "completions" if "prompt" in body
                     else "embeddings")
        return await _openai_answer(request, operation, body, request.match_info["name"])

    # ---- Amazon Bedrock ----

    async def bedrock(self, request: web.Request) -> web.StreamResponse:
        body, raw = await self._take(request, "bedrock")
        refusal = bedrock_standin.sigv4_refusal(request.method, f"http://{request.host}{request.raw_path}", dict(request.headers),
                                raw, self.aws_region, time.time())
        if refusal:
            return web.json_response({"message": refusal}, status=403,
                                     headers={"x-amzn-ErrorType": "UnrecognizedClientException"})
        model, is_stream = request.match_info["model"], request.match_info["action"] == "invoke-with-response-stream"
        if model.startswith("anthropic."):
            if body.get("anthropic_version") != "bedrock-2023-05-31" or "model" in body or "max_tokens" not in body:
                return web.json_response({"message": "Malformed input request"}, status=400)
            text = body["messages"][-1]["content"]
            prompt_tokens = sum(_words(m["content"]) for m in body["messages"]) + _words(body.get("system", ""))
        elif model.startswith("ai21.jamba"):
            if "model" in body or any(m["role"] not in ("system", "user", "assistant") for m in body["messages"]):
                return web.json_response({"message": "Malformed input request: messages"}, status=400)
            text = body["messages"][-1]["content"]
            prompt_tokens = sum(_words(m["content"]) for m in body["messages"])
        elif model.startswith("amazon.titan-embed"):
            text = body["inputText"]
            return web.json_response({"embedding": [float(len(text)), 0.0, 0.25], "inputTextTokenCount": _words(text)},
                                     headers=bedrock_standin.bedrock_counts(_words(text), 0))
        elif model.startswith("cohere.embed"):
            if not body.get("input_type") or not isinstance(body.get("texts"), list):
                return web.json_response({"message": "Malformed input request: input_type"}, status=400)
            return web.json_response({"id": "e-1", "response_type": "embeddings_floats", "texts": body["texts"],
                                      "embeddings": [[float(len(t)), float(i), 0.25] for i, t in enumerate(body["texts"])]},
                                     headers=bedrock_standin.bedrock_counts(sum(map(_words, body["texts"])), 0))
        elif model.startswith("cohere.command"):
            if not isinstance(body.get("message"), str) or "messages" in body:
                return web.json_response({"message": "Malformed input request: message"}, status=400)
            text = body["message"]
            prompt_tokens = _words(text) + sum(_words(t["message"]) for t in body.get("chat_history", ())) + \
                _words(body.get("preamble", ""))
        elif model.startswith("amazon.titan"):
            lines = [ln for ln in body["inputText"].split("\n") if ln.startswith("User: ")]
            text = lines[-1].removeprefix("User: ") if lines else body["inputText"]
            prompt_tokens = _words(body["inputText"])
        elif model.startswith("meta.llama"):
            turns = _LLAMA_USER.findall(body["prompt"])
            text = turns[-1] if turns else body["prompt"]
            prompt_tokens = _words(body["prompt"])
        else:
            return web.json_response({"message": f"The provided model identifier is invalid: {model}"}, status=400)
        words = _echo(text)
        if not is_stream:
            return web.json_response(bedrock_standin.bedrock_answer(model, words, prompt_tokens),
                                     headers=bedrock_standin.bedrock_counts(prompt_tokens, len(words)))
        response = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream"})
        await response.prepare(request)
        for event in bedrock_standin.bedrock_stream(model, words, prompt_tokens):
            await response.write(bedrock_standin.aws_chunk(event))
            await asyncio.sleep(0.005)
        return response

    # ---- Cohere ----

    async def cohere(self, request: web.Request) -> web.StreamResponse:
        body, _ = await self._take(request, "cohere")
        if self._bearer(request) != COHERE_KEY:
            return web.json_response({"message": "invalid api token"}, status=401)
        if request.match_info["operation"] == "embed":
            if body.get("embedding_types") != ["float"] or not body.get("input_type"):
                return web.json_response({"message": "input_type is required"}, status=400)
            return web.json_response({"id": "emb-1", "texts": body["texts"], "response_type": "embeddings_by_type",
                                      "embeddings": {"float": [[float(len(t)), float(i), 0.25]
                                                               for i, t in enumerate(body["texts"])]},
                                      "meta": {"billed_units": {"input_tokens": sum(map(_words, body["texts"]))}}})
        text = body["messages"][-1]["content"]
        words = _echo(text)
        usage = {"billed_units": {"input_tokens": 1, "output_tokens": len(words)},
                 "tokens": {"input_tokens": sum(_words(m["content"]) for m in body["messages"]),
                            "output_tokens": len(words)}}
        if not body.get("stream"):
            return web.json_response({"id": "c-1", "finish_reason": "COMPLETE", "usage": usage, "message": {
                "role": "assistant", "content": [{"type": "text", "text": " ".join(words)}]}})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def event(kind: str, data: dict) -> None:
            await response.write(f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, **data}) + b"\n\n")

        await event("message-start", {"id": "c-1", "delta": {"message": {"role": "assistant", "content": []}}})
        await event("content-start", {"index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}})
        for piece in word_pieces(words):
            await event("content-delta", {"index": 0, "delta": {"message": {"content": {"text": piece}}}})
            await asyncio.sleep(0.005)
        await event("content-end", {"index": 0})
        await event("message-end", {"delta": {"finish_reason": "COMPLETE", "usage": usage}})
        return response

    # ---- Google Vertex AI ----

    async def vertex(self, request: web.Request) -> web.StreamResponse:
        body, _ = await self._take(request, "vertex")
        if self.issued.get(self._bearer(request)) != "google":
            return web.json_response({"error": {"code": 401, "message": "Request had invalid authentication "
                                                "credentials.", "status": "UNAUTHENTICATED"}}, status=401)
        model, _, method = request.match_info["call"].partition(":")
        if request.match_info["project"] != GCP_PROJECT:
            return web.json_response({"error": {"code": 403, "message": "Permission denied on project",
                                                "status": "PERMISSION_DENIED"}}, status=403)
        if method == "predict":
            return web.json_response({"predictions": [
                {"embeddings": {"values": [float(len(i["content"])), float(n), 0.25],
                                "statistics": {"token_count": _words(i["content"]), "truncated": False}}}
                for n, i in enumerate(body["instances"])]})
        if any(c.get("role") not in ("user", "model") for c in body["contents"]):
            return web.json_response({"error": {"code": 400, "message": "Please use a valid role: user, model.",
                                                "status": "INVALID_ARGUMENT"}}, status=400)
        text = body["contents"][-1]["parts"][0]["text"]
        words = _echo(text)
        prompt_tokens = sum(_words(p["text"]) for c in body["contents"] for p in c["parts"])
        usage = {"promptTokenCount": prompt_tokens, "candidatesTokenCount": len(words),
                 "totalTokenCount": prompt_tokens + len(words)}
        if method == "generateContent":
            return web.json_response({"candidates": [{"content": {"role": "model", "parts": [{"text": " ".join(words)}]},
                                                      "finishReason": "STOP"}], "usageMetadata": usage,
                                      "modelVersion": model, "responseId": "v-1"})
        if method != "streamGenerateContent" or request.query.get("alt") != "sse":
            return web.json_response({"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}},
                                     status=404)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        pieces = word_pieces(words)
        for i, piece in enumerate(pieces):
            candidate = {"content": {"role": "model", "parts": [{"text": piece}]}}
            event = {"candidates": [candidate], "modelVersion": model, "responseId": "v-1"}
            if i == len(pieces) - 1:
                candidate["finishReason"] = "STOP"
                event["usageMetadata"] = usage
            await response.write(b"data: " + orjson.dumps(event) + b"\r\n\r\n")
            await asyncio.sleep(0.005)
        return response


def _openai_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"code": str(status), "message": message}}, status=status)


async def _openai_answer(request: web.Request, operation: str, body: dict, model: str) -> web.StreamResponse:
    if operation == "embeddings":
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return web.json_response({"object": "list", "model": model, "data": [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), float(i), 0.25]}
            for i, t in enumerate(inputs)], "usage": {"prompt_tokens": sum(map(_words, inputs)),
                                                      "total_tokens": sum(map(_words, inputs))}})
    chat = operation == "chat/completions"
    text = str(body["messages"][-1]["content"]) if chat else (body["prompt"] if isinstance(body["prompt"], str)
                                                              else body["prompt"][0])
    words = _echo(text)
    prompt_tokens = sum(_words(str(m["content"])) for m in body["messages"]) if chat else _words(text)
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
             "total_tokens": prompt_tokens + len(words)}
    kind = "chat.completion" if chat else "text_completion"
    if not body.get("stream"):
        choice = ({"index": 0, "message": {"role": "assistant", "content": " ".join(words)}} if chat
                  else {"index": 0, "text": " ".join(words)})
        return web.json_response({"id": "x-1", "object": kind, "created": 1700000000, "model": model,
                                  "choices": [{**choice, "finish_reason": "stop", "logprobs": None}], "usage": usage})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    kind = "chat.completion.chunk" if chat else "text_completion"

    async def chunk(piece: str, finish: str | None, extra: dict | None = None) -> None:
        choice = {"index": 0, "delta": {"content": piece} if piece else {}} if chat else {"index": 0, "text": piece}
        event = {"id": "x-1", "object": kind, "created": 1700000000, "model": model,
                 "choices": [{**choice, "finish_reason": finish}], **(extra or {})}
        await response.write(b"data: " + orjson.dumps(event) + b"\n\n")

    for piece in word_pieces(words):
        await chunk(piece, None)
        await asyncio.sleep(0.005)
    await chunk("", "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        await response.write(b"data: " + orjson.dumps({"id": "x-1", "object": kind, "created": 1700000000,
                                                       "model": model, "choices": [], "usage": usage}) + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    return response
