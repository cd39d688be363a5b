"""Personal access tokens, tokens on behalf of service principals, service-principal OAuth secrets, and the
OAuth client-credentials grant that turns such a secret into a short-lived Podium JWT.

Paths and shapes follow databricks-sdk 0.162.0: `w.tokens` (/api/2.0/token/*), `w.token_management`
(/api/2.0/token-management/*), `w.service_principal_secrets_proxy`
(/api/2.0/accounts/servicePrincipals/{id}/credentials/secrets) and the SDK's oauth-m2m credentials.
A credential's value is returned once, when it is created; only its salted digest is stored.

Replica credentials are Podium's own: the scaler asks for one as a replica of a model logged with serving
endpoints as resources starts. It is an OAuth client credential (`podium-replica-<id>` and a `dose…` secret)
that the replica's databricks-sdk (oauth-m2m) exchanges at the token endpoint for access tokens of the
config's writer that live `replica_token_lifetime_s`, confined to those endpoints (CAN_QUERY at most, no other
API). The credential and every access token minted from it are valid while its deployment is live and its
record exists: the record is revoked when the replica is gone, and listed nowhere.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import datetime, timezone

from services.common.errors import (
    InvalidParameter, MalformedRequest, PermissionDenied, ResourceDoesNotExist, Unauthenticated,
)
from services.common.principals import SERVICE_PRINCIPAL, USER, Principal
from services.control_plane import credentials
from services.control_plane.identity import (
    INVALID_CREDENTIAL, OAUTH_SIGNING_PURPOSE, REPLICA, REPLICA_CLAIM, IdentityService,
)

PAT, SP_SECRET = "pat", "sp_secret"
DEFAULT_TOKEN_LIFETIME_S = 2 * 365 * 24 * 3600     # as Databricks: a PAT without a lifetime lasts 2 years
DEFAULT_SECRET_LIFETIME_S = 730 * 24 * 3600        # as Databricks: SP secrets last 730 days by default
# The longest lifetime accepted: far beyond any real use, and far inside what timestamps can hold.
MAX_LIFETIME_S = 100 * 365 * 24 * 3600
_DURATION = re.compile(r"^(\d+)s?$")
_ENDPOINT_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}")
MAX_REPLICA_ENDPOINTS = 64


class TokenService:
    def __init__(self, identity: IdentityService, keyring, oauth_token_lifetime_s: int = 3600, clock=time.time,
                 replica_token_lifetime_s: int = 900):
        self._identity = identity
        self._keyring = keyring
        self._oauth_lifetime_s = oauth_token_lifetime_s
        self._replica_lifetime_s = replica_token_lifetime_s
        self._clock = clock
        # (writer id, served entity) of each live config running a deployment: the endpoint core's
        # `deployment_entities`, set by __main__. None: no replica credential is issued.
        self.deployment_entities: Callable[[str], list[tuple[str, dict]]] | None = None

    # ---- /api/2.0/token: the caller's own PATs ----

    async def create(self, token: str, body: object) -> dict:
        caller = await self._identity.authenticate_person(token)
        body = _object(body)
        record, value = await self._issue(credentials.PAT_PREFIX, PAT, caller.id, caller.id, _comment(body),
                                          _lifetime(body.get("lifetime_seconds"), DEFAULT_TOKEN_LIFETIME_S))
        return {"token_value": value, "token_info": _public_info(record)}

    async def list(self, token: str) -> dict:
        caller = await self._identity.authenticate_person(token)
        return {"token_infos": [_public_info(r) for r in self._records(PAT) if r["owner_id"] == caller.id]}

    async def delete(self, token: str, body: object) -> dict:
        caller = await self._identity.authenticate_person(token)
        token_id = _object(body).get("token_id")
        record = self._identity.credentials.get(token_id) if isinstance(token_id, str) else None
        if record is None or record["kind"] != PAT or record["owner_id"] != caller.id:
            raise ResourceDoesNotExist(f"Token {token_id} does not exist")
        await self._identity.revoke_credentials([record["token_id"]])
        return {}

    # ---- /api/2.0/token-management: every PAT, for admins ----

    async def management_list(self, token: str, query: dict[str, str]) -> dict:
        await self._identity.require_admin(token, "manage tokens")
        records = self._records(PAT)
        if query.get("created_by_id"):
            records = [r for r in records if r["created_by_id"] == query["created_by_id"]]
        if query.get("created_by_username"):
            wanted = query["created_by_username"]
            records = [r for r in records if self._name(r["created_by_id"]) == wanted]
        return {"token_infos": [self._info(r) for r in records]}

    async def management_get(self, token: str, token_id: str) -> dict:
        await self._identity.require_admin(token, "manage tokens")
        return {"token_info": self._info(self._require(token_id))}

    async def management_delete(self, token: str, token_id: str) -> dict:
        await self._identity.require_admin(token, "manage tokens")
        await self._identity.revoke_credentials([self._require(token_id)["token_id"]])
        return {}

    async def create_on_behalf_of(self, token: str, body: object) -> dict:
        """A PAT for a service principal (`application_id`), or, as a Podium extension, for a user
        (`user_name`): Podium has no interactive sign-in, so an admin hands users their first token."""
        caller = await self._identity.require_admin(token, "create tokens on behalf of other principals")
        body = _object(body)
        if body.get("user_name") is not None and body.get("application_id") is None:
            owner = self._identity.find(USER, str(body["user_name"]))
            if owner is None:
                raise ResourceDoesNotExist(f"User {body['user_name']} does not exist")
        else:
            owner = self._service_principal(body.get("application_id"), "application_id")
        record, value = await self._issue(credentials.PAT_PREFIX, PAT, owner, caller.id, _comment(body),
                                          _lifetime(body.get("lifetime_seconds"), DEFAULT_TOKEN_LIFETIME_S))
        return {"token_info": self._info(record), "token_value": value}

    # ---- service-principal OAuth secrets ----

    async def create_secret(self, token: str, service_principal_id: str, body: object) -> dict:
        caller = await self._identity.require_admin(token, "manage service principal secrets")
        owner = self._service_principal(service_principal_id, "service_principal_id")
        lifetime = _lifetime(_object(body or {}).get("lifetime"), DEFAULT_SECRET_LIFETIME_S)
        record, value = await self._issue(credentials.SP_SECRET_PREFIX, SP_SECRET, owner, caller.id, "", lifetime)
        return {**_secret_info(record), "secret": value}

    async def list_secrets(self, token: str, service_principal_id: str) -> dict:
        await self._identity.require_admin(token, "manage service principal secrets")
        owner = self._service_principal(service_principal_id, "service_principal_id")
        return {"secrets": [_secret_info(r) for r in self._records(SP_SECRET) if r["owner_id"] == owner]}

    async def delete_secret(self, token: str, service_principal_id: str, secret_id: str) -> dict:
        await self._identity.require_admin(token, "manage service principal secrets")
        owner = self._service_principal(service_principal_id, "service_principal_id")
        record = self._identity.credentials.get(secret_id)
        if record is None or record["kind"] != SP_SECRET or record["owner_id"] != owner:
            raise ResourceDoesNotExist(f"Secret {secret_id} does not exist")
        await self._identity.revoke_credentials([secret_id])
        return {}

    async def issue_oauth_token(self, client_id: str, client_secret: str, scope: str) -> dict:
        """The client-credentials grant: a short-lived HS256 JWT for the service principal (or the replica)."""
        if credentials.replica_token_id(client_id or "") is not None:
            return self._issue_replica_access_token(client_id, client_secret, scope)
        principal = self._verify_client(client_id, client_secret)
        now = int(self._clock())
        lifetime = self._oauth_lifetime_s
        if principal.expires_at is not None:  # never outlive the secret it was minted from
            lifetime = max(1, min(lifetime, int(principal.expires_at) - now))
        kid, key = self._keyring.derive(OAUTH_SIGNING_PURPOSE)
        access_token = credentials.mint_podium_jwt(kid, key, self._identity.issuer, principal.id,
                                                   {"client_id": client_id, "scope": scope or "all-apis"},
                                                   now, lifetime)
        return {"access_token": access_token, "token_type": "Bearer", "expires_in": lifetime,
                "scope": scope or "all-apis"}

    # ---- replica credentials (internal: the scaler) ----

    def _issue_replica_access_token(self, client_id: str, client_secret: str, scope: str) -> dict:
        """A replica's grant: a JWT of its config's writer naming its credential (so it is refused once that is
        revoked or its deployment gone), confined as the credential is, living replica_token_lifetime_s."""
        token_id = credentials.replica_token_id(client_id)
        record = self._identity.credentials.get(token_id or "")
        if record is None or record["kind"] != REPLICA \
                or credentials.parse(client_secret or "") != (credentials.SP_SECRET_PREFIX, token_id) \
                or not credentials.matches(client_secret, record["salt"], record["digest"]):
            raise Unauthenticated(INVALID_CREDENTIAL)
        try:
            principal = self._identity.replica_principal(record)
        except (KeyError, ValueError):
            raise Unauthenticated(INVALID_CREDENTIAL) from None
        now, lifetime = int(self._clock()), self._replica_lifetime_s
        kid, key = self._keyring.derive(OAUTH_SIGNING_PURPOSE)
        access_token = credentials.mint_podium_jwt(kid, key, self._identity.issuer, principal.id,
                                                   {"client_id": client_id, "scope": scope or "all-apis",
                                                    REPLICA_CLAIM: record["token_id"]}, now, lifetime)
        return {"access_token": access_token, "token_type": "Bearer", "expires_in": lifetime,
                "scope": scope or "all-apis"}

    async def issue_replica_credential(self, token: str, deployment_key: str, endpoints: list[str]) -> dict:
        """{"client_id", "client_secret", "token_id"}: an OAuth client credential whose access tokens are the
        deployment's config writer's, confined to querying `endpoints`."""
        self._identity.require_service(token)
        found = self.deployment_entities(deployment_key) if self.deployment_entities is not None else []
        if not found:
            raise ResourceDoesNotExist(f"No live served entity has deployment key '{deployment_key}'")
        names = sorted(set(endpoints))
        if not names or len(names) > MAX_REPLICA_ENDPOINTS or \
                not all(isinstance(n, str) and _ENDPOINT_NAME.fullmatch(n) for n in names):
            raise InvalidParameter(f"a replica credential names 1 to {MAX_REPLICA_ENDPOINTS} serving endpoints")
        writer_id = found[-1][0]   # the newest config's writer (a pending config comes after the serving one)
        try:
            self._identity.principal(writer_id)
        except (KeyError, ValueError):
            raise PermissionDenied("The config's writer is no longer an active principal") from None
        await self._prune_replica_credentials()
        record, value = await self._issue(credentials.SP_SECRET_PREFIX, REPLICA, writer_id, writer_id,
                                          json.dumps({"deployment": deployment_key, "endpoints": names}), None)
        return {"client_id": credentials.replica_client_id(record["token_id"]), "client_secret": value,
                "token_id": record["token_id"]}

    async def revoke_replica_credential(self, token: str, token_id: str) -> dict:
        self._identity.require_service(token)
        record = self._identity.credentials.get(token_id)
        if record is not None and record["kind"] == REPLICA:
            await self._identity.revoke_credentials([token_id])
        return {}

    async def _prune_replica_credentials(self) -> None:
        """Drops the records of replica credentials whose deployment is gone (a scaler that died before it
        revoked them): they authenticate nobody any more, and would only pile up."""
        live = self._identity.is_live_deployment or (lambda key: False)
        dead = [r["token_id"] for r in self._records(REPLICA)
                if not live(json.loads(r["comment"] or "{}").get("deployment", ""))]
        if dead:
            await self._identity.revoke_credentials(dead)

    # ---- helpers ----

    def _verify_client(self, client_id: str, client_secret: str) -> Principal:
        owner = self._identity.find(SERVICE_PRINCIPAL, client_id or "")
        parsed = credentials.parse(client_secret or "")
        record = self._identity.credentials.get(parsed[1]) if parsed else None
        now = self._clock()
        if owner is None or record is None or record["kind"] != SP_SECRET or record["owner_id"] != owner \
                or not credentials.matches(client_secret, record["salt"], record["digest"]) \
                or 0 <= record["expiry_time"] <= now * 1000:
            raise Unauthenticated(INVALID_CREDENTIAL)
        try:
            return self._identity.principal(owner, record["expiry_time"] / 1000 if record["expiry_time"] >= 0 else None)
        except (KeyError, ValueError):
            raise Unauthenticated(INVALID_CREDENTIAL) from None

    async def _issue(self, prefix: str, kind: str, owner_id: str, created_by_id: str, comment: str,
                     lifetime_s: int | None) -> tuple[dict, str]:
        issued = credentials.issue(prefix)
        now_ms = int(self._clock() * 1000)
        record = {"token_id": issued.token_id, "kind": kind, "owner_id": owner_id, "created_by_id": created_by_id,
                  "salt": issued.salt, "digest": issued.digest, "comment": comment, "creation_time": now_ms,
                  "expiry_time": now_ms + lifetime_s * 1000 if lifetime_s else -1}
        await self._identity.add_credential(record)
        return record, issued.value

    def _records(self, kind: str) -> list[dict]:
        return sorted((r for r in self._identity.credentials.values() if r["kind"] == kind),
                      key=lambda r: (r["creation_time"], r["token_id"]))

    def _require(self, token_id: str) -> dict:
        record = self._identity.credentials.get(token_id)
        if record is None or record["kind"] != PAT:
            raise ResourceDoesNotExist(f"Token {token_id} does not exist")
        return record

    def _service_principal(self, reference: object, field: str) -> str:
        """A service principal's id, from its applicationId or its SCIM id."""
        if not isinstance(reference, str) or not reference:
            raise InvalidParameter(f"Missing required field: {field}")
        principal_id = self._identity.find(SERVICE_PRINCIPAL, reference)
        if principal_id is None and self._identity.principals.get(reference, {}).get("kind") == SERVICE_PRINCIPAL:
            principal_id = reference
        if principal_id is None:
            raise ResourceDoesNotExist(f"Service principal {reference} does not exist")
        return principal_id

    def _name(self, principal_id: str) -> str:
        return self._identity.principals.get(principal_id, {}).get("name", "")

    def _info(self, record: dict) -> dict:
        """TokenInfo, as token-management shows it (ids are int64 in the SDK)."""
        return {**_public_info(record), "created_by_id": int(record["created_by_id"]),
                "created_by_username": self._name(record["created_by_id"]), "owner_id": int(record["owner_id"])}


def _public_info(record: dict) -> dict:
    return {"token_id": record["token_id"], "creation_time": record["creation_time"],
            "expiry_time": record["expiry_time"], "comment": record["comment"]}


def _secret_info(record: dict) -> dict:
    def rfc3339(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    info = {"id": record["token_id"], "status": "ACTIVE", "create_time": rfc3339(record["creation_time"]),
            "update_time": rfc3339(record["creation_time"])}
    if record["expiry_time"] >= 0:
        info["expire_time"] = rfc3339(record["expiry_time"])
    return info


def _object(body: object) -> dict:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise MalformedRequest("The request body must be a JSON object")
    return body


def _comment(body: dict) -> str:
    comment = body.get("comment", "")
    if not isinstance(comment, str) or len(comment) > 1000:
        raise InvalidParameter("comment must be a string of at most 1000 characters")
    return comment


def _lifetime(value: object, default_s: int) -> int:
    """Seconds from `lifetime_seconds` (an integer) or `lifetime` ("3600s"); the default when absent."""
    if value is None:
        return default_s
    if isinstance(value, str) and _DURATION.fullmatch(value):
        value = int(_DURATION.fullmatch(value).group(1))
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_LIFETIME_S:
        raise InvalidParameter(f"the lifetime must be a positive number of seconds, at most {MAX_LIFETIME_S}")
    return value
