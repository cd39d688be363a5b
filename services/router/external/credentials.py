"""The provider key of an external-model endpoint, opened only in the router's memory, only when needed.

The routing table carries a `{{secrets/scope/key}}` reference (resolved through the SecretResolver and kept
for `ttl_s`, so a rotated secret takes effect) or the ciphertext the control plane stored (opened with the
master key once: a ciphertext never changes). Failures say which endpoint and secret, never a value.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from services.common.errors import PermissionDenied
from services.common.gateway_routes import ExternalModelTarget
from services.common.secret_box import Cipher, SecretError, SecretResolver, open_ciphertext, parse_reference


class Credentials:
    def __init__(self, cipher: Cipher | None, resolver: SecretResolver, ttl_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self._cipher = cipher
        self._resolver = resolver
        self._ttl_s = ttl_s
        self._clock = clock
        self._opened: dict[str, str] = {}
        # (endpoint, scope, key): each endpoint's own resolution, as the control plane authorizes per endpoint
        self._resolved: dict[tuple[str, str, str], tuple[str, float]] = {}

    async def key_for(self, endpoint: str, target: ExternalModelTarget) -> str:
        """The plaintext key ("" when the provider takes none); PermissionDenied when it cannot be had."""
        return await self.secret_for(endpoint, target.credential, target.credential_field)

    async def secret_for(self, endpoint: str, stored: str, field: str) -> str:
        """One stored secret (a reference, or a ciphertext sealed under `field`) opened; "" when none is stored."""
        if not stored:
            return ""
        reference = parse_reference(stored)
        try:
            if reference is not None:
                return await self._resolve(endpoint, reference)
            return self._open(stored, field)
        except SecretError as exc:
            raise PermissionDenied(f"The credentials configured for endpoint '{endpoint}' cannot be used: "
                                   f"{exc.message}") from None

    async def _resolve(self, endpoint: str, reference: tuple[str, str]) -> str:
        now = self._clock()
        cached = self._resolved.get((endpoint, *reference))
        if cached is not None and now - cached[1] < self._ttl_s:
            return cached[0]
        value = await self._resolver.resolve(*reference, endpoint)
        self._resolved[(endpoint, *reference)] = (value, now)
        return value

    def _open(self, token: str, field: str) -> str:
        value = self._opened.get(token)
        if value is None:
            if self._cipher is None:
                raise SecretError("this router has no master key to open stored credentials")
            value = self._opened[token] = open_ciphertext(self._cipher, field, token)
        return value
