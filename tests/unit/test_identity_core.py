"""The control plane's identity cores on real databases (SQLite, and PostgreSQL where it runs): who each
kind of credential belongs to, and that every bad one fails the same way."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.common.errors import PermissionDenied, Unauthenticated
from services.common.principals import CAN_QUERY, effective_level
from services.control_plane.identity import PODIUM_SERVICE
from tests.support.identity import ADMIN_TOKEN, INTERNAL_TOKEN, start_identity

INVALID = "Invalid access token."


def _altered(secret: str) -> str:
    """The secret with its last character changed (to another one: it may already end in "0")."""
    return secret[:-1] + ("1" if secret.endswith("0") else "0")


async def _rejected(identity, token: str) -> None:
    with pytest.raises(Unauthenticated) as error:
        await identity.identity.authenticate(token)
    assert error.value.message == INVALID  # the same words whatever was wrong


async def test_personal_access_tokens(database_url):
    ident = await start_identity(database_url)
    admin = await ident.identity.authenticate(ADMIN_TOKEN)
    assert (admin.name, admin.is_admin) == ("admin", True)
    assert await ident.identity.authenticate(INTERNAL_TOKEN) == PODIUM_SERVICE
    alice_id, alice = await ident.user_token("alice", lifetime_seconds=60)
    caller = await ident.identity.authenticate(alice)
    assert (caller.id, caller.name, caller.is_admin) == (alice_id, "alice", False)
    assert caller.expires_at == pytest.approx(time.time() + 60, abs=5)

    tampered = alice[:-1] + ("0" if alice[-1] != "0" else "1")
    for bad in ("", "dapi", alice.upper(), tampered, "dapi" + "f" * 64, "dose" + alice[4:], "Bearer " + alice):
        await _rejected(ident, bad)

    # Revocation, deactivation and deletion all stop a token.
    listed = await ident.tokens.management_list(ADMIN_TOKEN, {"created_by_username": "alice"})
    [info] = listed["token_infos"]
    await ident.tokens.management_delete(ADMIN_TOKEN, info["token_id"])
    await _rejected(ident, alice)
    _, bob = await ident.user_token("bob")
    bob_id = (await ident.identity.authenticate(bob)).id
    await ident.identity.patch(ADMIN_TOKEN, "user", bob_id, {"Operations": [{"op": "replace", "path": "active",
                                                                             "value": False}]})
    await _rejected(ident, bob)
    await ident.identity.delete(ADMIN_TOKEN, "user", bob_id)
    await _rejected(ident, bob)


async def test_tokens_expire_on_the_clock(database_url):
    ident = await start_identity(database_url)
    _, carol = await ident.user_token("carol", lifetime_seconds=30)
    await ident.identity.authenticate(carol)
    ident.identity._clock = lambda: time.time() + 31
    await _rejected(ident, carol)


async def test_restart_keeps_principals_and_token_digests_only(database_url):
    ident = await start_identity(database_url)
    _, dave = await ident.user_token("dave")
    again = await start_identity(database_url)
    assert (await again.identity.authenticate(dave)).name == "dave"
    principals, _, records = again.store.load()
    assert dave not in json.dumps([principals, records]) and dave[20:] not in json.dumps(records)


async def test_oauth_client_credentials_and_podium_jwts(database_url):
    ident = await start_identity(database_url)
    robot = await ident.identity.create(ADMIN_TOKEN, "service_principal", {"displayName": "robot"})
    secret = await ident.tokens.create_secret(ADMIN_TOKEN, robot["id"], {"lifetime": "600s"})
    issued = await ident.tokens.issue_oauth_token(robot["applicationId"], secret["secret"], "all-apis")
    assert issued["token_type"] == "Bearer" and issued["expires_in"] == 600  # never outlives the secret
    caller = await ident.identity.authenticate(issued["access_token"])
    assert (caller.id, caller.kind) == (robot["id"], "service_principal")

    for client_id, client_secret in ((robot["applicationId"], _altered(secret["secret"])), ("nobody", secret["secret"]),
                                     (robot["applicationId"], ""), ("", "")):
        with pytest.raises(Unauthenticated):
            await ident.tokens.issue_oauth_token(client_id, client_secret, "")
    claims = jwt.decode(issued["access_token"], options={"verify_signature": False})
    forged = jwt.encode({**claims, "sub": "1"}, b"x" * 32, algorithm="HS256",
                        headers=jwt.get_unverified_header(issued["access_token"]))
    await _rejected(ident, forged)
    other_issuer = await start_identity(database_url, keyring=ident.keyring, issuer="someone-else")
    await _rejected(other_issuer, issued["access_token"])
    ident.identity._clock = time.time
    await ident.identity.delete(ADMIN_TOKEN, "service_principal", robot["id"])
    await _rejected(ident, issued["access_token"])


def _jwks_file(tmp_path, public_keys: dict) -> str:
    keys = []
    for kid, key in public_keys.items():
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key) if isinstance(key, rsa.RSAPublicKey)
                         else jwt.algorithms.ECAlgorithm.to_jwk(key))
        keys.append({**jwk, "kid": kid, "use": "sig"})
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": keys}))
    return str(path)


async def test_identity_provider_jwts_against_a_jwks(database_url, tmp_path):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = _jwks_file(tmp_path, {"r1": rsa_key.public_key(), "e1": ec_key.public_key()})
    ident = await start_identity(database_url, jwks=jwks, jwt_issuer="https://idp.example", jwt_audience="podium-api",
                                 jwt_claim="email")
    await ident.identity.create(ADMIN_TOKEN, "user", {"userName": "erin@example.com"})
    now = int(time.time())
    good = {"iss": "https://idp.example", "aud": "podium-api", "email": "erin@example.com", "exp": now + 300, "iat": now}

    for key, alg, kid in ((rsa_key, "RS256", "r1"), (ec_key, "ES256", "e1")):
        caller = await ident.identity.authenticate(jwt.encode(good, key, algorithm=alg, headers={"kid": kid}))
        assert caller.name == "erin@example.com" and caller.expires_at == now + 300

    def signed(claims, key=rsa_key, alg="RS256", kid="r1"):
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})
    public_pem = rsa_key.public_key().public_bytes(
        encoding=__import__("cryptography").hazmat.primitives.serialization.Encoding.PEM,
        format=__import__("cryptography").hazmat.primitives.serialization.PublicFormat.SubjectPublicKeyInfo)
    for bad in (signed({**good, "aud": "someone-else"}), signed({**good, "iss": "https://evil.example"}),
                signed({**good, "exp": now - 10}), signed({k: v for k, v in good.items() if k != "aud"}),
                signed({**good, "email": "nobody@example.com"}), signed(good, key=stranger),
                signed(good, kid="unknown"),
                jwt.encode(good, None, algorithm="none"),
                jwt.encode(good, public_pem.decode()[:64].encode(), algorithm="HS256", headers={"kid": "r1"})):
        await _rejected(ident, bad)


async def test_nested_groups_grant_membership_and_admin(database_url):
    ident = await start_identity(database_url)
    frank_id, frank = await ident.user_token("frank")
    inner = await ident.identity.create(ADMIN_TOKEN, "group", {"displayName": "inner", "members": [{"value": frank_id}]})
    outer = await ident.identity.create(ADMIN_TOKEN, "group", {"displayName": "outer", "members": [{"value": inner["id"]}]})
    caller = await ident.identity.authenticate(frank)
    assert caller.group_ids == {inner["id"], outer["id"]} and not caller.is_admin
    assert effective_level(caller, [(outer["id"], CAN_QUERY)]) == CAN_QUERY
    with pytest.raises(PermissionDenied):
        await ident.identity.create(frank, "user", {"userName": "mallory"})
    admins = ident.identity.find("group", "admins")
    await ident.identity.patch(ADMIN_TOKEN, "group", admins, {"Operations": [
        {"op": "add", "path": "members", "value": [{"value": outer["id"]}]}]})
    assert (await ident.identity.authenticate(frank)).is_admin
    rendered = await ident.identity.get(frank, "user", frank_id, {})
    assert {(g["display"], g["type"]) for g in rendered["groups"]} == {("inner", "direct"), ("outer", "indirect"),
                                                                       ("admins", "indirect")}


async def test_a_jwks_url_is_fetched_and_cached(database_url, tmp_path):
    """The identity provider's JWKS from a URL (a real local HTTP server), fetched once for many tokens."""
    from aiohttp import web

    key = ec.generate_private_key(ec.SECP256R1())
    jwks = json.loads(open(_jwks_file(tmp_path, {"e1": key.public_key()})).read())
    fetches = []

    async def serve_jwks(request):
        fetches.append(1)
        return web.json_response(jwks)
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", serve_jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        ident = await start_identity(database_url, jwks=f"http://127.0.0.1:{port}/.well-known/jwks.json",
                                     jwt_issuer="https://idp.example", jwt_audience="podium-api")
        await ident.identity.create(ADMIN_TOKEN, "service_principal", {"applicationId": "app-7"})
        now = int(time.time())
        for i in range(5):
            token = jwt.encode({"iss": "https://idp.example", "aud": "podium-api", "sub": "app-7", "exp": now + 60 + i},
                               key, algorithm="ES256", headers={"kid": "e1"})
            assert (await ident.identity.authenticate(token)).name == "app-7"
        assert len(fetches) == 1
    finally:
        await runner.cleanup()
