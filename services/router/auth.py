"""Who a bearer credential belongs to, as the router's Gateway asks on every request.

The answer comes from the control plane (`Identity.Authenticate`) and is cached for `ttl_s` seconds, so
the query path costs no control-plane round trip; a revoked credential stops working within `ttl_s`, an
expired one at once (an entry never outlives the credential's own expiry). Concurrent first requests
with one credential share one lookup. While the control plane cannot be reached, an entry may be used
up to `stale_grace_s` past its lifetime: nothing can be revoked while the control plane is away.
Cache keys are SHA-256 digests: the cache holds no credential.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.common.errors import Unauthenticated, Unavailable
from services.common.principals import Principal

INVALID_CREDENTIAL = "Invalid access token."


@dataclass(frozen=True)
class _Entry:
    principal: Principal | None      # None: the control plane rejected the credential
    fresh_until: float               # monotonic
    valid_until: float | None        # monotonic instant the credential itself expires


class TokenCache:
    def __init__(self, authenticate: Callable[[str], Awaitable[Principal]], *, ttl_s: float = 5.0,
                 negative_ttl_s: float = 1.0, stale_grace_s: float = 60.0, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time):
        self._authenticate = authenticate
        self._ttl_s = ttl_s
        self._negative_ttl_s = negative_ttl_s
        self._stale_grace_s = stale_grace_s
        self._max_entries = max_entries
        self._clock = clock
        self._wall_clock = wall_clock
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._pending: dict[bytes, asyncio.Future] = {}

    async def caller(self, token: str) -> Principal:
        """The principal, or Unauthenticated (one message, whatever was wrong)."""
        if not token:
            raise Unauthenticated(INVALID_CREDENTIAL)
        key = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and now < entry.fresh_until:
            return self._answer(entry, now)
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._pending[key] = pending
            try:
                pending.set_result(await self._lookup(key, token, entry, now))
            except asyncio.CancelledError:
                pending.cancel()
                raise
            except Exception as exc:
                pending.set_exception(exc)
            finally:
                del self._pending[key]
        entry = await asyncio.shield(pending)
        return self._answer(entry, self._clock())

    async def _lookup(self, key: bytes, token: str, previous: _Entry | None, now: float) -> _Entry:
        try:
            principal = await self._authenticate(token)
        except Unauthenticated:
            entry = _Entry(None, now + self._negative_ttl_s, None)
        except Unavailable:
            # The control plane is away: nothing could have been revoked meanwhile, so a recently
            # verified credential stays good for a bounded grace period (its own expiry still applies).
            if previous is not None and previous.principal is not None and \
                    now < previous.fresh_until + self._stale_grace_s:
                return previous
            raise
        else:
            valid_until = None
            if principal.expires_at is not None:
                valid_until = now + (principal.expires_at - self._wall_clock())
            entry = _Entry(principal, now + self._ttl_s, valid_until)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return entry

    @staticmethod
    def _answer(entry: _Entry, now: float) -> Principal:
        if entry.principal is None or (entry.valid_until is not None and now >= entry.valid_until):
            raise Unauthenticated(INVALID_CREDENTIAL)
        return entry.principal
