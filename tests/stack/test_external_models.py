"""External models end to end: `podium up`, fake OpenAI/Anthropic servers, and the real clients.

The openai SDK (base_url=<router>/serving-endpoints) and mlflow's databricks deployments client query
endpoints served by OpenAI, Anthropic and an OpenAI-compatible custom server: chat, streaming chat,
completions and embeddings, plus the error mapping of every kind of provider failure.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import openai
import pytest

from tests.support.external import ANTHROPIC_KEY, OPENAI_KEY, create_external_endpoint, external_entity
from tests.support.stack import worker_pids

pytestmark = pytest.mark.stack

CHAT, COMPLETIONS, EMBEDDINGS = "llm/v1/chat", "llm/v1/completions", "llm/v1/embeddings"
ENDPOINTS = {  # name → (provider, task)
    "ext-openai-chat": ("openai", CHAT), "ext-openai-completions": ("openai", COMPLETIONS),
    "ext-openai-embeddings": ("openai", EMBEDDINGS), "ext-claude-chat": ("anthropic", CHAT),
    "ext-claude-completions": ("anthropic", COMPLETIONS), "ext-custom-chat": ("custom", CHAT),
    "ext-custom-embeddings": ("custom", EMBEDDINGS),
}


@pytest.fixture(scope="module")
def endpoints(stack, fake_providers):
    workers_before = worker_pids(stack.data_dir)
    created = {}
    for name, (provider, task) in ENDPOINTS.items():
        # max_retries=1 and a short timeout make the failure tests quick and exact.
        entity = external_entity(fake_providers, provider, task, timeout_s=2.0, max_retries=1)
        created[name] = create_external_endpoint(stack, name, entity)
    assert worker_pids(stack.data_dir) == workers_before  # providers serve them: no replica started
    return created


@pytest.fixture(scope="module")
def client(stack):
    return openai.OpenAI(base_url=stack.url + "/serving-endpoints", api_key=stack.admin_token, max_retries=0)


def test_external_endpoints_are_ready_at_once_and_never_show_the_key(stack, endpoints):
    for name, answer in endpoints.items():
        assert answer["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}, name
        assert answer["task"] == ENDPOINTS[name][1]
        entity = answer["config"]["served_entities"][0]
        assert entity["state"]["deployment"] == "DEPLOYMENT_READY"
        fetched = stack.api("GET", f"/api/2.0/serving-endpoints/{name}")
        listed = stack.api("GET", "/api/2.0/serving-endpoints")
        for text in (json.dumps(answer), fetched.text, listed.text):
            assert OPENAI_KEY not in text and ANTHROPIC_KEY not in text
            assert "_plaintext" not in text and "_ciphertext" not in text
    openai_entity = endpoints["ext-openai-chat"]["config"]["served_entities"][0]
    assert openai_entity["name"] == "gpt-4o-mini"  # Databricks' default: the model name, '.'/':' → '-'
    assert set(openai_entity["external_model"]["openai_config"]) == {"openai_api_base"}


def test_databricks_sdk_creates_and_queries_an_external_model(workspace, fake_providers):
    from databricks.sdk.service.serving import (
        ChatMessage, ChatMessageRole, EndpointCoreConfigInput, ExternalModel, ExternalModelProvider, OpenAiConfig,
        ServedEntityInput,
    )

    entity = ServedEntityInput(external_model=ExternalModel(
        provider=ExternalModelProvider.OPENAI, name="gpt-4o-mini", task="llm/v1/chat",
        openai_config=OpenAiConfig(openai_api_base=fake_providers.url + "/v1", openai_api_key_plaintext=OPENAI_KEY)))
    endpoint = workspace.serving_endpoints.create_and_wait(
        "ext-sdk-chat", config=EndpointCoreConfigInput(name="ext-sdk-chat", served_entities=[entity]))
    assert endpoint.state.ready.value == "READY" and endpoint.task == "llm/v1/chat"
    shown = endpoint.config.served_entities[0].external_model
    assert (shown.provider, shown.name, shown.openai_config.openai_api_key_plaintext) == (
        ExternalModelProvider.OPENAI, "gpt-4o-mini", None)
    reply = workspace.serving_endpoints.query(
        "ext-sdk-chat", messages=[ChatMessage(role=ChatMessageRole.USER, content="from the sdk")])
    assert reply.choices[0].message.content == "echo: from the sdk" and reply.choices[0].finish_reason == "stop"
    assert reply.served_model_name == "gpt-4o-mini" and reply.usage.total_tokens == 3 + 4


@pytest.mark.parametrize("name", ["ext-openai-chat", "ext-claude-chat", "ext-custom-chat"])
def test_openai_sdk_chat(client, endpoints, fake_providers, name):
    reply = client.chat.completions.create(
        model=name, max_tokens=50, temperature=1.0,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}])
    assert reply.choices[0].message.content == "echo: hello there"
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens == 3 and reply.usage.prompt_tokens == reply.usage.total_tokens - 3
    sent = fake_providers.requests[-1]
    if ENDPOINTS[name][0] == "anthropic":  # translated: system prompt apart, temperature onto 0-1
        assert sent["path"] == "/v1/messages" and sent["headers"]["x-api-key"] == ANTHROPIC_KEY
        assert sent["body"]["system"] == "Be brief." and sent["body"]["temperature"] == 0.5
        assert sent["body"]["messages"] == [{"role": "user", "content": "hello there"}]
        assert sent["body"]["max_tokens"] == 50 and sent["body"]["model"] == "claude-3-5-haiku-latest"
    else:
        assert sent["path"] == "/v1/chat/completions"
        assert sent["headers"]["Authorization"] == f"Bearer {OPENAI_KEY}"
        assert sent["body"]["model"] != name and sent["body"]["messages"][0]["role"] == "system"


@pytest.mark.parametrize("name", ["ext-openai-chat", "ext-claude-chat", "ext-custom-chat"])
def test_openai_sdk_streaming_chat(client, endpoints, name):
    chunks = list(client.chat.completions.create(
        model=name, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "stream me some words"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream me some words"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == 5 and not chunks[-1].choices
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 5  # relayed, not re-chunked


def test_a_stream_is_relayed_as_it_comes_not_buffered(client, endpoints, fake_providers):
    # The fake sends one word, then waits until this test has seen it: a buffering router would deadlock.
    stream = client.chat.completions.create(model="ext-openai-chat", stream=True,
                                            messages=[{"role": "user", "content": "__hold__"}])
    texts = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            texts.append(chunk.choices[0].delta.content)
            if len(texts) == 1:
                fake_providers.release.set()
    assert "".join(texts) == "echo: __hold__" and fake_providers.released_in_time[-1] is True


def test_grpc_invoke_answers_external_models(stack, endpoints):
    import grpc

    from podium_api.v1 import query_pb2, query_pb2_grpc

    body = json.dumps({"messages": [{"role": "user", "content": "over grpc"}]}).encode()
    with grpc.insecure_channel(stack.info["grpc_target"]) as channel:
        reply = query_pb2_grpc.QueryStub(channel).Invoke(
            query_pb2.InvokeRequest(endpoint="ext-claude-chat", body=body), timeout=30, metadata=stack.grpc_metadata())
    assert json.loads(reply.body)["choices"][0]["message"]["content"] == "echo: over grpc"
    assert reply.served_model_name == "claude-3-5-haiku-latest"


def test_anthropic_max_tokens_maps_to_length(client, endpoints):
    reply = client.chat.completions.create(model="ext-claude-chat", max_tokens=2,
                                           messages=[{"role": "user", "content": "a long answer please"}])
    assert reply.choices[0].finish_reason == "length" and reply.choices[0].message.content == "echo: a"


@pytest.mark.parametrize("name", ["ext-openai-completions", "ext-claude-completions"])
def test_openai_sdk_completions(client, endpoints, name):
    reply = client.completions.create(model=name, prompt="complete this", max_tokens=20)
    assert reply.choices[0].text == "echo: complete this" and reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens == 2 and reply.usage.completion_tokens == 3
    streamed = list(client.completions.create(model=name, prompt="complete this", max_tokens=20, stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == "echo: complete this"


@pytest.mark.parametrize("name", ["ext-openai-embeddings", "ext-custom-embeddings"])
def test_openai_sdk_embeddings(client, endpoints, fake_providers, name):
    # The SDK asks for base64 by default; the fake, like many servers, knows only floats.
    reply = client.embeddings.create(model=name, input=["one", "three"])
    assert fake_providers.requests[-1]["body"].get("encoding_format") is None
    assert [d.embedding for d in reply.data] == [[3.0, 0.0, 0.25], [5.0, 1.0, 0.25]]
    as_floats = client.embeddings.create(model=name, input="four", encoding_format="float")
    assert as_floats.data[0].embedding == [4.0, 0.0, 0.25]


def test_invocations_embeddings_base64_is_float32_little_endian(stack, endpoints):
    reply = stack.api("POST", "/serving-endpoints/ext-openai-embeddings/invocations",
                      json={"input": ["abc"], "encoding_format": "base64"})
    encoded = reply.json()["data"][0]["embedding"]
    assert np.frombuffer(base64.b64decode(encoded), dtype="<f4").tolist() == [3.0, 0.0, 0.25]


@pytest.mark.parametrize("name", ["ext-openai-chat", "ext-claude-chat"])
def test_mlflow_predict_and_predict_stream(stack, endpoints, monkeypatch, name):
    from mlflow.deployments import get_deploy_client

    monkeypatch.setenv("DATABRICKS_HOST", stack.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", stack.admin_token)
    deploy = get_deploy_client("databricks")
    answer = deploy.predict(endpoint=name, inputs={"messages": [{"role": "user", "content": "hi mlflow"}],
                                                   "max_tokens": 20})
    assert answer["choices"][0]["message"]["content"] == "echo: hi mlflow"
    assert answer["choices"][0]["finishReason"] == "stop"  # what databricks-sdk reads (reference §7.7)
    chunks = list(deploy.predict_stream(endpoint=name, inputs={"messages": [{"role": "user", "content": "hi stream"}]}))
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "echo: hi stream"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("name", ["ext-openai-chat", "ext-claude-chat"])
def test_stream_is_data_lines_only_ending_with_done(stack, endpoints, name):
    reply = stack.api("POST", f"/serving-endpoints/{name}/invocations", stream=True,
                      json={"messages": [{"role": "user", "content": "lines please"}], "stream": True})
    assert reply.status_code == 200 and reply.headers["Content-Type"].startswith("text/event-stream")
    assert reply.headers["served-model-name"] and reply.headers["x-request-id"]
    lines = [line for line in reply.iter_lines(decode_unicode=True) if line]
    assert all(line.startswith("data: ") for line in lines), lines  # no event:, no ': keep-alive'
    assert lines[-1] == "data: [DONE]" and lines.count("data: [DONE]") == 1
    assert all("usage" not in json.loads(line[6:]) for line in lines[:-1])  # not asked for: not sent


# ---- provider failures, as clear errors ----

def _error(stack, name: str, content: str):
    reply = stack.api("POST", f"/serving-endpoints/{name}/invocations",
                      json={"messages": [{"role": "user", "content": content}]})
    return reply, reply.json()


@pytest.mark.parametrize("name, provider", [("ext-openai-chat", "openai"), ("ext-claude-chat", "anthropic")])
def test_provider_429_is_429_with_retry_after(client, stack, endpoints, name, provider):
    reply, error = _error(stack, name, "__429__")
    assert reply.status_code == 429 and reply.headers["Retry-After"] == "7"
    assert error["error_code"] == "REQUEST_LIMIT_EXCEEDED" and provider in error["message"]
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=name, messages=[{"role": "user", "content": "__429__"}])


@pytest.mark.parametrize("name, provider", [("ext-openai-chat", "openai"), ("ext-claude-chat", "anthropic")])
def test_provider_5xx_is_502_after_the_configured_retries(stack, endpoints, fake_providers, name, provider):
    before = fake_providers.attempts["__500__"]
    reply, error = _error(stack, name, "__500__")
    assert reply.status_code == 502 and error["error_code"] == "BAD_GATEWAY"
    assert f"Provider {provider}" in error["message"] and "HTTP 500" in error["message"]
    assert fake_providers.attempts["__500__"] - before == 2  # max_retries=1: one try, one retry


def test_a_transient_provider_failure_is_retried(stack, endpoints):
    reply, answer = _error(stack, "ext-openai-chat", "__flaky__")
    assert reply.status_code == 200 and answer["choices"][0]["message"]["content"] == "echo: __flaky__"


def test_provider_timeout_is_504_naming_the_provider(stack, endpoints):
    reply, error = _error(stack, "ext-claude-chat", "__slow__")  # the endpoint's timeout_s is 2 s
    assert reply.status_code == 504 and error["error_code"] == "DEADLINE_EXCEEDED"
    assert "anthropic" in error["message"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_refused_credentials_are_a_4xx_that_never_shows_the_key(stack, fake_providers, provider):
    wrong = f"sk-wrong-{provider}-key-0123456789"
    create_external_endpoint(stack, f"ext-bad-key-{provider}", external_entity(fake_providers, provider, CHAT, key=wrong))
    reply, error = _error(stack, f"ext-bad-key-{provider}", "hello")
    assert reply.status_code == 403 and error["error_code"] == "PERMISSION_DENIED"
    assert "refused the credentials configured for endpoint" in error["message"]
    assert wrong not in reply.text and "Incorrect API key" not in reply.text


def test_a_provider_echoing_the_key_is_redacted(stack, endpoints):
    reply, error = _error(stack, "ext-openai-chat", "__echo_key__")
    assert reply.status_code == 400 and "[REDACTED]" in error["message"] and OPENAI_KEY not in reply.text


def test_a_mid_stream_failure_reaches_the_openai_client(client, endpoints):
    for name in ("ext-openai-chat", "ext-claude-chat"):
        with pytest.raises(openai.APIError):
            list(client.chat.completions.create(model=name, stream=True,
                                                messages=[{"role": "user", "content": "__midstream_error__"}]))


@pytest.mark.parametrize("path, body, status, code, needle", [
    ("/serving-endpoints/embeddings", {"model": "ext-openai-chat", "input": "x"}, 400, "INVALID_PARAMETER_VALUE",
     "serves llm/v1/chat"),
    ("/serving-endpoints/chat/completions", {"model": "no-such-endpoint", "messages": []}, 404,
     "RESOURCE_DOES_NOT_EXIST", "no-such-endpoint"),
    ("/serving-endpoints/chat/completions", {"messages": [{"role": "user", "content": "x"}]}, 400,
     "INVALID_PARAMETER_VALUE", "model"),
    ("/serving-endpoints/ext-openai-chat/invocations", {"prompt": "no messages"}, 400, "INVALID_PARAMETER_VALUE",
     "messages"),
    ("/serving-endpoints/ext-claude-chat/invocations", {"messages": [{"role": "tool", "content": "x"}]}, 400,
     "INVALID_PARAMETER_VALUE", "role 'tool'"),
    ("/serving-endpoints/ext-openai-embeddings/invocations", {"input": "x", "stream": True}, 400,
     "INVALID_PARAMETER_VALUE", "stream"),
])
def test_bad_queries_are_clear_errors(stack, endpoints, path, body, status, code, needle):
    reply = stack.api("POST", path, json=body)
    assert reply.status_code == status, reply.text
    assert reply.json()["error_code"] == code and needle in reply.json()["message"]


@pytest.mark.parametrize("external_model, needle", [
    ({"provider": "palm", "name": "m", "task": CHAT, "palm_config": {}}, "not served by Podium"),
    ({"provider": "anthropic", "name": "m", "task": EMBEDDINGS,
      "anthropic_config": {"anthropic_api_key_plaintext": "k"}}, "not available for provider 'anthropic'"),
    ({"provider": "openai", "name": "m", "task": CHAT, "openai_config": {"openai_api_key": "sk-raw-key-value"}},
     "must be a secret reference"),
    ({"provider": "openai", "name": "m", "task": CHAT}, "openai_config"),
])
def test_invalid_external_models_are_refused_at_create(stack, external_model, needle):
    reply = stack.api("POST", "/api/2.0/serving-endpoints", json={
        "name": "ext-invalid", "config": {"served_entities": [{"external_model": external_model}]}})
    assert reply.status_code == 400 and needle in reply.json()["message"], reply.text
    assert "sk-raw-key-value" not in reply.text
