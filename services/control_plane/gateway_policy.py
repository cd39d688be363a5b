"""What routers need from a stored endpoint to serve it through the AI gateway. Pure.

`external_target` turns a stored external_model into the provider call a router makes (URL, auth header,
credential as a reference or ciphertext). `gateway_policy` gathers the endpoint's rate limits
(`ai_gateway.rate_limits`, where the legacy `rate_limits` are stored too), usage tracking and
inference-table switches (`auto_capture_config` included), guardrails, fallback order, spend budgets and the
served entities' prices (only when a budget is in usd); None when the
endpoint needs none of it, so its queries stay on the plain forwarding path. The stored values were
validated (spec_options.py), so this only converts them.
"""

from __future__ import annotations

from dataclasses import replace

from services.common.gateway_routes import BudgetRule, EntityPrice, ExternalModelTarget, GatewayPolicy, RateLimitRule
from services.common.guardrail_rules import PII_NONE, GuardrailSide, Guardrails
from services.common.egress import PRIVATE_EGRESS
from services.common.secret_box import CIPHERTEXT_SUFFIX

DEFAULT_API_BASE = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com",
                    "cohere": "https://api.cohere.com", "microsoft_entra": "https://login.microsoftonline.com"}
RENEWAL_PERIOD_S = {"minute": 60}
CONFIG_OF = {"openai": "openai_config", "anthropic": "anthropic_config", "custom": "custom_provider_config",
             "amazon-bedrock": "amazon_bedrock_config", "google-cloud-vertex-ai": "google_cloud_vertex_ai_config",
             "cohere": "cohere_config", "databricks-model-serving": "databricks_model_serving_config"}


def external_target(external_model: dict, config: dict | None = None) -> ExternalModelTarget:
    """`config`: the served config it is in, whose PRIVATE_EGRESS mark (an admin wrote it) lets its provider be
    on a private address."""
    may_reach_private = bool((config or {}).get(PRIVATE_EGRESS))
    provider = external_model["provider"]
    config = external_model.get(CONFIG_OF[provider]) or {}
    common = {"provider": provider, "name": external_model["name"], "task": external_model["task"],
              "timeout_s": external_model.get("timeout_s"), "max_retries": external_model.get("max_retries"),
              "may_reach_private": may_reach_private}
    if provider == "openai" and config.get("openai_api_type") in ("azure", "azuread"):
        return _azure_target(config, common)
    if provider in OTHER_TARGETS:
        return OTHER_TARGETS[provider](config, common)
    if provider == "openai":
        return ExternalModelTarget(
            api_base=config.get("openai_api_base") or DEFAULT_API_BASE["openai"],
            credential=_credential(config, "openai_api_key"), credential_field="openai_api_key",
            auth_header="authorization", organization=config.get("openai_organization", ""), **common)
    if provider == "anthropic":
        return ExternalModelTarget(
            api_base=config.get("anthropic_api_base") or DEFAULT_API_BASE["anthropic"],
            credential=_credential(config, "anthropic_api_key"), credential_field="anthropic_api_key",
            auth_header="x-api-key", **common)
    if "bearer_token_auth" in config:
        auth = {"credential": _credential(config["bearer_token_auth"], "token"), "credential_field": "token",
                "auth_header": "authorization"}
    elif "api_key_auth" in config:
        auth = {"credential": _credential(config["api_key_auth"], "value"), "credential_field": "value",
                "auth_header": config["api_key_auth"]["key"].lower()}
    else:
        auth = {}
    return ExternalModelTarget(api_base=config["custom_provider_url"], **auth, **common)


def _azure_target(config: dict, common: dict) -> ExternalModelTarget:
    options = {name: config[name] for name in ("openai_api_type", "openai_deployment_name", "openai_api_version",
                                               "microsoft_entra_client_id", "microsoft_entra_tenant_id")
               if name in config}
    if "microsoft_entra_client_id" in config:   # Podium fetches Entra ID tokens for the app
        options["microsoft_entra_authority_host"] = (config.get("microsoft_entra_authority_host")
                                                     or DEFAULT_API_BASE["microsoft_entra"])
        return ExternalModelTarget(
            api_base=config["openai_api_base"], options=options, organization=config.get("openai_organization", ""),
            secrets=_secrets(config, "microsoft_entra_client_secret"), **common)
    return ExternalModelTarget(
        api_base=config["openai_api_base"], credential=_credential(config, "openai_api_key"),
        credential_field="openai_api_key", auth_header="api-key" if options["openai_api_type"] == "azure"
        else "authorization", organization=config.get("openai_organization", ""), options=options, **common)


def _bedrock_target(config: dict, common: dict) -> ExternalModelTarget:
    region = config["aws_region"]
    return ExternalModelTarget(
        api_base=config.get("bedrock_api_base") or f"https://bedrock-runtime.{region}.amazonaws.com",
        options={"aws_region": region, "bedrock_provider": config["bedrock_provider"]},
        secrets=_secrets(config, "aws_access_key_id", "aws_secret_access_key"), **common)


def _vertex_target(config: dict, common: dict) -> ExternalModelTarget:
    region = config["region"]   # `global` has no regional host
    host = "aiplatform.googleapis.com" if region == "global" else f"{region}-aiplatform.googleapis.com"
    return ExternalModelTarget(
        api_base=config.get("vertex_api_base") or f"https://{host}",
        options={"project_id": config["project_id"], "region": config["region"]},
        secrets=_secrets(config, "private_key"), **common)


def _cohere_target(config: dict, common: dict) -> ExternalModelTarget:
    return ExternalModelTarget(
        api_base=config.get("cohere_api_base") or DEFAULT_API_BASE["cohere"],
        credential=_credential(config, "cohere_api_key"), credential_field="cohere_api_key",
        auth_header="authorization", **common)


def _databricks_target(config: dict, common: dict) -> ExternalModelTarget:
    return ExternalModelTarget(
        api_base=config["databricks_workspace_url"], credential=_credential(config, "databricks_api_token"),
        credential_field="databricks_api_token", auth_header="authorization", **common)


OTHER_TARGETS = {"amazon-bedrock": _bedrock_target, "google-cloud-vertex-ai": _vertex_target,
                 "cohere": _cohere_target, "databricks-model-serving": _databricks_target}


def _secrets(config: dict, *fields: str) -> dict:
    """field → its reference or ciphertext (the router's Credentials opens them by field name)."""
    return {field: _credential(config, field) for field in fields}


def _credential(config: dict, field: str) -> str:
    return config.get(field) or config.get(field + CIPHERTEXT_SUFFIX, "")


def gateway_policy(endpoint: dict, config: dict) -> GatewayPolicy | None:
    ai_gateway = endpoint.get("ai_gateway") or {}
    tasks = {e["external_model"]["task"] for e in config["served_entities"] if e.get("external_model")}
    policy = GatewayPolicy(
        task=next(iter(tasks), ""),
        rate_limits=tuple(RateLimitRule(limit.get("key") or "endpoint", limit.get("principal") or "",
                                        limit.get("calls"), limit.get("tokens"),
                                        RENEWAL_PERIOD_S[limit.get("renewal_period") or "minute"])
                          for limit in ai_gateway.get("rate_limits") or ()),
        usage_tracking=_enabled(ai_gateway.get("usage_tracking_config")),
        # auto_capture_config (the legacy inference table) writes the same records as inference_table_config.
        inference_table=(_enabled(ai_gateway.get("inference_table_config"))
                         or _enabled(config.get("auto_capture_config"))),
        guardrails=_guardrails(ai_gateway.get("guardrails")),
        fallback_order=_fallback_order(ai_gateway.get("fallback_config"), config),
        budgets=tuple(_budget(b) for b in ai_gateway.get("budgets") or ()),
    )
    if any(b.unit == "usd" for b in policy.budgets):
        policy = replace(policy, prices=tuple(
            EntityPrice(e["name"], **e["external_model"]["pricing"]) for e in config["served_entities"]
            if (e.get("external_model") or {}).get("pricing")))
    return None if policy == GatewayPolicy() else policy


def _budget(stored: dict) -> BudgetRule:
    unit = "usd" if "limit_usd" in stored else "tokens"
    return BudgetRule(stored["key"], stored.get("principal") or "", unit, float(stored[f"limit_{unit}"]),
                      stored["renewal_period"])


def _guardrails(stored: object) -> Guardrails | None:
    """The checks routers run; None when no side checks anything (so the endpoint pays nothing)."""
    if not isinstance(stored, dict):
        return None
    sides = [GuardrailSide((params.get("pii") or {}).get("behavior", PII_NONE),
                           tuple(params.get("invalid_keywords") or ()), params.get("safety") is True,
                           tuple(params.get("valid_topics") or ()))
             for params in (stored.get("input") or {}, stored.get("output") or {})]
    guardrails = Guardrails(*sides, guard_endpoint=stored.get("guard_endpoint", ""))
    return guardrails if guardrails.is_active else None


def _fallback_order(fallback_config: object, config: dict) -> tuple[str, ...]:
    """The routed served entities in the order the config lists them, when fallback is on and there are two."""
    if not _enabled(fallback_config):
        return ()
    routed = {r["served_entity_name"] for r in config["traffic_config"]["routes"]}
    order = tuple(e["name"] for e in config["served_entities"] if e["name"] in routed)
    return order if len(order) > 1 else ()


def _enabled(section: object) -> bool:
    return isinstance(section, dict) and section.get("enabled") is True
