"""Credential formats: personal access tokens, service-principal secrets and Podium's own JWTs.

A PAT is `dapi` + a 16-hex token id + 48 hex of randomness; a service-principal OAuth secret is the same
with `dose`, and so is a replica's client secret, whose client id is `podium-replica-` + the same token id.
The id finds the stored record in O(1); only a salted HMAC-SHA256 of the whole credential is stored. A slow
password hash is not needed: the credentials are 192-bit random values, not passwords, and verification
results are cached by the router anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import jwt

PAT_PREFIX, SP_SECRET_PREFIX = "dapi", "dose"
REPLICA_CLIENT_PREFIX = "podium-replica-"
_REPLICA_CLIENT = re.compile(r"^podium-replica-([0-9a-f]{16})$")
_CREDENTIAL = re.compile(r"^(dapi|dose)([0-9a-f]{16})([0-9a-f]{48})$")
PODIUM_JWT_ALGORITHM = "HS256"
EXTERNAL_JWT_ALGORITHMS = ("RS256", "ES256")
JWT_AUDIENCE = "podium"


@dataclass(frozen=True)
class IssuedCredential:
    token_id: str
    value: str        # shown to the caller once, never stored
    salt: str
    digest: str


def issue(prefix: str, token_id: str | None = None) -> IssuedCredential:
    token_id = token_id or secrets.token_hex(8)
    value = f"{prefix}{token_id}{secrets.token_hex(24)}"
    salt = secrets.token_hex(16)
    return IssuedCredential(token_id, value, salt, digest(value, salt))


def from_value(value: str) -> IssuedCredential:
    """The record for a credential generated elsewhere (the admin token `podium up` hands out)."""
    match = _CREDENTIAL.fullmatch(value)
    if match is None:
        raise ValueError("not a Podium credential")
    salt = secrets.token_hex(16)
    return IssuedCredential(match.group(2), value, salt, digest(value, salt))


def digest(value: str, salt: str) -> str:
    return hmac.new(bytes.fromhex(salt), value.encode(), hashlib.sha256).hexdigest()


def parse(value: str) -> tuple[str, str] | None:
    """(prefix, token id) of a well-formed PAT or SP secret, else None."""
    match = _CREDENTIAL.fullmatch(value)
    return (match.group(1), match.group(2)) if match else None


def replica_client_id(token_id: str) -> str:
    """The OAuth client id of a replica credential (DATABRICKS_CLIENT_ID); not a secret."""
    return f"{REPLICA_CLIENT_PREFIX}{token_id}"


def replica_token_id(client_id: str) -> str | None:
    """The token id a replica's client id names; None for any other client id (a service principal's)."""
    match = _REPLICA_CLIENT.fullmatch(client_id)
    return match.group(1) if match else None


def matches(value: str, salt: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(value, salt), stored_digest)


def looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2 and value.startswith("eyJ")


def unverified_header(value: str) -> dict:
    try:
        return jwt.get_unverified_header(value)
    except jwt.PyJWTError:
        return {}


def mint_podium_jwt(key_id: str, key: bytes, issuer: str, subject: str, claims: dict,
                    now_s: int, lifetime_s: int) -> str:
    payload = {"iss": issuer, "aud": JWT_AUDIENCE, "sub": subject, "iat": now_s, "nbf": now_s,
               "exp": now_s + lifetime_s, "jti": secrets.token_hex(8), **claims}
    return jwt.encode(payload, key, algorithm=PODIUM_JWT_ALGORITHM, headers={"kid": key_id})


def verify_podium_jwt(value: str, key: bytes, issuer: str) -> dict:
    """The claims of a Podium-signed token; raises jwt.PyJWTError for anything wrong with it."""
    return jwt.decode(value, key, algorithms=[PODIUM_JWT_ALGORITHM], audience=JWT_AUDIENCE, issuer=issuer,
                      options={"require": ["exp", "iat", "sub", "iss", "aud"]})


def verify_external_jwt(value: str, signing_key, issuer: str, audience: str) -> dict:
    """The claims of an identity provider's token, checked against its JWKS key, issuer and audience."""
    return jwt.decode(value, signing_key, algorithms=list(EXTERNAL_JWT_ALGORITHMS), audience=audience,
                      issuer=issuer, options={"require": ["exp", "iss", "aud"]})


class JwksKeys:
    """An identity provider's signing keys: a JWKS URL (fetched, cached 5 minutes) or a JWKS file.

    `signing_key` may fetch over the network: call it from a worker thread.
    """

    def __init__(self, source: str):
        self._client = None
        self._keys: list = []
        if source.startswith(("http://", "https://")):
            self._client = jwt.PyJWKClient(source, cache_keys=True, lifespan=300, timeout=5)
        else:
            self._keys = list(jwt.PyJWKSet.from_json(Path(source).read_text()).keys)

    def signing_key(self, token: str):
        """The public key the token's `kid` names; raises jwt.PyJWTError when there is none."""
        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token).key
        kid = unverified_header(token).get("kid")
        for key in self._keys:
            if kid is None or key.key_id == kid:
                return key.key
        raise jwt.InvalidTokenError("no JWKS key matches the token")
