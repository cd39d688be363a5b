"""What the routing table tells routers about external models and the AI gateway (control plane → router).

Plain records, sent as JSON inside the routing table's protobuf messages. A credential travels only as a
`{{secrets/scope/key}}` reference or as the stored AES-GCM ciphertext: never as the key itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import orjson

from services.common.guardrail_rules import Guardrails, guardrails_from_raw


@dataclass(frozen=True)
class ExternalModelTarget:
    """How a router calls the provider that serves one external-model served entity."""

    provider: str              # as external_model.provider (services/control_plane/spec_external.py)
    name: str                  # the provider's model name
    task: str                  # llm/v1/chat | llm/v1/completions | llm/v1/embeddings
    api_base: str              # e.g. https://api.openai.com/v1
    credential: str = ""       # a secret reference or a ciphertext; "" = the provider needs no key
    credential_field: str = "" # the spec field the ciphertext was sealed under (its GCM associated data)
    auth_header: str = ""      # "authorization" (Bearer), "x-api-key" (Anthropic) or a custom header
    organization: str = ""     # OpenAI-Organization header
    timeout_s: float | None = None   # None: the router's default
    max_retries: int | None = None   # None: the router's default
    may_reach_private: bool = False  # an admin wrote it: private addresses allowed (services/common/egress.py)
    # The provider's other settings (Azure deployment, AWS region, Vertex project, ...) and its other secrets
    # (field → reference or ciphertext, as `credential`), for providers that need more than one key.
    options: dict = field(default_factory=dict)
    secrets: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RateLimitRule:
    """One AiGatewayRateLimit: `calls` and/or `tokens` per `renewal_period` for callers matching key/principal."""

    key: str                   # endpoint | user | user_group | service_principal
    principal: str = ""        # "" = each caller of that kind gets its own budget (endpoint: the one budget)
    calls: int | None = None
    tokens: int | None = None
    renewal_period_s: int = 60


@dataclass(frozen=True)
class BudgetRule:
    """One ai_gateway.budgets entry (a Podium extension): at most `limit` tokens or US dollars per calendar
    `renewal_period` (UTC) for callers matching key/principal, as RateLimitRule's."""

    key: str                   # endpoint | user | user_group | service_principal
    principal: str = ""
    unit: str = "tokens"       # tokens | usd
    limit: float = 0.0
    renewal_period: str = "day"   # day | month


@dataclass(frozen=True)
class EntityPrice:
    """external_model.pricing of one served entity: what a million input and output tokens cost, in USD."""

    served_entity_name: str
    input_per_million_tokens_usd: float = 0.0
    output_per_million_tokens_usd: float = 0.0


@dataclass(frozen=True)
class GatewayPolicy:
    """The AI-gateway features of one endpoint; absent (None) when it needs none, so queries skip them."""

    task: str = ""             # external endpoints' task; "" for custom models
    rate_limits: tuple[RateLimitRule, ...] = ()
    usage_tracking: bool = False
    inference_table: bool = False
    guardrails: Guardrails | None = None   # None: no check on this endpoint's traffic
    # ai_gateway.fallback_config: the served entities to try, in the config's order, when one answers 429, 5xx
    # or times out; () when fallback is off (or there is nothing to fall back to).
    fallback_order: tuple[str, ...] = ()
    budgets: tuple[BudgetRule, ...] = ()
    prices: tuple[EntityPrice, ...] = ()   # of the served entities, when a budget is in usd

    @property
    def is_external(self) -> bool:
        return bool(self.task)

    def price_of(self, served_entity_name: str) -> EntityPrice | None:
        return next((p for p in self.prices if p.served_entity_name == served_entity_name), None)


def external_to_json(target: ExternalModelTarget | None) -> str:
    return orjson.dumps(asdict(target)).decode() if target else ""


def external_from_json(text: str) -> ExternalModelTarget | None:
    return ExternalModelTarget(**orjson.loads(text)) if text else None


def gateway_to_json(policy: GatewayPolicy | None) -> str:
    return orjson.dumps(asdict(policy)).decode() if policy else ""


def gateway_from_json(text: str) -> GatewayPolicy | None:
    if not text:
        return None
    raw = orjson.loads(text)
    return GatewayPolicy(raw["task"], tuple(RateLimitRule(**r) for r in raw["rate_limits"]),
                         raw["usage_tracking"], raw["inference_table"],
                         guardrails=guardrails_from_raw(raw.get("guardrails")),
                         fallback_order=tuple(raw.get("fallback_order", ())),
                         budgets=tuple(BudgetRule(**b) for b in raw.get("budgets", ())),
                         prices=tuple(EntityPrice(**p) for p in raw.get("prices", ())))
