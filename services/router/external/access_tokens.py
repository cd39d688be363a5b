"""OAuth access tokens that provider calls carry: Microsoft Entra ID's client-credentials grant (Azure OpenAI
with `openai_api_type: azuread`) and Google's service-account JWT grant (Vertex AI).

Tokens are fetched through the same egress-checked sessions as the provider calls themselves (a token URI
is a URL Podium calls) and kept until a minute before they expire, per endpoint and credential, so a
rotated secret fetches a new one. A refused grant is 403 naming the endpoint, never the secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable

import aiohttp
import orjson

from services.common.errors import BadGateway, DeadlineExceeded, PermissionDenied
from services.router.external.egress_connector import EgressRefused
from services.router.external.provider_errors import provider_error

ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
EXPIRY_MARGIN_S = 60.0
DEFAULT_LIFETIME_S = 3600.0


class AccessTokens:
    def __init__(self, sessions: dict[bool, aiohttp.ClientSession], headers: dict[str, str],
                 clock: Callable[[], float] = time.time):
        self._sessions = sessions   # by may_reach_private, as the provider client's
        self._headers = headers
        self._clock = clock
        self._tokens: dict[tuple, tuple[str, float]] = {}
        self._fetching: dict[tuple, asyncio.Lock] = {}   # one fetch per credential at a time; the others wait

    async def entra(self, endpoint: str, authority_host: str, tenant_id: str, client_id: str, client_secret: str,
                    may_reach_private: bool, timeout_s: float) -> str:
        url = f"{authority_host}/{tenant_id}/oauth2/v2.0/token"
        form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret,
                "scope": ENTRA_SCOPE}
        return await self._token(("entra", url, client_id, _digest(client_secret)), "azure_openai", endpoint,
                                 lambda: (url, form), client_secret, may_reach_private, timeout_s)

    async def google(self, endpoint: str, identity: str, secret: str, make_request: Callable[[int], tuple[str, dict]],
                     may_reach_private: bool, timeout_s: float) -> str:
        """`make_request(now_s)`: the token URI and the form holding a freshly signed assertion."""
        return await self._token(("google", identity, _digest(secret)), "google-cloud-vertex-ai", endpoint,
                                 lambda: make_request(int(self._clock())), secret, may_reach_private, timeout_s)

    def forget(self, token: str) -> None:
        """Drops a token the provider refused (revoked, or its app changed), so the next call fetches another."""
        self._tokens = {key: held for key, held in self._tokens.items() if held[0] != token}

    async def _token(self, key: tuple, provider: str, endpoint: str, make_request: Callable[[], tuple[str, dict]],
                     secret: str, may_reach_private: bool, timeout_s: float) -> str:
        cached = self._tokens.get(key)
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        async with self._fetching.setdefault(key, asyncio.Lock()):
            cached = self._tokens.get(key)
            if cached is not None and self._clock() < cached[1]:
                return cached[0]   # fetched while this call waited
            return await self._fetch(key, provider, endpoint, make_request, secret, may_reach_private, timeout_s)

    async def _fetch(self, key: tuple, provider: str, endpoint: str, make_request: Callable[[], tuple[str, dict]],
                     secret: str, may_reach_private: bool, timeout_s: float) -> str:
        now = self._clock()
        url, form = make_request()
        session = self._sessions[may_reach_private]
        try:
            async with asyncio.timeout(timeout_s):
                async with session.post(url, data=form, headers=self._headers) as response:
                    status, raw = response.status, await response.read()
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"The token service of provider {provider} did not answer endpoint "
                                   f"'{endpoint}' within {timeout_s:g} s") from None
        except EgressRefused as exc:
            raise PermissionDenied(f"The token service of provider {provider} for endpoint '{endpoint}' is refused "
                                   f"by Podium's egress policy: {exc}") from None
        except aiohttp.ClientError as exc:
            raise BadGateway(f"The token service of provider {provider} is unreachable for endpoint '{endpoint}' "
                             f"({type(exc).__name__})") from None
        if 400 <= status < 500 and status != 429:
            raise PermissionDenied(f"Provider {provider} refused the credentials configured for endpoint "
                                   f"'{endpoint}' when asked for an access token (HTTP {status})")
        if status != 200:
            raise provider_error(provider, endpoint, status, raw, None, secret, now)
        try:
            answer = orjson.loads(raw)
            token, lifetime = answer["access_token"], float(answer.get("expires_in") or DEFAULT_LIFETIME_S)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise BadGateway(f"The token service of provider {provider} answered endpoint '{endpoint}' "
                             "without an access token") from None
        self._tokens[key] = (str(token), now + max(0.0, lifetime - EXPIRY_MARGIN_S))
        return str(token)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
