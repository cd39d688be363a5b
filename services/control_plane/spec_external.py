"""Validates a served entity's `external_model` (ExternalModel in the Databricks API). Pure.

Podium serves Databricks' providers, all answered in the OpenAI shape: `openai` (and Azure OpenAI through
`openai_config.openai_api_type` `azure` / `azuread`, and any OpenAI-compatible server through
`openai_api_base`), `anthropic`, `amazon-bedrock` (Anthropic, Amazon Titan, Cohere, AI21 Jamba and Meta Llama
models as Bedrock frames them), `google-cloud-vertex-ai` (Gemini), `cohere`, `databricks-model-serving` (another Databricks or
Podium serving endpoint) and `custom` (an OpenAI-compatible base URL). Each `<provider>_config` takes the
fields of the SDK's dataclass and a few Podium extensions (base URLs for proxies and stand-ins); any other
field is refused, so nothing accepted is silently ignored. Secret fields come in pairs: `<x>` must be a
`{{secrets/scope/key}}` reference, `<x>_plaintext` a raw value that the control plane encrypts before storing
it. Error messages name fields, never their values (a value may be a key).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from services.common.egress import PRIVATE_EGRESS, EgressPolicy, url_refusal
from services.common.errors import InvalidParameter
from services.common.principals import Principal
from services.common.secret_box import parse_reference
from services.control_plane.spec_fields import require_object as _object, require_str as _str
from services.control_plane.spec_options import validate_pricing

CHAT, COMPLETIONS, EMBEDDINGS = "llm/v1/chat", "llm/v1/completions", "llm/v1/embeddings"
TASKS = (CHAT, COMPLETIONS, EMBEDDINGS)
PROVIDER_TASKS = {
    "openai": TASKS,
    "custom": TASKS,
    "anthropic": (CHAT, COMPLETIONS),  # Anthropic has no embeddings API
    "amazon-bedrock": TASKS,           # narrowed by bedrock_provider (BEDROCK_TASKS)
    "google-cloud-vertex-ai": TASKS,
    "cohere": TASKS,
    "databricks-model-serving": TASKS,
}
OTHER_DATABRICKS_PROVIDERS = ("ai21labs", "palm")
CONFIG_FIELDS = ("openai_config", "anthropic_config", "custom_provider_config", "ai21labs_config",
                 "amazon_bedrock_config", "cohere_config", "databricks_model_serving_config",
                 "google_cloud_vertex_ai_config", "palm_config")
CONFIG_OF = {"openai": "openai_config", "anthropic": "anthropic_config", "custom": "custom_provider_config",
             "amazon-bedrock": "amazon_bedrock_config", "google-cloud-vertex-ai": "google_cloud_vertex_ai_config",
             "cohere": "cohere_config", "databricks-model-serving": "databricks_model_serving_config"}
# Every field of a provider config that names a URL Podium will call: the egress policy checks each.
URL_FIELDS = {"openai": ("openai_api_base", "microsoft_entra_authority_host"), "anthropic": ("anthropic_api_base",),
              "custom": ("custom_provider_url",), "amazon-bedrock": ("bedrock_api_base",),
              "google-cloud-vertex-ai": ("vertex_api_base",), "cohere": ("cohere_api_base",),
              "databricks-model-serving": ("databricks_workspace_url",)}
# The model families Podium translates, as Bedrock names them, and their tasks. `meta` (Llama) is a Podium
# extension of the SDK's enum; Bedrock's own model ids say `meta.llama...`.
BEDROCK_TASKS = {"ai21labs": (CHAT, COMPLETIONS), "anthropic": (CHAT, COMPLETIONS), "amazon": TASKS, "cohere": TASKS,
                 "meta": (CHAT, COMPLETIONS)}
OPENAI_API_TYPES = ("openai", "azure", "azuread")
ENTRA_FIELDS = ("microsoft_entra_client_id", "microsoft_entra_tenant_id", "microsoft_entra_client_secret",
                "microsoft_entra_client_secret_plaintext", "microsoft_entra_authority_host")
AZURE_FIELDS = ("openai_deployment_name", "openai_api_version")
_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_GCP_REGION = re.compile(r"^[a-z]+(-[a-z]+)*\d*(-[a-z0-9]+)*$")
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
    validate = {"openai": _openai_config, "anthropic": _anthropic_config, "custom": _custom_config,
                "amazon-bedrock": _bedrock_config, "google-cloud-vertex-ai": _vertex_config,
                "cohere": _cohere_config, "databricks-model-serving": _databricks_config}[provider]
    out = {"provider": provider, "name": name, "task": task,
           wanted: validate(_object(model[wanted], f"{field}.{wanted}"), f"{field}.{wanted}", task)}
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
    if model.get("pricing") is not None:   # a Podium extension: the price table usd budgets charge by
        out["pricing"] = validate_pricing(model["pricing"], f"{field}.pricing")
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
        for url_field in URL_FIELDS[provider]:
            url = (model.get(CONFIG_OF[provider]) or {}).get(url_field)
            reason = url_refusal(url, may_reach_private, policy) if url else None
            if reason:
                raise InvalidParameter(f"{field}.served_entities[{i}].external_model.{CONFIG_OF[provider]}."
                                       f"{url_field} is refused by the egress policy: {reason}")
    return {**config, PRIVATE_EGRESS: True} if may_reach_private else config


def default_entity_name(external_model: dict) -> str:
    """As Databricks: the provider's model name with '.' and ':' turned into '-'."""
    return external_model["name"].replace(".", "-").replace(":", "-")


def _openai_config(config: dict, field: str, task: str) -> dict:
    _only(config, ("openai_api_key", "openai_api_key_plaintext", "openai_api_base", "openai_organization",
                   "openai_api_type", *AZURE_FIELDS, *ENTRA_FIELDS), field)
    api_type = config.get("openai_api_type") or "openai"
    if api_type not in OPENAI_API_TYPES:
        raise InvalidParameter(f"{field}.openai_api_type '{api_type}' must be one of {', '.join(OPENAI_API_TYPES)}")
    out: dict = {}
    if api_type == "openai":
        for azure_only in (*AZURE_FIELDS, *ENTRA_FIELDS):
            if config.get(azure_only) is not None:
                raise InvalidParameter(f"{field}.{azure_only} is for Azure OpenAI (openai_api_type azure or azuread)")
        out.update(_secret_pair(config, "openai_api_key", field, required=True))
    else:
        out["openai_api_type"] = api_type
        if config.get("openai_api_base") is None:
            raise InvalidParameter(f"Missing required field: {field}.openai_api_base (the Azure OpenAI resource's "
                                   "URL, e.g. https://my-resource.openai.azure.com)")
        for required in AZURE_FIELDS:
            out[required] = _required_str(config, required, field)
        if api_type == "azure":
            for entra in ENTRA_FIELDS:
                if config.get(entra) is not None:
                    raise InvalidParameter(f"{field}.{entra} is for openai_api_type 'azuread' (Microsoft Entra ID)")
            out.update(_secret_pair(config, "openai_api_key", field, required=True))
        else:
            out.update(_entra(config, field))
    if config.get("openai_api_base") is not None:
        out["openai_api_base"] = _base_url(config["openai_api_base"], f"{field}.openai_api_base")
    if config.get("openai_organization") is not None:
        out["openai_organization"] = _str(config["openai_organization"], f"{field}.openai_organization")
    return out


def _entra(config: dict, field: str) -> dict:
    """azuread: an Entra ID app (client id, tenant id, secret) whose tokens Podium fetches, or a token given as
    openai_api_key; not both."""
    has_app = any(config.get(f) is not None for f in ENTRA_FIELDS)
    has_token = config.get("openai_api_key") is not None or config.get("openai_api_key_plaintext") is not None
    if has_app and has_token:
        raise InvalidParameter(f"{field}: give the microsoft_entra_* fields or openai_api_key (an Entra ID "
                               "token), not both")
    if has_token:
        return _secret_pair(config, "openai_api_key", field, required=True)
    if not has_app:
        raise InvalidParameter(f"Missing required field: {field}.microsoft_entra_client_id, "
                               "microsoft_entra_tenant_id and microsoft_entra_client_secret (or openai_api_key, "
                               "an Entra ID token) for openai_api_type 'azuread'")
    out = {name: _required_str(config, name, field)
           for name in ("microsoft_entra_client_id", "microsoft_entra_tenant_id")}
    out.update(_secret_pair(config, "microsoft_entra_client_secret", field, required=True))
    # Podium extension: Entra ID's sign-in host (a sovereign cloud, or a test server standing in).
    if config.get("microsoft_entra_authority_host") is not None:
        out["microsoft_entra_authority_host"] = _base_url(config["microsoft_entra_authority_host"],
                                                          f"{field}.microsoft_entra_authority_host")
    return out


def _anthropic_config(config: dict, field: str, task: str) -> dict:
    _only(config, ("anthropic_api_key", "anthropic_api_key_plaintext", "anthropic_api_base"), field)
    out = _secret_pair(config, "anthropic_api_key", field, required=True)
    # Podium extension: Databricks always calls api.anthropic.com; a proxy or a test server may stand in.
    if config.get("anthropic_api_base") is not None:
        out["anthropic_api_base"] = _base_url(config["anthropic_api_base"], f"{field}.anthropic_api_base")
    return out


def _bedrock_config(config: dict, field: str, task: str) -> dict:
    _only(config, ("aws_region", "bedrock_provider", "aws_access_key_id", "aws_access_key_id_plaintext",
                   "aws_secret_access_key", "aws_secret_access_key_plaintext", "instance_profile_arn",
                   "uc_service_credential_name", "bedrock_api_base"), field)
    for unserved in ("instance_profile_arn", "uc_service_credential_name"):
        if config.get(unserved) is not None:
            raise InvalidParameter(f"{field}.{unserved} is not served by Podium (it has no AWS instance profiles "
                                   "or Unity Catalog credentials): give aws_access_key_id and aws_secret_access_key")
    region = _required_str(config, "aws_region", field)
    if not _AWS_REGION.match(region):
        raise InvalidParameter(f"{field}.aws_region must be an AWS region such as us-east-1")
    family = _required_str(config, "bedrock_provider", field).lower()
    if family not in BEDROCK_TASKS:
        raise InvalidParameter(f"{field}.bedrock_provider '{family}' is not served by Podium "
                               f"(one of {', '.join(BEDROCK_TASKS)})")
    if task not in BEDROCK_TASKS[family]:
        raise InvalidParameter(f"task '{task}' is not available for bedrock_provider '{family}' "
                               f"(one of {', '.join(BEDROCK_TASKS[family])})")
    out = {"aws_region": region, "bedrock_provider": family,
           **_secret_pair(config, "aws_access_key_id", field, required=True),
           **_secret_pair(config, "aws_secret_access_key", field, required=True)}
    # Podium extension: Databricks always calls bedrock-runtime.<region>.amazonaws.com; a VPC endpoint or a
    # test server may stand in.
    if config.get("bedrock_api_base") is not None:
        out["bedrock_api_base"] = _base_url(config["bedrock_api_base"], f"{field}.bedrock_api_base")
    return out


def _vertex_config(config: dict, field: str, task: str) -> dict:
    _only(config, ("project_id", "region", "private_key", "private_key_plaintext", "vertex_api_base"), field)
    region = _required_str(config, "region", field)
    if not _GCP_REGION.match(region):
        raise InvalidParameter(f"{field}.region must be a Google Cloud region such as us-central1")
    out = {"project_id": _required_str(config, "project_id", field), "region": region,
           **_secret_pair(config, "private_key", field, required=True)}
    # Podium extension: Databricks always calls <region>-aiplatform.googleapis.com.
    if config.get("vertex_api_base") is not None:
        out["vertex_api_base"] = _base_url(config["vertex_api_base"], f"{field}.vertex_api_base")
    return out


def _cohere_config(config: dict, field: str, task: str) -> dict:
    _only(config, ("cohere_api_key", "cohere_api_key_plaintext", "cohere_api_base"), field)
    out = _secret_pair(config, "cohere_api_key", field, required=True)
    if config.get("cohere_api_base") is not None:
        out["cohere_api_base"] = _base_url(config["cohere_api_base"], f"{field}.cohere_api_base")
    return out


def _databricks_config(config: dict, field: str, task: str) -> dict:
    _only(config, ("databricks_workspace_url", "databricks_api_token", "databricks_api_token_plaintext"), field)
    if config.get("databricks_workspace_url") is None:
        raise InvalidParameter(f"Missing required field: {field}.databricks_workspace_url")
    return {"databricks_workspace_url": _base_url(config["databricks_workspace_url"],
                                                  f"{field}.databricks_workspace_url"),
            **_secret_pair(config, "databricks_api_token", field, required=True)}


def _custom_config(config: dict, field: str, task: str) -> dict:
    _only(config, ("custom_provider_url", "bearer_token_auth", "api_key_auth"), field)
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


def _only(config: dict, known: tuple[str, ...], field: str) -> None:
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise InvalidParameter(f"{field}.{unknown[0]} is not a field of {field.rsplit('.', 1)[-1]} "
                               f"(known: {', '.join(known)})")


def _required_str(config: dict, name: str, field: str) -> str:
    value = config.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidParameter(f"Missing required field: {field}.{name}")
    return _str(value, f"{field}.{name}").strip()


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

