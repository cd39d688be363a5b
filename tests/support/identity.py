"""Control-plane identity cores in-process, on a real database, for tests that need no processes."""

from __future__ import annotations

from dataclasses import dataclass

from services.control_plane.crypto import KeyRing
from services.control_plane.identity import AuthSettings, IdentityService
from services.control_plane.identity_store import IdentityStore
from services.control_plane.store import open_engine
from services.control_plane.tokens import TokenService

ADMIN_TOKEN = "dapi" + "a" * 16 + "b" * 48
INTERNAL_TOKEN = "internal-" + "c" * 32


@dataclass
class Identity:
    engine: object
    keyring: KeyRing
    store: IdentityStore
    identity: IdentityService
    tokens: TokenService

    async def user_token(self, user_name: str, *, groups: list[str] = (), lifetime_seconds: int | None = None) -> tuple[str, str]:
        """(principal id, PAT) of a new user, created by the admin; `groups` are group ids to join."""
        user = await self.identity.create(ADMIN_TOKEN, "user", {"userName": user_name,
                                                                 "groups": [{"value": g} for g in groups]})
        obo = await self.obo(user["id"], lifetime_seconds)
        return user["id"], obo

    async def obo(self, principal_id: str, lifetime_seconds: int | None = None) -> str:
        """A PAT for any principal, minted directly (the API mints PATs only for oneself or SPs)."""
        record, value = await self.tokens._issue("dapi", "pat", principal_id, principal_id, "test", lifetime_seconds)
        return value


async def start_identity(database_url: str, keyring: KeyRing | None = None, **settings) -> Identity:
    engine = open_engine(database_url)
    keyring = keyring or KeyRing({"k1": b"\x01" * 32}, "k1")
    store = IdentityStore(engine)
    identity = IdentityService(store, keyring, AuthSettings(internal_token=INTERNAL_TOKEN,
                                                            bootstrap_admin_token=ADMIN_TOKEN, **settings))
    await identity.start()
    return Identity(engine, keyring, store, identity, TokenService(identity, keyring))
