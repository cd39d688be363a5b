"""Platform quotas on what one principal's endpoints may hold. Pure.

Each user or service principal may own (have created) at most `endpoints_per_user` endpoints, whose custom
served entities together provision at most `concurrency_per_user` concurrent requests (the upper bound of
each entity's provisioned concurrency: the replicas the scaler may start follow from it, a replica per
`PODIUM_TARGET_CONCURRENCY_PER_REPLICA` requests). Admins are not limited. 0 turns a quota off. Over a quota:
429 RESOURCE_EXHAUSTED naming the limit and its setting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.common.capacity import concurrency_bounds
from services.common.errors import QuotaExceeded
from services.common.principals import Principal


@dataclass(frozen=True)
class Quotas:
    endpoints_per_user: int = 0
    concurrency_per_user: int = 0


def provisioned_concurrency(config: dict | None) -> int:
    """The most concurrent requests a config's custom served entities provision (external ones: none)."""
    return sum(concurrency_bounds(e)[1] for e in (config or {}).get("served_entities", ())
               if e.get("external_model") is None)


def endpoint_concurrency(endpoint: dict) -> int:
    """What an endpoint holds: its serving config's and its pending one's (both run during an update)."""
    return max(provisioned_concurrency(endpoint.get("config")), provisioned_concurrency(endpoint.get("pending_config")))


def check_quotas(caller: Principal, endpoints: Iterable[dict], replacing: str | None, new_config: dict,
                 quotas: Quotas) -> None:
    """Raises QuotaExceeded when a non-admin caller's write would take an owner's endpoints over a quota: on a
    create (`replacing` None) the caller's, with `new_config` added; on an update of endpoint `replacing`, its
    creator's, with `new_config` in place of that endpoint's."""
    if caller.is_admin:
        return
    endpoints = list(endpoints)
    owner = next((e.get("creator") for e in endpoints if e["id"] == replacing), caller.name)
    others = [e for e in endpoints if e.get("creator") == owner and e["id"] != replacing]
    if replacing is None and quotas.endpoints_per_user and len(others) >= quotas.endpoints_per_user:
        raise QuotaExceeded(f"Endpoint quota reached: at most {quotas.endpoints_per_user} endpoints per user "
                            "(PODIUM_QUOTA_ENDPOINTS_PER_USER)")
    wanted = provisioned_concurrency(new_config)
    if quotas.concurrency_per_user and wanted:
        total = sum(endpoint_concurrency(e) for e in others) + wanted
        if total > quotas.concurrency_per_user:
            raise QuotaExceeded(f"Provisioned concurrency quota exceeded: {total} requested across your endpoints, "
                                f"at most {quotas.concurrency_per_user} per user (PODIUM_QUOTA_CONCURRENCY_PER_USER)")
