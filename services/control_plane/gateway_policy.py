"""What routers need from a stored endpoint to serve it through the AI gateway. Pure.

`external_target` turns a stored external_model into the provider call a router makes (URL, auth header,
credential as a reference or ciphertext). `gateway_policy` gathers the endpoint's rate limits
(`ai_gateway.rate_limits`, where the legacy `rate_limits` are stored too), usage tracking and
inference-table switches; None when the endpoint needs none of it, so its queries stay on the plain
forwarding path. The stored values were validated (spec_options.py), so this only converts them.
"""

from __future__ import annotations

from services.common.gateway_routes import ExternalModelTarget, GatewayPolicy, RateLimitRule
from services.common.egress import PRIVATE_EGRESS
from services.common.secret_box import CIPHERTEXT_SUFFIX

DEFAULT_API_BASE = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}
RENEWAL_PERIOD_S = {"minute": 60}


def external_target(external_model: dict, config: dict | None = None) -> ExternalModelTarget:
    """`config`: the served config it is in, whose PRIVATE_EGRESS mark (an admin wrote it) lets its provider be
    on a private address."""
    may_reach_private = bool((config or {}).get(PRIVATE_EGRESS))
    provider = external_model["provider"]
    config = external_model.get(f"{provider}_config") or external_model.get("custom_provider_config") or {}
    common = {"provider": provider, "name": external_model["name"], "task": external_model["task"],
              "timeout_s": external_model.get("timeout_s"), "max_retries": external_model.get("max_retries"),
              "may_reach_private": may_reach_private}
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
        inference_table=_enabled(ai_gateway.get("inference_table_config")),
    )
    return None if policy == GatewayPolicy() else policy


def _enabled(section: object) -> bool:
    return isinstance(section, dict) and section.get("enabled") is True
