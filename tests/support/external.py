"""Creating external-model endpoints on a running stack, pointed at the fake providers."""

from __future__ import annotations

OPENAI_KEY = "sk-test-OPENAI-KEY-7f3a9c1e5b2d4f60"
ANTHROPIC_KEY = "sk-ant-test-ANTHROPIC-KEY-1c9e7a3f5d2b"


def external_entity(providers, provider: str, task: str, *, key: str | None = None, name: str | None = None,
                    **extra) -> dict:
    """A served entity calling the fake `provider`; the key as `*_plaintext` unless a reference is given."""
    if provider == "openai":
        config = {"openai_config": {"openai_api_base": providers.url + "/v1",
                                    **({"openai_api_key": key} if key and key.startswith("{{")
                                       else {"openai_api_key_plaintext": key or OPENAI_KEY})}}
        model = "gpt-4o-mini" if task != "llm/v1/embeddings" else "text-embedding-3-small"
    elif provider == "anthropic":
        config = {"anthropic_config": {"anthropic_api_base": providers.url,
                                       "anthropic_api_key_plaintext": key or ANTHROPIC_KEY}}
        model = "claude-3-5-haiku-latest"
    else:
        config = {"custom_provider_config": {"custom_provider_url": providers.url + "/v1",
                                             "bearer_token_auth": {"token_plaintext": key or OPENAI_KEY}}}
        model = "my-self-hosted-llm"
    entity = {"external_model": {"provider": provider, "name": model, "task": task, **config, **extra}}
    if name:
        entity["name"] = name
    return entity


def create_external_endpoint(stack, name: str, entity: dict, **fields) -> dict:
    body = {"name": name, "config": {"name": name, "served_entities": [entity]}, **fields}
    reply = stack.api("POST", "/api/2.0/serving-endpoints", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()
