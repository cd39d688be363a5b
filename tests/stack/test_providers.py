"""Databricks' other external-model providers end to end: `podium up`, a local stand-in per provider
(tests/support/provider_standins.py), and the unmodified openai SDK and databricks-sdk.

Azure OpenAI (API key, and Entra ID app credentials), Amazon Bedrock (Claude, Titan, Llama), Vertex AI
(Gemini), Cohere and Databricks serving endpoints: each stand-in checks its own wire format and credentials
(Bedrock's SigV4 signature, recomputed with botocore; Vertex's bearer token, issued for a verified
service-account JWT; Entra ID's client-credentials grant), the keys come from `{{secrets/scope/key}}`
references in Podium's secrets store, and every answer, streamed or not, comes back in the OpenAI shape.
"""

from __future__ import annotations

import json

import openai
import pytest

from tests.support import bedrock_standin, provider_standins as standin
from tests.support.external import create_external_endpoint

pytestmark = pytest.mark.stack

CHAT, COMPLETIONS, EMBEDDINGS = "llm/v1/chat", "llm/v1/completions", "llm/v1/embeddings"
SCOPE = "standins"
SECRETS = {"azure": standin.AZURE_KEY, "entra": standin.ENTRA_SECRET, "aws-key-id": bedrock_standin.AWS_ACCESS_KEY_ID,
           "aws-secret": bedrock_standin.AWS_SECRET_ACCESS_KEY, "cohere": standin.COHERE_KEY,
           "databricks": standin.DATABRICKS_TOKEN}


def _ref(key: str) -> str:
    return "{{secrets/" + SCOPE + "/" + key + "}}"


def _entities(url: str) -> dict[str, tuple[str, str, str, dict]]:
    """endpoint → (provider, model name, task, provider config)."""
    azure = ("openai_config", {"openai_api_type": "azure", "openai_api_base": url, "openai_deployment_name": "prod",
                               "openai_api_version": standin.AZURE_API_VERSION, "openai_api_key": _ref("azure")})
    entra = ("openai_config", {**azure[1], "openai_api_type": "azuread", "openai_api_key": None,
                               "microsoft_entra_client_id": standin.ENTRA_CLIENT_ID,
                               "microsoft_entra_tenant_id": standin.ENTRA_TENANT_ID,
                               "microsoft_entra_client_secret": _ref("entra"), "microsoft_entra_authority_host": url})
    entra[1].pop("openai_api_key")

    def bedrock(family: str) -> tuple[str, dict]:
        return ("amazon_bedrock_config", {"aws_region": "us-east-1", "bedrock_provider": family,
                                          "aws_access_key_id": _ref("aws-key-id"),
                                          "aws_secret_access_key": _ref("aws-secret"), "bedrock_api_base": url})
    vertex = ("google_cloud_vertex_ai_config", {"project_id": standin.GCP_PROJECT, "region": "us-central1",
                                                "private_key": _ref("gcp"), "vertex_api_base": url})
    cohere = ("cohere_config", {"cohere_api_key": _ref("cohere"), "cohere_api_base": url})
    databricks = ("databricks_model_serving_config", {"databricks_workspace_url": url,
                                                      "databricks_api_token": _ref("databricks")})
    return {
        "prov-azure-chat": ("openai", "gpt-4o", CHAT, azure),
        "prov-azuread-chat": ("openai", "gpt-4o", CHAT, entra),
        "prov-azure-embed": ("openai", "text-embedding-3-small", EMBEDDINGS, azure),
        "prov-claude-bedrock": ("amazon-bedrock", "anthropic.claude-3-5-haiku-20241022-v1:0", CHAT,
                                bedrock("anthropic")),
        "prov-llama-bedrock": ("amazon-bedrock", "meta.llama3-8b-instruct-v1:0", CHAT, bedrock("meta")),
        "prov-titan-text": ("amazon-bedrock", "amazon.titan-text-express-v1", COMPLETIONS, bedrock("amazon")),
        "prov-titan-embed": ("amazon-bedrock", "amazon.titan-embed-text-v2:0", EMBEDDINGS, bedrock("amazon")),
        "prov-command-bedrock": ("amazon-bedrock", "cohere.command-r-v1:0", CHAT, bedrock("cohere")),
        "prov-jamba-bedrock": ("amazon-bedrock", "ai21.jamba-1-5-mini-v1:0", CHAT, bedrock("ai21labs")),
        "prov-embed-bedrock": ("amazon-bedrock", "cohere.embed-english-v3", EMBEDDINGS, bedrock("cohere")),
        "prov-gemini-chat": ("google-cloud-vertex-ai", "gemini-2.0-flash", CHAT, vertex),
        "prov-gemini-embed": ("google-cloud-vertex-ai", "text-embedding-005", EMBEDDINGS, vertex),
        "prov-cohere-chat": ("cohere", "command-r", CHAT, cohere),
        "prov-cohere-embed": ("cohere", "embed-english-v3.0", EMBEDDINGS, cohere),
        "prov-dbx-chat": ("databricks-model-serving", "their-llm", CHAT, databricks),
    }


CHAT_ENDPOINTS = ["prov-azure-chat", "prov-azuread-chat", "prov-claude-bedrock", "prov-llama-bedrock",
                  "prov-command-bedrock", "prov-jamba-bedrock", "prov-gemini-chat", "prov-cohere-chat",
                  "prov-dbx-chat"]
EMBEDDING_ENDPOINTS = ["prov-azure-embed", "prov-titan-embed", "prov-embed-bedrock", "prov-gemini-embed",
                       "prov-cohere-embed"]
WIRE = {"prov-azure-chat": "azure", "prov-azuread-chat": "azure", "prov-claude-bedrock": "bedrock",
        "prov-llama-bedrock": "bedrock", "prov-command-bedrock": "bedrock", "prov-jamba-bedrock": "bedrock",
        "prov-gemini-chat": "vertex",
        "prov-cohere-chat": "cohere", "prov-dbx-chat": "databricks"}


@pytest.fixture(scope="module")
def standins():
    servers = standin.ProviderStandIns().start()
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def endpoints(stack, workspace, standins):
    workspace.secrets.create_scope(scope=SCOPE)
    for key, value in {**SECRETS, "gcp": standins.service_account_key()}.items():
        workspace.secrets.put_secret(scope=SCOPE, key=key, string_value=value)
    created = {}
    for name, (provider, model, task, (config_field, config)) in _entities(standins.url).items():
        entity = {"external_model": {"provider": provider, "name": model, "task": task, config_field: config,
                                     "timeout_s": 10.0, "max_retries": 0}}
        created[name] = create_external_endpoint(stack, name, entity)
    return created


@pytest.fixture(scope="module")
def client(stack):
    return openai.OpenAI(base_url=stack.url + "/serving-endpoints", api_key=stack.admin_token, max_retries=0)


def test_the_endpoints_are_ready_and_show_references_never_keys(stack, endpoints, standins):
    for name, answer in endpoints.items():
        assert answer["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}, name
        text = stack.api("GET", f"/api/2.0/serving-endpoints/{name}").text
        for secret in (*SECRETS.values(), "PRIVATE KEY"):
            assert secret not in text, name
    shown = stack.api("GET", "/api/2.0/serving-endpoints/prov-claude-bedrock").json()
    config = shown["config"]["served_entities"][0]["external_model"]["amazon_bedrock_config"]
    assert config["aws_secret_access_key"] == _ref("aws-secret") and config["bedrock_provider"] == "anthropic"


@pytest.mark.parametrize("name", CHAT_ENDPOINTS)
def test_openai_sdk_chat_through_each_provider(client, endpoints, standins, name):
    before = len(standins.sent(WIRE[name]))
    reply = client.chat.completions.create(
        model=name, max_tokens=50,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}])
    assert reply.choices[0].message.content == "echo: hello there"
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens == 3 and reply.usage.total_tokens > 3
    [sent] = standins.sent(WIRE[name])[before:]   # exactly one call, in that provider's own format
    headers, body = sent["headers"], sent["body"]
    if name == "prov-azure-chat":
        assert headers["api-key"] == standin.AZURE_KEY and sent["query"]["api-version"] == standin.AZURE_API_VERSION
        assert sent["path"] == "/openai/deployments/prod/chat/completions"
    elif name == "prov-azuread-chat":
        assert standins.issued[headers["Authorization"].removeprefix("Bearer ")] == "entra"
        assert "api-key" not in headers
    elif WIRE[name] == "bedrock":   # the stand-in answered only because botocore verified the signature
        assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=" + bedrock_standin.AWS_ACCESS_KEY_ID)
        assert sent["raw_path"].endswith("%3A0/invoke") and "model" not in body
    elif name == "prov-gemini-chat":
        assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
        assert body["generationConfig"] == {"maxOutputTokens": 50}
        assert standins.issued[headers["Authorization"].removeprefix("Bearer ")] == "google"
    elif name == "prov-cohere-chat":
        assert sent["path"] == "/v2/chat" and headers["Authorization"] == f"Bearer {standin.COHERE_KEY}"
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    else:
        assert sent["path"] == "/serving-endpoints/their-llm/invocations" and "model" not in body
        assert headers["Authorization"] == f"Bearer {standin.DATABRICKS_TOKEN}"


@pytest.mark.parametrize("name", CHAT_ENDPOINTS)
def test_openai_sdk_streaming_through_each_provider(client, endpoints, name):
    chunks = list(client.chat.completions.create(
        model=name, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "stream me some words"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream me some words"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == 5 and not chunks[-1].choices
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 5   # relayed as they came


def test_titan_completions_plain_and_streamed(client, endpoints, standins):
    reply = client.completions.create(model="prov-titan-text", prompt="once upon a time", max_tokens=20)
    assert reply.choices[0].text == "echo: once upon a time" and reply.choices[0].finish_reason == "stop"
    sent = standins.sent("bedrock")[-1]
    assert sent["body"] == {"inputText": "once upon a time", "textGenerationConfig": {"maxTokenCount": 20}}
    streamed = list(client.completions.create(model="prov-titan-text", prompt="once upon", stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == "echo: once upon"
    assert standins.sent("bedrock")[-1]["raw_path"].endswith("/invoke-with-response-stream")


@pytest.mark.parametrize("name", EMBEDDING_ENDPOINTS)
def test_openai_sdk_embeddings_through_each_provider(client, endpoints, name):
    inputs = ["alpha"] if name == "prov-titan-embed" else ["alpha", "beta gamma"]
    reply = client.embeddings.create(model=name, input=inputs)   # the SDK asks for base64 and decodes it
    assert [d.embedding for d in reply.data] == [[float(len(t)), float(i) if name != "prov-titan-embed" else 0.0,
                                                  0.25] for i, t in enumerate(inputs)]


def test_databricks_sdk_creates_and_queries_the_new_providers(workspace, standins, endpoints):
    from databricks.sdk.service.serving import (
        ChatMessage, ChatMessageRole, CohereConfig, DatabricksModelServingConfig, EndpointCoreConfigInput,
        ExternalModel, ExternalModelProvider, ServedEntityInput,
    )

    models = {
        "sdk-cohere": ExternalModel(provider=ExternalModelProvider.COHERE, name="command-r", task=CHAT,
                                    cohere_config=CohereConfig(cohere_api_base=standins.url,
                                                               cohere_api_key=_ref("cohere"))),
        "sdk-dbx": ExternalModel(provider=ExternalModelProvider.DATABRICKS_MODEL_SERVING, name="their-llm", task=CHAT,
                                 databricks_model_serving_config=DatabricksModelServingConfig(
                                     databricks_workspace_url=standins.url,
                                     databricks_api_token_plaintext=standin.DATABRICKS_TOKEN)),
    }
    for name, model in models.items():
        endpoint = workspace.serving_endpoints.create_and_wait(
            name, config=EndpointCoreConfigInput(name=name, served_entities=[ServedEntityInput(external_model=model)]))
        assert endpoint.state.ready.value == "READY"
        assert endpoint.config.served_entities[0].external_model.provider == model.provider
        reply = workspace.serving_endpoints.query(
            name, messages=[ChatMessage(role=ChatMessageRole.USER, content="from the sdk")], max_tokens=10)
        assert reply.choices[0].message.content == "echo: from the sdk" and reply.choices[0].finish_reason == "stop"
        assert reply.usage.completion_tokens == 4
    shown = workspace.serving_endpoints.get("sdk-dbx").config.served_entities[0].external_model
    assert shown.databricks_model_serving_config.databricks_api_token_plaintext is None


def test_databricks_sdk_queries_every_provider(workspace, endpoints):
    from databricks.sdk.service.serving import ChatMessage, ChatMessageRole

    for name in CHAT_ENDPOINTS:
        reply = workspace.serving_endpoints.query(
            name, messages=[ChatMessage(role=ChatMessageRole.USER, content="sdk says hi")])
        assert reply.choices[0].message.content == "echo: sdk says hi", name
        assert reply.choices[0].finish_reason == "stop" and reply.usage.completion_tokens == 4, name
    completion = workspace.serving_endpoints.query("prov-titan-text", prompt="sdk prompt")
    assert completion.choices[0].text == "echo: sdk prompt"
    embedded = workspace.serving_endpoints.query("prov-gemini-embed", input=["abc", "de"])
    assert [d.embedding for d in embedded.data] == [[3.0, 0.0, 0.25], [2.0, 1.0, 0.25]]


@pytest.mark.parametrize("config, needle", [
    ({"provider": "amazon-bedrock", "amazon_bedrock_config": {"aws_region": "us-east-1", "bedrock_provider": "mistral",
                                                              "aws_access_key_id": _ref("a"),
                                                              "aws_secret_access_key": _ref("b")}},
     "bedrock_provider 'mistral' is not served by Podium"),
    ({"provider": "google-cloud-vertex-ai", "google_cloud_vertex_ai_config": {"project_id": "p", "region": "us-c1",
                                                                              "private_key": _ref("k"), "zone": "a"}},
     "google_cloud_vertex_ai_config.zone is not a field"),
    ({"provider": "openai", "openai_config": {"openai_api_type": "azure", "openai_api_key": _ref("k"),
                                              "openai_api_base": "https://r.openai.azure.com"}},
     "Missing required field: config.served_entities[0].external_model.openai_config.openai_deployment_name"),
])
def test_bad_provider_configs_are_400_naming_the_field(stack, config, needle):
    body = {"name": "prov-bad", "config": {"name": "prov-bad", "served_entities": [
        {"external_model": {"name": "m", "task": CHAT, **config}}]}}
    reply = stack.api("POST", "/api/2.0/serving-endpoints", json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error_code"] == "INVALID_PARAMETER_VALUE" and needle in reply.json()["message"]


def test_a_users_provider_urls_on_a_private_address_are_refused(stack, standins):
    """The new URL fields go through the egress policy as openai_api_base does: a non-admin may not name a
    loopback address (the stand-in's), and the message names the field, never the URL."""
    token = stack.user_token("prov-user@example.com")
    for provider, config_field, config, url_field in [
        ("cohere", "cohere_config", {"cohere_api_key_plaintext": "k"}, "cohere_api_base"),
        ("databricks-model-serving", "databricks_model_serving_config", {"databricks_api_token_plaintext": "t"},
         "databricks_workspace_url"),
        ("google-cloud-vertex-ai", "google_cloud_vertex_ai_config",
         {"project_id": "p", "region": "us-central1", "private_key_plaintext": "{}"}, "vertex_api_base"),
        ("amazon-bedrock", "amazon_bedrock_config", {"aws_region": "us-east-1", "bedrock_provider": "meta",
                                                     "aws_access_key_id_plaintext": "a",
                                                     "aws_secret_access_key_plaintext": "s"}, "bedrock_api_base"),
    ]:
        body = {"name": "prov-user-endpoint", "config": {"served_entities": [{"external_model": {
            "provider": provider, "name": "m", "task": CHAT, config_field: {**config, url_field: standins.url}}}]}}
        reply = stack.api_as(token, "POST", "/api/2.0/serving-endpoints", json=body)
        assert reply.status_code == 400, reply.text
        assert f"{url_field} is refused by the egress policy" in reply.json()["message"]
        assert standins.url.split("//")[1] not in json.dumps(reply.json())


def test_refused_credentials_are_403_through_the_openai_sdk_and_never_quoted(stack, client, standins, endpoints):
    """A wrong AWS secret (Bedrock's stand-in recomputes the signature and refuses it) and a private key that
    is no service-account key: 403 PERMISSION_DENIED naming the endpoint, with neither value in the answer."""
    bedrock = {"aws_region": "us-east-1", "bedrock_provider": "meta", "aws_access_key_id": _ref("aws-key-id"),
               "aws_secret_access_key_plaintext": "wrong-AWS-secret-value", "bedrock_api_base": standins.url}
    vertex = {"project_id": standin.GCP_PROJECT, "region": "us-central1", "vertex_api_base": standins.url,
              "private_key_plaintext": "not-a-JSON-key-value"}
    for name, provider, config_field, config in [
        ("prov-bad-aws", "amazon-bedrock", "amazon_bedrock_config", bedrock),
        ("prov-bad-gcp", "google-cloud-vertex-ai", "google_cloud_vertex_ai_config", vertex),
    ]:
        create_external_endpoint(stack, name, {"external_model": {
            "provider": provider, "name": "meta.llama3-8b-instruct-v1:0", "task": CHAT, config_field: config}})
        with pytest.raises(openai.PermissionDeniedError) as refused:
            client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
        text = refused.value.response.text
        assert refused.value.response.json()["error_code"] == "PERMISSION_DENIED" and name in text
        assert "wrong-AWS-secret-value" not in text and "not-a-JSON-key-value" not in text
