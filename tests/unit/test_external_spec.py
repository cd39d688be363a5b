"""External-model specs in the control plane: validation, keys sealed before storage, ready at once without
replicas, and what the routing table tells routers."""

from __future__ import annotations

import pytest

from services.common.deployments import DeploymentStatus
from services.common.errors import InvalidParameter, MalformedRequest
from services.common.gateway_routes import GatewayPolicy, RateLimitRule
from services.common.secret_box import Cipher, open_ciphertext
from services.control_plane import spec
from services.control_plane.core import EndpointService
from services.control_plane.store import EndpointStore
from tests.support.identity import INTERNAL_TOKEN, start_identity

CHAT = "llm/v1/chat"
OPENAI = {"provider": "openai", "name": "gpt-4o", "task": CHAT,
          "openai_config": {"openai_api_key": "{{secrets/llm/openai}}"}}


def _entity(**external_model) -> dict:
    return {"external_model": {**OPENAI, **external_model}}


def _validate(*entities) -> dict:
    return spec.validate_config({"served_entities": list(entities)})


@pytest.mark.parametrize("entity, want", [
    pytest.param(_entity(), {"name": "gpt-4o", "external_model": OPENAI}, id="openai with a secret reference"),
    pytest.param(_entity(name="gpt-4.1:mini"), {"name": "gpt-4-1-mini"}, id="default name: '.' and ':' become '-'"),
    pytest.param({"name": "mine", **_entity()}, {"name": "mine"}, id="a given name"),
    pytest.param(_entity(openai_config={"openai_api_key_plaintext": "sk-1", "openai_api_base": "http://h:1/v1/"}),
                 {"external_model": {**OPENAI, "openai_config": {"openai_api_key_plaintext": "sk-1",
                                                                "openai_api_base": "http://h:1/v1"}}},
                 id="plaintext key (sealed later), base URL without the trailing slash"),
    pytest.param({"external_model": {"provider": "anthropic", "name": "claude", "task": "llm/v1/completions",
                                     "anthropic_config": {"anthropic_api_key_plaintext": "k"}}},
                 {"name": "claude"}, id="anthropic completions"),
    pytest.param({"external_model": {"provider": "custom", "name": "llama", "task": "llm/v1/embeddings",
                                     "custom_provider_config": {"custom_provider_url": "https://llm.internal/v1"}}},
                 {"name": "llama"}, id="custom provider without auth"),
    pytest.param({"external_model": {"provider": "custom", "name": "l", "task": CHAT, "custom_provider_config": {
        "custom_provider_url": "https://x/v1", "api_key_auth": {"key": "X-Api-Key", "value": "{{secrets/a/b}}"}}}},
                 {"name": "l"}, id="custom provider with an API-key header"),
    pytest.param(_entity(timeout_s=5, max_retries=0), {"external_model": {**OPENAI, "timeout_s": 5.0, "max_retries": 0}},
                 id="per-endpoint timeout and retries"),
])
def test_valid_external_models(entity, want):
    [normalized] = _validate(entity)["served_entities"]
    for key, value in want.items():
        assert normalized[key] == value
    assert set(normalized) == {"name", "external_model"}  # no sizing fields: nothing runs replicas


@pytest.mark.parametrize("entities, error, needle", [
    ([_entity(provider="cohere")], InvalidParameter, "'cohere' is not served by Podium"),
    ([_entity(provider="nope")], InvalidParameter, "must be one of openai, custom, anthropic"),
    ([_entity(task="llm/v1/images")], InvalidParameter, "task 'llm/v1/images'"),
    ([{"external_model": {"provider": "anthropic", "name": "c", "task": "llm/v1/embeddings",
                          "anthropic_config": {"anthropic_api_key": "{{secrets/a/b}}"}}}], InvalidParameter,
     "not available for provider 'anthropic'"),
    ([_entity(name="")], InvalidParameter, "external_model.name"),
    ([_entity(openai_config=None)], InvalidParameter, "Missing required field: config.served_entities[0]"
                                                      ".external_model.openai_config"),
    ([_entity(anthropic_config={})], InvalidParameter, "anthropic_config does not go with provider 'openai'"),
    ([_entity(openai_config={})], InvalidParameter, "openai_api_key (a {{secrets/<scope>/<key>}} reference)"),
    ([_entity(openai_config={"openai_api_key": "{{secrets/a/b}}", "openai_api_key_plaintext": "k"})],
     InvalidParameter, "not both"),
    ([_entity(openai_config={"openai_api_key": "sk-raw-value"})], InvalidParameter, "must be a secret reference"),
    ([_entity(openai_config={"openai_api_key_plaintext": "k", "openai_api_type": "azure"})], InvalidParameter,
     "openai_api_type 'azure'"),
    ([_entity(openai_config={"openai_api_key_plaintext": "k", "openai_api_base": "ftp://x"})], InvalidParameter,
     "http(s) base URL"),
    ([_entity(timeout_s=0)], InvalidParameter, "timeout_s"),
    ([_entity(max_retries=9)], InvalidParameter, "max_retries"),
    ([{**_entity(), "entity_name": "c.s.m", "entity_version": "1"}], InvalidParameter, "not both"),
    ([_entity(), {"entity_name": "c.s.m", "entity_version": "1"}], InvalidParameter, "not a mix"),
    ([{"name": "a", **_entity()}, {"name": "b", **_entity(task="llm/v1/completions")}], InvalidParameter,
     "not a mix"),
    ([{"external_model": "gpt"}], MalformedRequest, "must be a JSON object"),
])
def test_invalid_external_models_name_the_field_never_the_value(entities, error, needle):
    with pytest.raises(error) as refused:
        _validate(*entities)
    assert needle in refused.value.message
    assert "sk-raw-value" not in refused.value.message


@pytest.fixture
async def service(tmp_path):
    cipher = Cipher.from_key(bytes(range(32)))
    identity = await start_identity(f"sqlite:///{tmp_path / 'podium.db'}")
    service = EndpointService(EndpointStore(identity.engine), identity.identity, cipher=cipher)
    await service.start()
    service.alice = (await identity.user_token("alice"))[1]
    yield service, cipher, tmp_path / "podium.db"


async def test_external_endpoint_is_ready_at_once_and_its_key_is_sealed(service):
    service, cipher, db = service
    body = {"name": "gpt", "config": {"served_entities": [_entity(openai_config={"openai_api_key_plaintext": "sk-PLAIN"})]},
            "ai_gateway": {"rate_limits": [{"calls": 3, "key": "user", "renewal_period": "minute"}], "inference_table_config": {"enabled": True, "catalog_name": "main", "schema_name": "default"}}}
    created = await service.create(service.alice, body)
    assert created["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"} and created["task"] == CHAT
    assert "pending_config" not in created
    assert service.deployments(INTERNAL_TOKEN) == []  # nothing for the scaler to start
    assert b"sk-PLAIN" not in db.read_bytes() and b"sk-PLAIN" not in (db.parent / "podium.db-wal").read_bytes()
    for view in (created, await service.get(service.alice, "gpt"), await service.list(service.alice)):
        assert "sk-PLAIN" not in str(view) and "_ciphertext" not in str(view) and "_plaintext" not in str(view)

    [routes] = service.routing_table()
    [route] = routes.routes
    target = route.external_model
    assert (target.provider, target.name, target.api_base, target.auth_header) == (
        "openai", "gpt-4o", "https://api.openai.com/v1", "authorization")
    assert open_ciphertext(cipher, target.credential_field, target.credential) == "sk-PLAIN"
    assert routes.gateway == GatewayPolicy(CHAT, (RateLimitRule("user", calls=3),), False, True)

    # A scaler report about other deployments changes nothing: the entity needs none.
    await service.report(INTERNAL_TOKEN, [DeploymentStatus("unrelated", ("127.0.0.1:1",))])
    assert (await service.get(service.alice, "gpt"))["state"]["ready"] == "READY"


async def test_updating_to_another_provider_serves_the_new_config_at_once(service):
    service, cipher, _ = service
    await service.create(service.alice, {"name": "llm", "config": {"served_entities": [_entity()]}})
    anthropic = {"external_model": {"provider": "anthropic", "name": "claude", "task": CHAT,
                                    "anthropic_config": {"anthropic_api_key_plaintext": "sk-ant"}}}
    updated = await service.update_config(service.alice, "llm", {"served_entities": [anthropic]})
    assert updated["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    assert updated["config"]["config_version"] == 2
    [route] = service.routing_table()[0].routes
    assert route.external_model.auth_header == "x-api-key"
    assert route.external_model.api_base == "https://api.anthropic.com"


async def test_plain_custom_model_endpoints_keep_no_gateway_policy(service):
    service, _, _ = service
    await service.create(service.alice,
                         {"name": "m", "config": {"served_entities": [{"entity_name": "c.s.m", "entity_version": "1"}]}})
    [deployment] = service.deployments(INTERNAL_TOKEN)
    await service.report(INTERNAL_TOKEN, [DeploymentStatus(deployment.key, ("127.0.0.1:9",))])
    [routes] = service.routing_table()
    assert routes.gateway is None and routes.routes[0].external_model is None  # the fast path stays fast
