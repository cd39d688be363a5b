"""The connector every provider call (and token fetch) goes through: it applies the egress policy
(services/common/egress.py) to each address a host resolves to, IP literals included, before connecting."""

from __future__ import annotations

import aiohttp

from services.common.egress import EgressPolicy, egress_refusal


class EgressRefused(Exception):
    """Every address the provider's host resolved to is refused by the egress policy."""


class EgressConnector(aiohttp.TCPConnector):
    """A connector that drops the addresses the egress policy refuses, after resolving (IP literals included)."""

    def __init__(self, policy: EgressPolicy, may_reach_private: bool, **kwargs):
        super().__init__(**kwargs)
        self._policy = policy
        self._may_reach_private = may_reach_private

    async def _resolve_host(self, host, port, traces=None):
        resolved = await super()._resolve_host(host, port, traces=traces)
        allowed, reason = [], None
        for result in resolved:
            refusal = egress_refusal(result["host"], result["port"], self._may_reach_private, self._policy)
            if refusal is None:
                allowed.append(result)
            else:
                reason = reason or refusal
        if not allowed:
            raise EgressRefused(reason or "it resolved to no address")
        return allowed
