"""Validates an endpoint's options besides its served config: tags, AI gateway, legacy rate limits, email
notifications and telemetry, in the Databricks shapes (databricks-sdk service/serving.py). Pure.

Each validator returns the normalized value to store, or raises InvalidParameter / MalformedRequest naming
the field. Unknown fields inside these objects are refused rather than dropped: a misspelt guardrail or
limit that silently did nothing would be worse than a 400.
"""

from __future__ import annotations

import math
import re
from typing import Any

from services.common.errors import InvalidParameter
from services.control_plane.spec_fields import (
    reject_unknown, require_bool, require_enum, require_list, require_non_negative_int, require_object,
    require_str, require_str_list,
)

RENEWAL_PERIODS = ("minute",)
AI_GATEWAY_RATE_LIMIT_KEYS = ("endpoint", "user", "user_group", "service_principal")
LEGACY_RATE_LIMIT_KEYS = ("endpoint", "user")
PII_BEHAVIORS = ("BLOCK", "MASK", "NONE")
TELEMETRY_FEATURES = ("TELEMETRY_FEATURE_INFERENCE_TABLE", "TELEMETRY_FEATURE_LOGS", "TELEMETRY_FEATURE_METRICS",
                      "TELEMETRY_FEATURE_TRACES")
AI_GATEWAY_FIELDS = ("budgets", "fallback_config", "guardrails", "inference_table_config", "rate_limits",
                     "usage_tracking_config")
BUDGET_PERIODS = ("day", "month")
PRICE_FIELDS = ("input_per_million_tokens_usd", "output_per_million_tokens_usd")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
# Tag limits: Databricks documents no serving-endpoint-specific ones, so these are its Unity Catalog tag limits
# (50 tags per object, keys up to 255 characters, values up to 1000).
MAX_TAGS = 50
MAX_TAG_KEY_CHARS = 255
MAX_TAG_VALUE_CHARS = 1000
# Guardrail keywords and topics: every request and answer is checked against each, so they are bounded.
MAX_INVALID_KEYWORDS = 100
MAX_VALID_TOPICS = 50
MAX_KEYWORD_CHARS = 100
ENDPOINT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")   # as services/control_plane/spec.py


# ---- tags ----

def validate_tags(tags: Any, field: str) -> list[dict]:
    out: dict[str, dict] = {}
    if len(require_list(tags, field)) > MAX_TAGS:
        raise InvalidParameter(f"{field}: at most {MAX_TAGS} tags per endpoint")
    for i, tag in enumerate(tags):
        tag = require_object(tag, f"{field}[{i}]")
        reject_unknown(tag, ("key", "value"), f"{field}[{i}]")
        key = tag.get("key")
        if not isinstance(key, str) or not key:
            raise InvalidParameter(f"Missing required field: {field}[{i}].key")
        if len(key) > MAX_TAG_KEY_CHARS:
            raise InvalidParameter(f"{field}[{i}].key must be at most {MAX_TAG_KEY_CHARS} characters")
        if key in out:
            raise InvalidParameter(f"{field}: tag key '{key}' is given twice")
        value = tag.get("value")
        if value is not None and not isinstance(value, str):
            raise InvalidParameter(f"{field}[{i}].value must be a string")
        if value is not None and len(value) > MAX_TAG_VALUE_CHARS:
            raise InvalidParameter(f"{field}[{i}].value must be at most {MAX_TAG_VALUE_CHARS} characters")
        out[key] = {"key": key, "value": value} if value is not None else {"key": key}
    return list(out.values())


def validate_tags_patch(body: Any) -> tuple[list[dict], list[str]]:
    """(tags to add or overwrite, keys to delete) from a PATCH .../tags body."""
    body = require_object(body, "request body")
    reject_unknown(body, ("add_tags", "delete_tags"), "request body")
    add = validate_tags(body.get("add_tags") or [], "add_tags")
    delete = require_str_list(body.get("delete_tags") or [], "delete_tags")
    both = sorted({t["key"] for t in add} & set(delete))
    if both:
        raise InvalidParameter(f"Tag key '{both[0]}' is both in add_tags and in delete_tags")
    return add, delete


def apply_tags_patch(tags: list[dict], add: list[dict], delete: list[str]) -> list[dict]:
    """The endpoint's tags after a patch: added keys overwrite, deleted keys go; order is kept."""
    by_key = {t["key"]: t for t in tags if t["key"] not in delete}
    for tag in add:
        by_key[tag["key"]] = tag
    if len(by_key) > MAX_TAGS:
        raise InvalidParameter(f"add_tags: at most {MAX_TAGS} tags per endpoint")
    return list(by_key.values())


# ---- AI gateway and rate limits ----

def validate_ai_gateway(value: Any, field: str = "ai_gateway") -> dict:
    """AiGatewayConfig (the PUT .../ai-gateway body): only the parts that were given are kept."""
    value = require_object(value, field)
    reject_unknown(value, AI_GATEWAY_FIELDS, field)
    out: dict = {}
    if value.get("guardrails") is not None:
        out["guardrails"] = _guardrails(value["guardrails"], f"{field}.guardrails")
    if value.get("inference_table_config") is not None:
        out["inference_table_config"] = _inference_table(value["inference_table_config"],
                                                         f"{field}.inference_table_config")
    if value.get("rate_limits") is not None:
        out["rate_limits"] = validate_ai_gateway_rate_limits(value["rate_limits"], f"{field}.rate_limits")
    if value.get("usage_tracking_config") is not None:
        out["usage_tracking_config"] = _enabled_only(value["usage_tracking_config"],
                                                     f"{field}.usage_tracking_config", required=False)
    if value.get("fallback_config") is not None:
        out["fallback_config"] = _enabled_only(value["fallback_config"], f"{field}.fallback_config", required=True)
    if value.get("budgets"):
        out["budgets"] = validate_budgets(value["budgets"], f"{field}.budgets")
    return out


def validate_budgets(value: Any, field: str) -> list[dict]:
    """ai_gateway.budgets (a Podium extension): limit_tokens or limit_usd per calendar day or month, by the
    rate limits' keys."""
    budgets, seen = [], set()
    for i, budget in enumerate(require_list(value, field)):
        where = f"{field}[{i}]"
        budget = require_object(budget, where)
        reject_unknown(budget, ("key", "limit_tokens", "limit_usd", "principal", "renewal_period"), where)
        if budget.get("renewal_period") is None:
            raise InvalidParameter(f"Missing required field: {where}.renewal_period")
        out: dict = {"key": require_enum(budget.get("key") or "endpoint", AI_GATEWAY_RATE_LIMIT_KEYS, f"{where}.key"),
                     "renewal_period": require_enum(budget["renewal_period"], BUDGET_PERIODS,
                                                    f"{where}.renewal_period")}
        given = [u for u in ("limit_tokens", "limit_usd") if budget.get(u) is not None]
        if len(given) != 1:
            raise InvalidParameter(f"{where}: give limit_tokens or limit_usd (one of them)")
        if given[0] == "limit_tokens":
            out["limit_tokens"] = require_non_negative_int(budget["limit_tokens"], f"{where}.limit_tokens")
        else:
            out["limit_usd"] = _usd(budget["limit_usd"], f"{where}.limit_usd")
        if budget.get("principal") is not None:
            if out["key"] == "endpoint":
                raise InvalidParameter(f"{where}.principal applies to the keys user, user_group and "
                                       "service_principal, not to endpoint")
            out["principal"] = require_str(budget["principal"], f"{where}.principal")
        identity = (out["key"], out.get("principal"), given[0], out["renewal_period"])
        if identity in seen:
            whose = f" and principal '{out['principal']}'" if out.get("principal") else ""
            raise InvalidParameter(f"{where}: a second {given[0][len('limit_'):]} budget per "
                                   f"{out['renewal_period']} for key '{out['key']}'{whose}")
        seen.add(identity)
        budgets.append(out)
    return budgets


def validate_pricing(value: Any, field: str) -> dict:
    """external_model.pricing (a Podium extension): USD per million input and output tokens, for usd budgets."""
    value = require_object(value, field)
    reject_unknown(value, PRICE_FIELDS, field)
    out = {name: _usd(value[name], f"{field}.{name}") for name in PRICE_FIELDS if value.get(name) is not None}
    if not out:
        raise InvalidParameter(f"{field}: give {' and/or '.join(PRICE_FIELDS)}")
    return out


def check_budget_prices(endpoint: dict, config: dict | None = None) -> dict:
    """The endpoint, once every served entity its budgets count (those of `config`, else of its config and
    pending config) reports tokens and, for a usd budget, has a price; InvalidParameter naming the field."""
    budgets = (endpoint.get("ai_gateway") or {}).get("budgets") or ()
    configs = [config] if config is not None else [endpoint.get("config"), endpoint.get("pending_config")]
    entities = [e for c in configs if c for e in c.get("served_entities", ())]
    for i, budget in enumerate(budgets):
        for entity in entities:
            model = entity.get("external_model")
            if model is None:
                raise InvalidParameter(
                    f"ai_gateway.budgets[{i}]: budgets count the tokens external models report, and served entity "
                    f"'{entity.get('name')}' is not an external model")
            if "limit_usd" in budget and not model.get("pricing"):
                raise InvalidParameter(
                    f"ai_gateway.budgets[{i}].limit_usd needs a price for served entity '{entity.get('name')}': "
                    "set its external_model.pricing, or give limit_tokens")
    return endpoint


def _usd(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InvalidParameter(f"{field} must be a non-negative number of US dollars")
    return float(value)


def validate_ai_gateway_rate_limits(value: Any, field: str) -> list[dict]:
    limits, seen = [], set()
    for i, limit in enumerate(require_list(value, field)):
        where = f"{field}[{i}]"
        limit = require_object(limit, where)
        reject_unknown(limit, ("calls", "key", "principal", "renewal_period", "tokens"), where)
        out = {"renewal_period": _renewal_period(limit, where),
               "key": require_enum(limit.get("key") or "endpoint", AI_GATEWAY_RATE_LIMIT_KEYS, f"{where}.key")}
        for amount in ("calls", "tokens"):
            if limit.get(amount) is not None:
                out[amount] = require_non_negative_int(limit[amount], f"{where}.{amount}")
        if "calls" not in out and "tokens" not in out:
            raise InvalidParameter(f"{where}: give calls, tokens or both")
        if limit.get("principal") is not None:
            if out["key"] == "endpoint":
                raise InvalidParameter(f"{where}.principal applies to the keys user, user_group and "
                                       "service_principal, not to endpoint")
            out["principal"] = require_str(limit["principal"], f"{where}.principal")
        identity = (out["key"], out.get("principal"))
        if identity in seen:
            raise InvalidParameter(f"{where}: a second rate limit for key '{out['key']}'"
                                   + (f" and principal '{out['principal']}'" if out.get("principal") else ""))
        seen.add(identity)
        limits.append(out)
    return limits


def validate_legacy_rate_limits(value: Any, field: str = "rate_limits") -> list[dict]:
    """RateLimit list (PUT .../rate-limits, or `rate_limits` at create): calls per minute by endpoint or user."""
    limits, seen = [], set()
    for i, limit in enumerate(require_list(value, field)):
        where = f"{field}[{i}]"
        limit = require_object(limit, where)
        reject_unknown(limit, ("calls", "key", "renewal_period"), where)
        if limit.get("calls") is None:
            raise InvalidParameter(f"Missing required field: {where}.calls")
        out = {"calls": require_non_negative_int(limit["calls"], f"{where}.calls"),
               "key": require_enum(limit.get("key") or "endpoint", LEGACY_RATE_LIMIT_KEYS, f"{where}.key"),
               "renewal_period": _renewal_period(limit, where)}
        if out["key"] in seen:
            raise InvalidParameter(f"{where}: a second rate limit for key '{out['key']}'")
        seen.add(out["key"])
        limits.append(out)
    return limits


def _renewal_period(limit: dict, where: str) -> str:
    if limit.get("renewal_period") is None:
        raise InvalidParameter(f"Missing required field: {where}.renewal_period")
    return require_enum(limit["renewal_period"], RENEWAL_PERIODS, f"{where}.renewal_period")


def _guardrails(value: Any, field: str) -> dict:
    value = require_object(value, field)
    reject_unknown(value, ("input", "output", "guard_endpoint"), field)
    out: dict = {}
    if value.get("guard_endpoint") is not None:
        out["guard_endpoint"] = require_str(value["guard_endpoint"], f"{field}.guard_endpoint")
        if not ENDPOINT_NAME.fullmatch(out["guard_endpoint"]):
            raise InvalidParameter(f"{field}.guard_endpoint must be the name of a serving endpoint")
    judged = False
    for side in ("input", "output"):
        if value.get(side) is None:
            continue
        where = f"{field}.{side}"
        params = require_object(value[side], where)
        reject_unknown(params, ("invalid_keywords", "pii", "safety", "valid_topics"), where)
        side_out: dict = {}
        if params.get("invalid_keywords") is not None:
            side_out["invalid_keywords"] = _words(params["invalid_keywords"], f"{where}.invalid_keywords",
                                                  MAX_INVALID_KEYWORDS)
        if params.get("valid_topics") is not None:
            side_out["valid_topics"] = _words(params["valid_topics"], f"{where}.valid_topics", MAX_VALID_TOPICS)
        if params.get("pii") is not None:
            pii = require_object(params["pii"], f"{where}.pii")
            reject_unknown(pii, ("behavior",), f"{where}.pii")
            if pii.get("behavior") is None:
                raise InvalidParameter(f"Missing required field: {where}.pii.behavior")
            side_out["pii"] = {"behavior": require_enum(pii["behavior"], PII_BEHAVIORS, f"{where}.pii.behavior")}
        if params.get("safety") is not None:
            side_out["safety"] = require_bool(params["safety"], f"{where}.safety")
        # safety and valid_topics are judgements about meaning: a model must judge them, the endpoint named by
        # guard_endpoint (a Podium extension). Without one they are refused rather than stored and ignored.
        for judgement in ("safety", "valid_topics"):
            if side_out.get(judgement) and "guard_endpoint" not in out:
                raise InvalidParameter(
                    f"{where}.{judgement} needs a model to judge it: set {field}.guard_endpoint to the name of a "
                    "chat endpoint (an external llm/v1/chat model, or a served classifier answering in the chat "
                    "format) that its callers may query, or remove the setting")
            judged = judged or bool(side_out.get(judgement))
        out[side] = side_out
    if "guard_endpoint" in out and not judged:
        raise InvalidParameter(f"{field}.guard_endpoint judges only safety and valid_topics, and neither is on")
    return out


def _words(value: Any, field: str, most: int) -> list[str]:
    words = require_str_list(value, field)
    if len(words) > most:
        raise InvalidParameter(f"{field}: at most {most} entries")
    for i, word in enumerate(words):
        if not word.strip() or len(word) > MAX_KEYWORD_CHARS:
            raise InvalidParameter(f"{field}[{i}] must be 1 to {MAX_KEYWORD_CHARS} characters, not only spaces")
    return words


def _inference_table(value: Any, field: str) -> dict:
    value = require_object(value, field)
    names = ("catalog_name", "schema_name", "table_name_prefix")
    reject_unknown(value, (*names, "enabled"), field)
    out: dict = {n: require_str(value[n], f"{field}.{n}") for n in names if value.get(n) is not None}
    if value.get("enabled") is not None:
        out["enabled"] = require_bool(value["enabled"], f"{field}.enabled")
    if out.get("enabled"):
        for needed in ("catalog_name", "schema_name"):
            if not out.get(needed):
                raise InvalidParameter(f"Missing required field: {field}.{needed} (needed when enabled)")
    return out


def _enabled_only(value: Any, field: str, *, required: bool) -> dict:
    value = require_object(value, field)
    reject_unknown(value, ("enabled",), field)
    if value.get("enabled") is None:
        if required:
            raise InvalidParameter(f"Missing required field: {field}.enabled")
        return {}
    return {"enabled": require_bool(value["enabled"], f"{field}.enabled")}


# ---- notifications and telemetry ----

def validate_email_notifications(value: Any, field: str = "email_notifications") -> dict:
    value = require_object(value, field)
    reject_unknown(value, ("on_update_failure", "on_update_success"), field)
    out = {}
    for event in ("on_update_failure", "on_update_success"):
        if value.get(event) is None:
            continue
        addresses = require_str_list(value[event], f"{field}.{event}")
        for i, address in enumerate(addresses):
            if not EMAIL.fullmatch(address):
                raise InvalidParameter(f"{field}.{event}[{i}] '{address}' is not an email address")
        out[event] = addresses
    return out


def validate_telemetry_config(value: Any, field: str = "telemetry_config") -> dict:
    value = require_object(value, field)
    reject_unknown(value, ("enabled_telemetry_features", "inference_table_config", "table_names",
                           "telemetry_profile_id"), field)
    out: dict = {}
    if value.get("enabled_telemetry_features") is not None:
        features = require_list(value["enabled_telemetry_features"], f"{field}.enabled_telemetry_features")
        out["enabled_telemetry_features"] = [
            require_enum(f, TELEMETRY_FEATURES, f"{field}.enabled_telemetry_features[{i}]")
            for i, f in enumerate(features)]
    if value.get("inference_table_config") is not None:
        where = f"{field}.inference_table_config"
        table = require_object(value["inference_table_config"], where)
        reject_unknown(table, ("name", "sampling_fraction"), where)
        out["inference_table_config"] = {}
        if table.get("name") is not None:
            out["inference_table_config"]["name"] = require_str(table["name"], f"{where}.name")
        if table.get("sampling_fraction") is not None:
            fraction = table["sampling_fraction"]
            if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
                raise InvalidParameter(f"{where}.sampling_fraction must be a number in (0, 1]")
            out["inference_table_config"]["sampling_fraction"] = fraction
    if value.get("table_names") is not None:
        where = f"{field}.table_names"
        tables = require_object(value["table_names"], where)
        kinds = ("annotations_table", "logs_table", "metrics_table", "traces_table")
        reject_unknown(tables, kinds, where)
        out["table_names"] = {k: require_str(tables[k], f"{where}.{k}") for k in kinds if tables.get(k) is not None}
    if value.get("telemetry_profile_id") is not None:
        out["telemetry_profile_id"] = require_str(value["telemetry_profile_id"], f"{field}.telemetry_profile_id")
        if "table_names" in out:
            raise InvalidParameter(f"{field}: give telemetry_profile_id or table_names, not both")
    return out


# ---- request bodies of the option calls ----

def validate_rate_limits_put(body: Any) -> list[dict]:
    """The PUT .../rate-limits body: {"rate_limits": [...]}; an empty list removes every limit."""
    body = require_object(body, "request body")
    reject_unknown(body, ("rate_limits",), "request body")
    return validate_legacy_rate_limits(body.get("rate_limits") or [], "rate_limits")


def validate_notifications_patch(body: Any) -> dict:
    body = require_object(body, "request body")
    reject_unknown(body, ("email_notifications",), "request body")
    return validate_email_notifications(body.get("email_notifications") or {})


def validate_telemetry_patch(body: Any) -> dict:
    """The PATCH .../telemetry-config body; without telemetry_config the configuration is removed."""
    body = require_object(body, "request body")
    reject_unknown(body, ("telemetry_config",), "request body")
    return validate_telemetry_config(body.get("telemetry_config") or {})
