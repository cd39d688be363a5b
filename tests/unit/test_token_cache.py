"""The router's credential cache: no control-plane round trip while fresh, revocation within its lifetime,
expiry at once, one lookup for concurrent first requests, a bounded grace while the control plane is down."""

from __future__ import annotations

import asyncio

import pytest

from services.common.errors import Unauthenticated, Unavailable
from services.common.principals import USER, Principal
from services.router.auth import TokenCache

ALICE = Principal(id="1", name="alice", kind=USER)


class ControlPlane:
    """Answers Authenticate like the real one would, counting calls; `revoked` and `down` are switches."""

    def __init__(self, principal=ALICE):
        self.calls = 0
        self.principal = principal
        self.revoked = False
        self.down = False

    async def authenticate(self, token: str) -> Principal:
        self.calls += 1
        await asyncio.sleep(0)
        if self.down:
            raise Unavailable("control plane is unavailable")
        if self.revoked or token != "good":
            raise Unauthenticated("Invalid access token.")
        return self.principal


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache(control_plane, clock, **kwargs) -> TokenCache:
    return TokenCache(control_plane.authenticate, ttl_s=5, negative_ttl_s=1, stale_grace_s=30, clock=clock,
                      wall_clock=clock, **kwargs)


async def test_fresh_answers_cost_no_round_trip_and_revocation_lands_within_the_ttl():
    control_plane, clock = ControlPlane(), Clock()
    tokens = cache(control_plane, clock)
    for _ in range(1000):
        assert await tokens.caller("good") == ALICE
    assert control_plane.calls == 1
    control_plane.revoked = True
    clock.now += 4.9
    assert await tokens.caller("good") == ALICE       # still within the cache lifetime
    clock.now += 0.2
    with pytest.raises(Unauthenticated):
        await tokens.caller("good")
    assert control_plane.calls == 2


async def test_an_expiring_credential_stops_at_its_expiry_not_at_the_ttl():
    clock = Clock()
    control_plane = ControlPlane(Principal(id="1", name="alice", kind=USER, expires_at=clock.now + 2))
    tokens = cache(control_plane, clock)
    await tokens.caller("good")
    clock.now += 2.0
    with pytest.raises(Unauthenticated):
        await tokens.caller("good")
    assert control_plane.calls == 1


async def test_missing_and_rejected_credentials_share_one_answer_and_rejections_are_cached_briefly():
    control_plane, clock = ControlPlane(), Clock()
    tokens = cache(control_plane, clock)
    messages = set()
    for token in ("", "bad", "bad", "bad"):
        with pytest.raises(Unauthenticated) as rejected:
            await tokens.caller(token)
        messages.add(rejected.value.message)
    assert messages == {"Invalid access token."}
    assert control_plane.calls == 1                     # "" is never sent; "bad" once
    clock.now += 1.1
    with pytest.raises(Unauthenticated):
        await tokens.caller("bad")
    assert control_plane.calls == 2


async def test_concurrent_first_requests_share_one_lookup():
    control_plane, clock = ControlPlane(), Clock()
    tokens = cache(control_plane, clock)
    answers = await asyncio.gather(*(tokens.caller("good") for _ in range(50)))
    assert answers == [ALICE] * 50 and control_plane.calls == 1


async def test_control_plane_outage_uses_the_last_answer_for_a_bounded_grace():
    control_plane, clock = ControlPlane(), Clock()
    tokens = cache(control_plane, clock)
    await tokens.caller("good")
    control_plane.down = True
    clock.now += 20                                     # stale, but within ttl + grace
    assert await tokens.caller("good") == ALICE
    clock.now += 20                                     # beyond it
    with pytest.raises(Unavailable):
        await tokens.caller("good")
    with pytest.raises(Unavailable):                    # never seen: no grace
        await tokens.caller("other")


async def test_the_cache_is_bounded_and_keeps_no_credential():
    control_plane, clock = ControlPlane(), Clock()
    tokens = cache(control_plane, clock, max_entries=10)
    for i in range(100):
        with pytest.raises(Unauthenticated):
            await tokens.caller(f"bad-{i}")
    assert len(tokens._entries) == 10
    assert all(isinstance(key, bytes) and len(key) == 32 for key in tokens._entries)  # SHA-256 digests only
