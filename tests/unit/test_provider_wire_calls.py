"""The router's provider client against local stand-ins of Azure OpenAI, Bedrock, Vertex AI, Cohere and
Databricks serving endpoints (tests/support/provider_standins.py): each provider sees its own wire format and
credentials (a SigV4 signature that botocore verifies, tokens fetched from Entra ID's and Google's token
services), and the answers, streams included, come back in the OpenAI shape. In-process servers only."""

from __future__ import annotations

import base64

import orjson
import pytest

from services.common.egress import EgressPolicy
from services.common.errors import InvalidParameter, PermissionDenied
from services.common.gateway_routes import ExternalModelTarget
from services.router.external.client import HOP_HEADER, ProviderClient
from services.router.external.credentials import Credentials
from tests.support import bedrock_standin, provider_standins as standin

CHAT, COMPLETIONS, EMBEDDINGS = "llm/v1/chat", "llm/v1/completions", "llm/v1/embeddings"
SECRETS = {"azure": standin.AZURE_KEY, "entra": standin.ENTRA_SECRET, "akid": bedrock_standin.AWS_ACCESS_KEY_ID,
           "aws": bedrock_standin.AWS_SECRET_ACCESS_KEY, "cohere": standin.COHERE_KEY, "dbx": standin.DATABRICKS_TOKEN}
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]


class Resolver:
    def __init__(self, values: dict[str, str]):
        self.values = values

    async def resolve(self, scope: str, key: str, endpoint: str) -> str:
        return self.values[key]


def _ref(key: str) -> str:
    return "{{secrets/test/" + key + "}}"


@pytest.fixture(scope="module")
def standins():
    servers = standin.ProviderStandIns().start()
    yield servers
    servers.stop()


@pytest.fixture
async def client(standins):
    resolver = Resolver({**SECRETS, "gcp": standins.service_account_key()})
    providers = ProviderClient(Credentials(None, resolver), timeout_s=5, max_retries=0, connect_timeout_s=2,
                               egress=EgressPolicy())
    await providers.start()
    yield providers
    await providers.close()


def _target(standins, kind: str, task: str, name: str = "") -> ExternalModelTarget:
    base = standins.url
    common = {"task": task, "may_reach_private": True}
    azure = {"openai_api_type": "azure", "openai_deployment_name": "gpt4o-prod",
             "openai_api_version": standin.AZURE_API_VERSION}
    if kind == "azure":
        return ExternalModelTarget("openai", name or "gpt-4o", api_base=base, credential=_ref("azure"),
                                   credential_field="openai_api_key", auth_header="api-key", options=azure, **common)
    if kind == "azuread":
        options = {**azure, "openai_api_type": "azuread", "microsoft_entra_client_id": standin.ENTRA_CLIENT_ID,
                   "microsoft_entra_tenant_id": standin.ENTRA_TENANT_ID, "microsoft_entra_authority_host": base}
        return ExternalModelTarget("openai", name or "gpt-4o", api_base=base, options=options,
                                   secrets={"microsoft_entra_client_secret": _ref("entra")}, **common)
    if kind.startswith("bedrock-"):
        family = kind.removeprefix("bedrock-")
        return ExternalModelTarget("amazon-bedrock", name, api_base=base,
                                   options={"aws_region": "us-east-1", "bedrock_provider": family},
                                   secrets={"aws_access_key_id": _ref("akid"), "aws_secret_access_key": _ref("aws")},
                                   **common)
    if kind == "vertex":
        return ExternalModelTarget("google-cloud-vertex-ai", name or "gemini-2.0-flash", api_base=base,
                                   options={"project_id": standin.GCP_PROJECT, "region": "us-central1"},
                                   secrets={"private_key": _ref("gcp")}, **common)
    if kind == "cohere":
        return ExternalModelTarget("cohere", name or "command-r", api_base=base, credential=_ref("cohere"),
                                   credential_field="cohere_api_key", auth_header="authorization", **common)
    return ExternalModelTarget("databricks-model-serving", name or "their-llm", api_base=base,
                               credential=_ref("dbx"), credential_field="databricks_api_token",
                               auth_header="authorization", **common)


TEXT_CASES = [  # (kind, model name, task): every provider and family that generates text
    ("azure", "", CHAT), ("azure", "", COMPLETIONS), ("azuread", "", CHAT),
    ("databricks", "", CHAT), ("databricks", "", COMPLETIONS),
    ("bedrock-anthropic", "anthropic.claude-3-5-haiku-20241022-v1:0", CHAT),
    ("bedrock-anthropic", "anthropic.claude-3-5-haiku-20241022-v1:0", COMPLETIONS),
    ("bedrock-amazon", "amazon.titan-text-express-v1", CHAT),
    ("bedrock-amazon", "amazon.titan-text-express-v1", COMPLETIONS),
    ("bedrock-meta", "meta.llama3-8b-instruct-v1:0", CHAT),
    ("bedrock-meta", "meta.llama3-8b-instruct-v1:0", COMPLETIONS),
    ("bedrock-cohere", "cohere.command-r-v1:0", CHAT), ("bedrock-cohere", "cohere.command-r-v1:0", COMPLETIONS),
    ("bedrock-ai21labs", "ai21.jamba-1-5-mini-v1:0", CHAT), ("bedrock-ai21labs", "ai21.jamba-1-5-mini-v1:0", COMPLETIONS),
    ("cohere", "", CHAT), ("cohere", "", COMPLETIONS), ("vertex", "", CHAT), ("vertex", "", COMPLETIONS),
]


def _payload(task: str, **extra) -> dict:
    base = {"messages": MESSAGES} if task == CHAT else {"prompt": "hello there"}
    return {**base, "max_tokens": 50, **extra}


@pytest.mark.parametrize("kind, name, task", TEXT_CASES)
async def test_text_comes_back_in_the_openai_shape(client, standins, kind, name, task):
    reply = await client.invoke("e", _target(standins, kind, task, name), _payload(task))
    answer = orjson.loads(reply.body)
    choice = answer["choices"][0]
    text = choice["message"]["content"] if task == CHAT else choice["text"]
    assert text == "echo: hello there"
    assert answer["object"] == ("chat.completion" if task == CHAT else "text_completion")
    assert choice["finish_reason"] == "stop"
    assert reply.usage.output_tokens == 3 and reply.usage.input_tokens >= 2
    assert answer["usage"]["total_tokens"] == reply.usage.total_tokens


@pytest.mark.parametrize("kind, name, task", TEXT_CASES)
async def test_streams_come_back_as_openai_chunks(client, standins, kind, name, task):
    stream = await client.invoke("e", _target(standins, kind, task, name),
                                 _payload(task, stream=True, stream_options={"include_usage": True}))
    events = [chunk async for chunk in stream.chunks]
    assert events[-1] == b"data: [DONE]\n\n"
    chunks = [orjson.loads(e.removeprefix(b"data: ")) for e in events[:-1]]
    assert not any("error" in c for c in chunks), chunks
    with_choices = [c for c in chunks if c["choices"]]
    if task == CHAT:
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in with_choices)
    else:
        text = "".join(c["choices"][0]["text"] for c in with_choices)
    assert text == "echo: hello there"
    assert len([c for c in with_choices if (c["choices"][0].get("delta") or {}).get("content")
                or c["choices"][0].get("text")]) == 3   # one chunk per provider event, not re-chunked
    assert with_choices[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 3 and not chunks[-1]["choices"]
    assert stream.outcome.usage.output_tokens == 3 and stream.outcome.status_code == 200


@pytest.mark.parametrize("kind, name, inputs", [
    ("azure", "text-embedding-3-small", ["alpha", "beta gamma"]),
    ("databricks", "", ["alpha", "beta gamma"]),
    ("bedrock-amazon", "amazon.titan-embed-text-v2:0", ["alpha"]),
    ("bedrock-cohere", "cohere.embed-english-v3", ["alpha", "beta gamma"]),
    ("cohere", "embed-english-v3.0", ["alpha", "beta gamma"]),
    ("vertex", "text-embedding-005", ["alpha", "beta gamma"]),
])
async def test_embeddings_come_back_in_the_openai_shape(client, standins, kind, name, inputs):
    target = _target(standins, kind, EMBEDDINGS, name)
    reply = await client.invoke("e", target, {"input": inputs})
    answer = orjson.loads(reply.body)
    assert answer["object"] == "list"
    assert [d["embedding"][0] for d in answer["data"]] == [float(len(t)) for t in inputs]
    assert [d["index"] for d in answer["data"]] == list(range(len(inputs)))
    assert reply.usage.input_tokens == answer["usage"]["prompt_tokens"] == sum(len(t.split()) for t in inputs)
    encoded = orjson.loads((await client.invoke("e", target, {"input": inputs, "encoding_format": "base64"})).body)
    assert len(base64.b64decode(encoded["data"][0]["embedding"])) == 3 * 4   # float32s, as the openai SDK reads


async def test_each_provider_sees_its_own_wire_format(client, standins):
    standins.requests.clear()
    await client.invoke("e", _target(standins, "azure", CHAT), _payload(CHAT))
    await client.invoke("e", _target(standins, "databricks", CHAT), _payload(CHAT))
    await client.invoke("e", _target(standins, "bedrock-meta", CHAT, "meta.llama3-8b-instruct-v1:0"),
                        _payload(CHAT, temperature=1.0))
    await client.invoke("e", _target(standins, "cohere", CHAT), _payload(CHAT, top_p=0.5, stop="END"))
    await client.invoke("e", _target(standins, "vertex", CHAT), _payload(CHAT, temperature=0.7))
    azure, databricks, bedrock, cohere = (standins.sent(p)[-1] for p in ("azure", "databricks", "bedrock", "cohere"))
    assert azure["path"] == "/openai/deployments/gpt4o-prod/chat/completions"
    assert azure["query"] == {"api-version": standin.AZURE_API_VERSION}
    assert azure["headers"]["api-key"] == standin.AZURE_KEY and "Authorization" not in azure["headers"]
    assert databricks["path"] == "/serving-endpoints/their-llm/invocations" and "model" not in databricks["body"]
    assert databricks["headers"]["Authorization"] == f"Bearer {standin.DATABRICKS_TOKEN}"
    assert HOP_HEADER not in databricks["headers"] and azure["headers"][HOP_HEADER] == "1"
    assert bedrock["raw_path"] == "/model/meta.llama3-8b-instruct-v1%3A0/invoke"
    assert bedrock["headers"]["Authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={bedrock_standin.AWS_ACCESS_KEY_ID}/")
    assert bedrock["body"] == {"prompt": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief."
                                         "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhello there<|eot_id|>"
                                         "<|start_header_id|>assistant<|end_header_id|>\n\n",
                               "max_gen_len": 50, "temperature": 0.5}
    assert cohere["path"] == "/v2/chat" and cohere["body"]["p"] == 0.5 and cohere["body"]["stop_sequences"] == ["END"]
    assert cohere["body"]["messages"][0] == {"role": "system", "content": "Be brief."}
    [token_call] = [r for r in standins.sent("google-token")][-1:]
    vertex = standins.sent("vertex")[-1]
    assert token_call["body"]["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert vertex["path"] == (f"/v1/projects/{standin.GCP_PROJECT}/locations/us-central1/publishers/google/models/"
                              "gemini-2.0-flash:generateContent")
    assert vertex["body"] == {"contents": [{"role": "user", "parts": [{"text": "hello there"}]}],
                              "systemInstruction": {"parts": [{"text": "Be brief."}]},
                              "generationConfig": {"temperature": 0.7, "maxOutputTokens": 50}}
    assert standins.issued[vertex["headers"]["Authorization"].removeprefix("Bearer ")] == "google"


async def test_access_tokens_are_fetched_once_and_reused(client, standins):
    standins.requests.clear()
    for _ in range(3):
        await client.invoke("e", _target(standins, "azuread", CHAT), _payload(CHAT))
        await client.invoke("e", _target(standins, "vertex", CHAT), _payload(CHAT))
    assert len(standins.sent("entra")) == 1 and len(standins.sent("google-token")) == 1
    [entra] = standins.sent("entra")
    assert entra["path"] == f"/{standin.ENTRA_TENANT_ID}/oauth2/v2.0/token"
    assert standins.issued[standins.sent("azure")[-1]["headers"]["Authorization"].removeprefix("Bearer ")] == "entra"


@pytest.mark.parametrize("kind, secret_key, name", [
    ("azure", "azure", ""), ("azuread", "entra", ""), ("cohere", "cohere", ""), ("databricks", "dbx", ""),
    ("bedrock-anthropic", "aws", "anthropic.claude-3-5-haiku-20241022-v1:0"),
])
async def test_a_refused_credential_is_403_and_never_quoted(standins, kind, secret_key, name):
    resolver = Resolver({**SECRETS, secret_key: "wrong-SECRET-value"})
    providers = ProviderClient(Credentials(None, resolver), timeout_s=5, max_retries=0, connect_timeout_s=2)
    await providers.start()
    try:
        with pytest.raises(PermissionDenied) as refused:
            await providers.invoke("e", _target(standins, kind, CHAT, name), _payload(CHAT))
    finally:
        await providers.close()
    assert "refused the credentials" in refused.value.message
    assert "wrong-SECRET-value" not in refused.value.message


async def test_a_vertex_key_that_is_not_a_service_account_key_is_403(standins):
    providers = ProviderClient(Credentials(None, Resolver({"gcp": "-----BEGIN PRIVATE KEY-----"})), timeout_s=5,
                               max_retries=0, connect_timeout_s=2)
    await providers.start()
    try:
        with pytest.raises(PermissionDenied, match="service account's JSON key"):
            await providers.invoke("e", _target(standins, "vertex", CHAT), _payload(CHAT))
    finally:
        await providers.close()


async def test_token_services_go_through_the_egress_policy(standins):
    """A user's (not an admin's) config may not reach a token service on a private address either."""
    providers = ProviderClient(Credentials(None, Resolver({**SECRETS, "gcp": standins.service_account_key()})),
                               timeout_s=5, max_retries=0, connect_timeout_s=2)
    await providers.start()
    before = len(standins.requests)
    try:
        for kind in ("azuread", "vertex"):
            target = _target(standins, kind, CHAT)
            target = ExternalModelTarget(**{**target.__dict__, "may_reach_private": False})
            with pytest.raises(PermissionDenied, match="egress policy"):
                await providers.invoke("e", target, _payload(CHAT))
    finally:
        await providers.close()
    assert len(standins.requests) == before   # nothing was sent


async def test_titan_embeds_one_input_per_request(client, standins):
    with pytest.raises(InvalidParameter, match="one input per request"):
        await client.invoke("e", _target(standins, "bedrock-amazon", EMBEDDINGS, "amazon.titan-embed-text-v2:0"),
                            {"input": ["a", "b"]})


@pytest.mark.parametrize("kind, token_service", [("azuread", "entra"), ("vertex", "google-token")])
async def test_a_refused_access_token_is_fetched_again_on_the_next_call(client, standins, kind, token_service):
    target = _target(standins, kind, CHAT)
    await client.invoke("e", target, _payload(CHAT))
    fetched = len(standins.sent(token_service))
    standins.issued.clear()   # the provider revokes every token it issued
    with pytest.raises(PermissionDenied, match="refused the credentials"):
        await client.invoke("e", target, _payload(CHAT))
    reply = await client.invoke("e", target, _payload(CHAT))
    assert orjson.loads(reply.body)["choices"][0]["message"]["content"] == "echo: hello there"
    assert len(standins.sent(token_service)) == fetched + 1


async def test_concurrent_calls_share_one_token_fetch(standins):
    import asyncio

    providers = ProviderClient(Credentials(None, Resolver({**SECRETS, "gcp": standins.service_account_key()})),
                               timeout_s=5, max_retries=0, connect_timeout_s=2)
    await providers.start()
    before = len(standins.sent("google-token"))
    try:
        replies = await asyncio.gather(*(providers.invoke("e", _target(standins, "vertex", CHAT), _payload(CHAT))
                                         for _ in range(8)))
    finally:
        await providers.close()
    assert all(orjson.loads(r.body)["choices"][0]["message"]["content"] == "echo: hello there" for r in replies)
    assert len(standins.sent("google-token")) == before + 1
