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
    ([_entity(provider="palm")], InvalidParameter, "'palm' is not served by Podium"),
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
     "Missing required field: config.served_entities[0].external_model.openai_config.openai_api_base"),
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


# ---- the other Databricks providers ----

REF = "{{secrets/llm/key}}"
AZURE = {"openai_api_type": "azure", "openai_api_base": "https://res.openai.azure.com/",
         "openai_deployment_name": "gpt4o-prod", "openai_api_version": "2024-10-21", "openai_api_key": REF}
ENTRA = {"openai_api_type": "azuread", "openai_api_base": "https://res.openai.azure.com",
         "openai_deployment_name": "d", "openai_api_version": "2024-10-21", "microsoft_entra_client_id": "app",
         "microsoft_entra_tenant_id": "tenant", "microsoft_entra_client_secret": REF}
BEDROCK = {"aws_region": "us-east-1", "bedrock_provider": "Anthropic", "aws_access_key_id": REF,
           "aws_secret_access_key_plaintext": "aws-secret"}
VERTEX = {"project_id": "proj", "region": "us-central1", "private_key": REF}
COHERE = {"cohere_api_key": REF}
DATABRICKS = {"databricks_workspace_url": "https://dbc-1.cloud.databricks.com", "databricks_api_token": REF}


def _model(provider: str, config_field: str, config: dict, task: str = CHAT, name: str = "m") -> dict:
    return {"external_model": {"provider": provider, "name": name, "task": task, config_field: config}}


@pytest.mark.parametrize("entity, want_config", [
    pytest.param(_model("openai", "openai_config", AZURE), {**AZURE, "openai_api_base": "https://res.openai.azure.com"},
                 id="azure openai with an api key"),
    pytest.param(_model("openai", "openai_config", ENTRA), ENTRA, id="azuread with an Entra ID app"),
    pytest.param(_model("openai", "openai_config", {**ENTRA, "microsoft_entra_client_id": None,
                                                    "microsoft_entra_tenant_id": None,
                                                    "microsoft_entra_client_secret": None, "openai_api_key": REF}),
                 {k: v for k, v in ENTRA.items() if not k.startswith("microsoft")} | {"openai_api_key": REF},
                 id="azuread with an Entra ID token as the key"),
    pytest.param(_model("amazon-bedrock", "amazon_bedrock_config", BEDROCK),
                 {**BEDROCK, "bedrock_provider": "anthropic"}, id="bedrock: family case-insensitive"),
    pytest.param(_model("amazon-bedrock", "amazon_bedrock_config", {**BEDROCK, "bedrock_provider": "amazon"},
                        task="llm/v1/embeddings"), {**BEDROCK, "bedrock_provider": "amazon"},
                 id="bedrock titan embeddings"),
    pytest.param(_model("google-cloud-vertex-ai", "google_cloud_vertex_ai_config", VERTEX), VERTEX, id="vertex"),
    pytest.param(_model("cohere", "cohere_config", COHERE, task="llm/v1/embeddings"), COHERE, id="cohere"),
    pytest.param(_model("databricks-model-serving", "databricks_model_serving_config", DATABRICKS), DATABRICKS,
                 id="databricks-model-serving"),
])
def test_other_databricks_providers_are_accepted(entity, want_config):
    [normalized] = _validate(entity)["served_entities"]
    model = normalized["external_model"]
    config_field = next(k for k in model if k.endswith("_config"))
    assert model[config_field] == want_config


@pytest.mark.parametrize("entity, needle", [
    (_model("openai", "openai_config", {**AZURE, "openai_deployment_name": None}),
     "Missing required field: config.served_entities[0].external_model.openai_config.openai_deployment_name"),
    (_model("openai", "openai_config", {**AZURE, "openai_api_version": ""}), "openai_config.openai_api_version"),
    (_model("openai", "openai_config", {**AZURE, "microsoft_entra_client_id": "x"}),
     "microsoft_entra_client_id is for openai_api_type 'azuread'"),
    (_model("openai", "openai_config", {**AZURE, "openai_api_type": "azure_ad"}), "must be one of openai, azure"),
    (_model("openai", "openai_config", {**ENTRA, "openai_api_key": REF}), "not both"),
    (_model("openai", "openai_config", {**ENTRA, "microsoft_entra_tenant_id": None}),
     "Missing required field: config.served_entities[0].external_model.openai_config.microsoft_entra_tenant_id"),
    (_model("openai", "openai_config", {"openai_api_key": REF, "openai_deployment_name": "d"}),
     "openai_deployment_name is for Azure OpenAI"),
    (_model("openai", "openai_config", {"openai_api_key": REF, "openai_api_kee": "x"}),
     "openai_config.openai_api_kee is not a field of openai_config"),
    (_model("amazon-bedrock", "amazon_bedrock_config", {**BEDROCK, "aws_region": None}),
     "Missing required field: config.served_entities[0].external_model.amazon_bedrock_config.aws_region"),
    (_model("amazon-bedrock", "amazon_bedrock_config", {**BEDROCK, "aws_region": "mars"}), "an AWS region"),
    (_model("amazon-bedrock", "amazon_bedrock_config", {**BEDROCK, "bedrock_provider": "mistral"}),
     "bedrock_provider 'mistral' is not served by Podium"),
    (_model("amazon-bedrock", "amazon_bedrock_config", {**BEDROCK, "bedrock_provider": "ai21labs"},
            task="llm/v1/embeddings"), "task 'llm/v1/embeddings' is not available for bedrock_provider 'ai21labs'"),
    (_model("amazon-bedrock", "amazon_bedrock_config", BEDROCK, task="llm/v1/embeddings"),
     "task 'llm/v1/embeddings' is not available for bedrock_provider 'anthropic'"),
    (_model("amazon-bedrock", "amazon_bedrock_config", {**BEDROCK, "aws_secret_access_key_plaintext": None}),
     "amazon_bedrock_config.aws_secret_access_key (a {{secrets/<scope>/<key>}} reference)"),
    (_model("amazon-bedrock", "amazon_bedrock_config", {**BEDROCK, "instance_profile_arn": "arn:aws:iam::1:x"}),
     "instance_profile_arn is not served by Podium"),
    (_model("amazon-bedrock", "amazon_bedrock_config", {**BEDROCK, "aws_access_key_id": "AKIARAWVALUE"}),
     "must be a secret reference"),
    (_model("google-cloud-vertex-ai", "google_cloud_vertex_ai_config", {**VERTEX, "project_id": None}),
     "google_cloud_vertex_ai_config.project_id"),
    (_model("google-cloud-vertex-ai", "google_cloud_vertex_ai_config", {**VERTEX, "private_key": None}),
     "google_cloud_vertex_ai_config.private_key (a {{secrets/<scope>/<key>}} reference)"),
    (_model("google-cloud-vertex-ai", "google_cloud_vertex_ai_config", {**VERTEX, "location": "x"}),
     "google_cloud_vertex_ai_config.location is not a field"),
    (_model("cohere", "cohere_config", {}), "cohere_config.cohere_api_key"),
    (_model("cohere", "cohere_config", {**COHERE, "cohere_api_base": "ftp://x"}), "http(s) base URL"),
    (_model("databricks-model-serving", "databricks_model_serving_config", {"databricks_api_token": REF}),
     "databricks_model_serving_config.databricks_workspace_url"),
    (_model("databricks-model-serving", "databricks_model_serving_config",
            {**DATABRICKS, "databricks_api_token": None}), "databricks_model_serving_config.databricks_api_token"),
    (_model("cohere", "anthropic_config", COHERE), "anthropic_config does not go with provider 'cohere'"),
])
def test_other_databricks_providers_refuse_bad_configs(entity, needle):
    with pytest.raises(InvalidParameter) as refused:
        _validate(entity)
    assert needle in refused.value.message
    assert "AKIARAWVALUE" not in refused.value.message and "aws-secret" not in refused.value.message


@pytest.mark.parametrize("entity, want", [
    (_model("openai", "openai_config", AZURE), {"api_base": "https://res.openai.azure.com", "auth_header": "api-key",
                                                "credential": REF, "secrets": {}}),
    (_model("openai", "openai_config", ENTRA), {"credential": "", "secrets": {"microsoft_entra_client_secret": REF}}),
    (_model("amazon-bedrock", "amazon_bedrock_config", {**BEDROCK, "aws_secret_access_key_plaintext": None,
                                                        "aws_secret_access_key": REF}),
     {"api_base": "https://bedrock-runtime.us-east-1.amazonaws.com", "credential": "",
      "options": {"aws_region": "us-east-1", "bedrock_provider": "anthropic"},
      "secrets": {"aws_access_key_id": REF, "aws_secret_access_key": REF}}),
    (_model("google-cloud-vertex-ai", "google_cloud_vertex_ai_config", VERTEX),
     {"api_base": "https://us-central1-aiplatform.googleapis.com", "secrets": {"private_key": REF},
      "options": {"project_id": "proj", "region": "us-central1"}}),
    (_model("google-cloud-vertex-ai", "google_cloud_vertex_ai_config", {**VERTEX, "region": "global"}),
     {"api_base": "https://aiplatform.googleapis.com"}),
    (_model("cohere", "cohere_config", COHERE), {"api_base": "https://api.cohere.com", "auth_header": "authorization",
                                                 "credential": REF}),
    (_model("databricks-model-serving", "databricks_model_serving_config", DATABRICKS),
     {"api_base": "https://dbc-1.cloud.databricks.com", "credential": REF, "credential_field": "databricks_api_token"}),
])
def test_routing_targets_of_the_other_providers(entity, want):
    from services.control_plane.gateway_policy import external_target

    [normalized] = _validate(entity)["served_entities"]
    target = external_target(normalized["external_model"])
    for key, value in want.items():
        assert getattr(target, key) == value, key
    assert target.options.get("openai_deployment_name", "d") in ("d", "gpt4o-prod")


def test_every_new_secret_field_is_sealed_at_rest():
    from services.common.secret_box import seal_plaintext

    cipher = Cipher.from_key(bytes(range(32)))
    config = {f"{name}_plaintext": "raw" for name in ("aws_access_key_id", "aws_secret_access_key", "private_key",
                                                       "cohere_api_key", "databricks_api_token",
                                                       "microsoft_entra_client_secret")}
    sealed = seal_plaintext(config, cipher)
    assert "raw" not in str(sealed) and all(k.endswith("_ciphertext") for k in sealed)
    assert {open_ciphertext(cipher, k.removesuffix("_ciphertext"), v) for k, v in sealed.items()} == {"raw"}


def test_routers_know_every_provider_the_spec_accepts():
    from services.control_plane import gateway_policy, spec_external

    assert gateway_policy.CONFIG_OF == spec_external.CONFIG_OF
    assert set(spec_external.PROVIDER_TASKS) == set(spec_external.URL_FIELDS) == set(spec_external.CONFIG_OF)
