"""Validates a served entity's `external_model` (ExternalModel in the Databricks API). Pure.

Podium serves three providers, all answered in the OpenAI shape: `openai` (and any OpenAI-compatible server
through `openai_config.openai_api_base`), `anthropic` (its messages API, translated both ways), and `custom`
(`custom_provider_config.custom_provider_url`, an OpenAI-compatible base URL). Secret fields come in pairs:
`<x>` must be a `{{secrets/scope/key}}` reference, `<x>_plaintext` a raw value that the control plane
encrypts before storing it. Error messages name fields, never their values (a value may be a key).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from services.common.egress import PRIVATE_EGRESS, EgressPolicy, url_refusal
from services.common.errors import InvalidParameter
from services.common.principals import Principal
from services.common.secret_box import parse_reference
from services.control_plane.spec_fields import require_object as _object, require_str as _str

TASKS = ("llm/v1/chat", "llm/v1/completions", "llm/v1/embeddings")
PROVIDER_TASKS = {
    "openai": TASKS,
    "custom": TASKS,
    "anthropic": ("llm/v1/chat", "llm/v1/completions"),  # Anthropic has no embeddings API
}
OTHER_DATABRICKS_PROVIDERS = ("ai21labs", "amazon-bedrock", "cohere", "databricks-model-serving",
                              "google-cloud-vertex-ai", "palm")
CONFIG_FIELDS = ("openai_config", "anthropic_config", "custom_provider_config", "ai21labs_config",
                 "amazon_bedrock_config", "cohere_config", "databricks_model_serving_config",
                 "google_cloud_vertex_ai_config", "palm_config")
CONFIG_OF = {"openai": "openai_config", "anthropic": "anthropic_config", "custom": "custom_provider_config"}
URL_FIELDS = {"openai": "openai_api_base", "anthropic": "anthropic_api_base", "custom": "custom_provider_url"}
# Podium extensions (Databricks has no per-endpoint knob for these): bounds keep one endpoint from hogging.
MAX_TIMEOUT_S = 600.0
MAX_RETRIES = 5


def validate_external_model(value: Any, field: str) -> dict:
    """The normalized external_model: provider, name, task, the one provider config, optional timeouts."""
    model = _object(value, field)
    provider = model.get("provider")
    if not isinstance(provider, str) or not provider:
        raise InvalidParameter(f"Missing required field: {field}.provider")
    if provider in OTHER_DATABRICKS_PROVIDERS:
        raise InvalidParameter(f"{field}.provider '{provider}' is not served by Podium "
                               f"(supported: {', '.join(PROVIDER_TASKS)})")
    if provider not in PROVIDER_TASKS:
        raise InvalidParameter(f"{field}.provider '{provider}' must be one of {', '.join(PROVIDER_TASKS)}")
    name = model.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameter(f"Missing required field: {field}.name")
    task = model.get("task")
    if not isinstance(task, str) or not task:
        raise InvalidParameter(f"Missing required field: {field}.task")
    if task not in PROVIDER_TASKS[provider]:
        raise InvalidParameter(f"{field}.task '{task}' is not available for provider '{provider}' "
                               f"(one of {', '.join(PROVIDER_TASKS[provider])})")
    wanted = CONFIG_OF[provider]
    for other in CONFIG_FIELDS:
        if other != wanted and model.get(other) is not None:
            raise InvalidParameter(f"{field}.{other} does not go with provider '{provider}' (give {wanted})")
    if model.get(wanted) is None:
        raise InvalidParameter(f"Missing required field: {field}.{wanted}")
    validate = {"openai": _openai_config, "anthropic": _anthropic_config, "custom": _custom_config}[provider]
    out = {"provider": provider, "name": name, "task": task,
           wanted: validate(_object(model[wanted], f"{field}.{wanted}"), f"{field}.{wanted}")}
    if model.get("timeout_s") is not None:
        timeout_s = model["timeout_s"]
        if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool) or not 0 < timeout_s <= MAX_TIMEOUT_S:
            raise InvalidParameter(f"{field}.timeout_s must be a number of seconds in (0, {MAX_TIMEOUT_S:g}]")
        out["timeout_s"] = float(timeout_s)
    if model.get("max_retries") is not None:
        retries = model["max_retries"]
        if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= MAX_RETRIES:
            raise InvalidParameter(f"{field}.max_retries must be an integer from 0 to {MAX_RETRIES}")
        out["max_retries"] = retries
    return out


def check_egress(config: dict, writer: Principal, policy: EgressPolicy, field: str = "config") -> dict:
    """The validated config, marked PRIVATE_EGRESS when an admin writes it (routers then let its providers be on
    private addresses); InvalidParameter when a provider URL's address or local name is refused by the egress
    policy (services/common/egress.py): a private range, unless an admin writes it or the platform allows it."""
    may_reach_private = writer.is_admin and not writer.is_service
    for i, entity in enumerate(config["served_entities"]):
        model = entity.get("external_model")
        if not model:
            continue
        provider = model["provider"]
        url = (model.get(CONFIG_OF[provider]) or {}).get(URL_FIELDS[provider])
        reason = url_refusal(url, may_reach_private, policy) if url else None
        if reason:
            raise InvalidParameter(f"{field}.served_entities[{i}].external_model.{CONFIG_OF[provider]}."
                                   f"{URL_FIELDS[provider]} is refused by the egress policy: {reason}")
    return {**config, PRIVATE_EGRESS: True} if may_reach_private else config


def default_entity_name(external_model: dict) -> str:
    """As Databricks: the provider's model name with '.' and ':' turned into '-'."""
    return external_model["name"].replace(".", "-").replace(":", "-")


def _openai_config(config: dict, field: str) -> dict:
    api_type = config.get("openai_api_type", "openai")
    if api_type not in (None, "", "openai"):
        raise InvalidParameter(f"{field}.openai_api_type '{api_type}' is not served by Podium (only 'openai'; "
                               "point openai_api_base at any OpenAI-compatible server)")
    for unsupported in ("microsoft_entra_client_id", "microsoft_entra_tenant_id", "microsoft_entra_client_secret",
                        "microsoft_entra_client_secret_plaintext", "openai_deployment_name", "openai_api_version"):
        if config.get(unsupported) is not None:
            raise InvalidParameter(f"{field}.{unsupported} is for Azure OpenAI, which Podium does not serve")
    out = _secret_pair(config, "openai_api_key", field, required=True)
    if config.get("openai_api_base") is not None:
        out["openai_api_base"] = _base_url(config["openai_api_base"], f"{field}.openai_api_base")
    if config.get("openai_organization") is not None:
        out["openai_organization"] = _str(config["openai_organization"], f"{field}.openai_organization")
    return out


def _anthropic_config(config: dict, field: str) -> dict:
    out = _secret_pair(config, "anthropic_api_key", field, required=True)
    # Podium extension: Databricks always calls api.anthropic.com; a proxy or a test server may stand in.
    if config.get("anthropic_api_base") is not None:
        out["anthropic_api_base"] = _base_url(config["anthropic_api_base"], f"{field}.anthropic_api_base")
    return out


def _custom_config(config: dict, field: str) -> dict:
    url = config.get("custom_provider_url")
    if url is None:
        raise InvalidParameter(f"Missing required field: {field}.custom_provider_url")
    out: dict = {"custom_provider_url": _base_url(url, f"{field}.custom_provider_url")}
    bearer, api_key = config.get("bearer_token_auth"), config.get("api_key_auth")
    if bearer is not None and api_key is not None:
        raise InvalidParameter(f"{field}: give bearer_token_auth or api_key_auth, not both")
    if bearer is not None:
        out["bearer_token_auth"] = _secret_pair(_object(bearer, f"{field}.bearer_token_auth"), "token",
                                                f"{field}.bearer_token_auth", required=True)
    if api_key is not None:
        api_key = _object(api_key, f"{field}.api_key_auth")
        header = api_key.get("key")
        if not isinstance(header, str) or not header.strip() or not header.isascii() or ":" in header:
            raise InvalidParameter(f"Missing required field: {field}.api_key_auth.key (an HTTP header name)")
        out["api_key_auth"] = {"key": header.strip(),
                               **_secret_pair(api_key, "value", f"{field}.api_key_auth", required=True)}
    return out


def _secret_pair(config: dict, name: str, field: str, *, required: bool) -> dict:
    """{name: reference} or {name_plaintext: value}: exactly one of the pair."""
    reference, plaintext = config.get(name), config.get(name + "_plaintext")
    if reference is not None and plaintext is not None:
        raise InvalidParameter(f"{field}: give {name} or {name}_plaintext, not both")
    if reference is not None:
        if not isinstance(reference, str) or parse_reference(reference) is None:
            raise InvalidParameter(f"{field}.{name} must be a secret reference {{{{secrets/<scope>/<key>}}}}; "
                                   f"put a raw value in {name}_plaintext instead")
        return {name: reference.strip()}
    if plaintext is not None:
        if not isinstance(plaintext, str) or not plaintext:
            raise InvalidParameter(f"{field}.{name}_plaintext must be a non-empty string")
        return {name + "_plaintext": plaintext}
    if required:
        raise InvalidParameter(f"Missing required field: {field}.{name} (a {{{{secrets/<scope>/<key>}}}} "
                               f"reference) or {field}.{name}_plaintext")
    return {}


def _base_url(value: Any, field: str) -> str:
    url = _str(value, field).strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise InvalidParameter(f"{field} must be an http(s) base URL such as https://api.openai.com/v1")
    return url

