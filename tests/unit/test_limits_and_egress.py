"""Issue 19's limits: the egress policy (a table), spec limits and per-user quotas, names matched whole,
token lifetimes, and sealing only the documented secret fields."""

from __future__ import annotations

import ipaddress

import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.common.egress import EgressPolicy, egress_refusal, parse_networks, url_refusal
from services.common.errors import InvalidParameter, QuotaExceeded
from services.common.principals import USER, Principal
from services.common.grpc_edge import abort_with, error_from_rpc
from services.common.secret_box import Cipher, public_view, seal_plaintext
from services.control_plane import spec, spec_external, spec_options
from services.control_plane.quotas import Quotas, check_quotas
from services.control_plane.tokens import _lifetime
from services.router.external.provider_errors import provider_error

ADMIN = Principal("admin-id", "admin", USER, is_admin=True)
ALICE = Principal("alice-id", "alice", USER)
POLICY = EgressPolicy(parse_networks("10.1.0.0/16, fd00::/8"), frozenset({8080}))


@pytest.mark.parametrize("host, port, may_reach_private, refused", [
    pytest.param("93.184.216.34", 443, False, None, id="public address: anyone"),
    pytest.param("127.0.0.1", 11434, False, "private", id="loopback refused for a user"),
    pytest.param("127.0.0.1", 11434, True, None, id="loopback allowed for an admin's spec"),
    pytest.param("127.0.0.1", 8080, True, "Podium's own", id="the router's port: refused even for an admin"),
    pytest.param("0.0.0.0", 8080, True, "Podium's own", id="unspecified address on the router's port"),
    pytest.param("::ffff:127.0.0.1", 8080, True, "Podium's own", id="IPv4-mapped loopback on the router's port"),
    pytest.param("10.0.0.1", 8080, True, None, id="another host's port 8080 is not Podium's"),
    pytest.param("169.254.169.254", 80, False, "private", id="link-local (cloud metadata) refused for a user"),
    pytest.param("192.168.1.5", 8000, False, "private", id="private range refused for a user"),
    pytest.param("100.64.0.1", 80, False, "private", id="shared address space counts as private"),
    pytest.param("10.1.2.3", 8000, False, None, id="a platform-allowed network: anyone"),
    pytest.param("10.2.0.1", 8000, False, "private", id="outside the allowed network"),
    pytest.param("::1", 80, False, "private", id="IPv6 loopback"),
    pytest.param("fd00::5", 80, False, None, id="allowed IPv6 network"),
    pytest.param("::ffff:10.9.9.9", 80, False, "private", id="IPv4-mapped private address"),
    pytest.param("2606:4700::1111", 443, False, None, id="public IPv6"),
    pytest.param("64:ff9b::7f00:1", 80, False, "private", id="NAT64 of 127.0.0.1"),
    pytest.param("2002:a00:1::1", 80, False, "private", id="6to4 of 10.0.0.1"),
    pytest.param("64:ff9b::808:808", 80, False, None, id="NAT64 of a public address"),
])
def test_egress_policy(host, port, may_reach_private, refused):
    reason = egress_refusal(host, port, may_reach_private, POLICY)
    assert (reason is None) if refused is None else (refused in reason)


@pytest.mark.parametrize("url, may_reach_private, refused", [
    pytest.param("https://api.openai.com/v1", False, False, id="a host name: checked when called"),
    pytest.param("http://localhost:11434/v1", False, True, id="localhost refused for a user"),
    pytest.param("http://LOCALHOST.:11434/v1", False, True, id="localhost, any case, trailing dot"),
    pytest.param("http://localhost:11434/v1", True, False, id="localhost allowed for an admin"),
    pytest.param("http://127.0.0.1:8080", True, True, id="the router's own port, written by an admin"),
    pytest.param("http://[::1]:9000/v1", False, True, id="IPv6 literal"),
    pytest.param("http://10.1.0.9:8000/v1", False, False, id="allowed network"),
])
def test_url_refusal(url, may_reach_private, refused):
    assert (url_refusal(url, may_reach_private, POLICY) is not None) == refused


def test_parse_networks_refuses_garbage():
    assert parse_networks("") == ()
    assert parse_networks("10.0.0.0/8") == (ipaddress.ip_network("10.0.0.0/8"),)
    with pytest.raises(ValueError):
        parse_networks("10.0.0.0/8, not-a-network")


def _custom(url: str) -> dict:
    return spec.validate_config({"served_entities": [{"external_model": {
        "provider": "custom", "name": "m", "task": "llm/v1/chat",
        "custom_provider_config": {"custom_provider_url": url}}}]})


def test_check_egress_names_the_field_never_the_url():
    config = _custom("http://127.0.0.1:11434/v1")
    assert spec_external.check_egress(config, ADMIN, POLICY)["private_egress"] is True   # an admin may
    with pytest.raises(InvalidParameter) as refused:
        spec_external.check_egress(config, ALICE, POLICY)
    assert "custom_provider_config.custom_provider_url is refused by the egress policy" in refused.value.message
    assert "127.0.0.1" not in refused.value.message
    public = _custom("https://llm.example.com/v1")
    assert spec_external.check_egress(public, ALICE, POLICY) == public       # not marked: no private egress


@pytest.mark.parametrize("status, body, want, unwanted", [
    pytest.param(400, b'{"error": {"message": "bad\\nmodel <b>x</b>"}}', "bad model b x /b", "\n",
                 id="JSON message, sanitized"),
    pytest.param(400, b"<html>Internal admin console: root password is ...</html>", "no details", "admin console",
                 id="a non-JSON body is never relayed"),
    pytest.param(502, b'{"message": "' + b"x" * 1000 + b'"}', "x" * 150, "x" * 201, id="cut short"),
])
def test_provider_error_bodies_are_summarized(status, body, want, unwanted):
    message = provider_error("custom", "e", status, body, None, "", 0.0).message
    assert want in message and unwanted not in message and f"HTTP {status}" in message


# ---- spec limits (400) ----

def _entity(**fields) -> dict:
    return {"entity_name": "main.default.iris", "entity_version": "1", **fields}


@pytest.mark.parametrize("body, needle", [
    pytest.param({"config": {"served_entities": [_entity(max_provisioned_concurrency=100000000000)]}},
                 "max_provisioned_concurrency must be at most 1024", id="provisioned concurrency bound"),
    pytest.param({"config": {"served_entities": [_entity(min_provisioned_concurrency=1025)]}},
                 "min_provisioned_concurrency must be at most 1024", id="min bound too"),
    pytest.param({"config": {"served_entities": [_entity(environment_vars={f"V{i}": "x" for i in range(31)})]}},
                 "at most 30", id="environment variables per served entity"),
    pytest.param({"tags": [{"key": f"k{i}"} for i in range(51)]}, "at most 50 tags", id="tags per endpoint"),
    pytest.param({"tags": [{"key": "k" * 256}]}, "key must be at most 255", id="tag key length"),
    pytest.param({"tags": [{"key": "k", "value": "v" * 1001}]}, "value must be at most 1000", id="tag value length"),
    pytest.param({"description": "d" * 1_000_000}, "description must be at most 4096", id="description length"),
    pytest.param({"name": "iris\n"}, "Invalid endpoint name", id="a trailing newline is no name"),
    pytest.param({"config": {"served_entities": [_entity(entity_version="1\n")]}}, "neither a version",
                 id="a trailing newline is no version"),
])
def test_spec_limits(body, needle):
    request = {"name": "iris", "config": {"served_entities": [_entity()]}, **body}
    with pytest.raises(InvalidParameter) as refused:
        spec.validate_create(request)
    assert needle in refused.value.message


def test_tag_patches_cannot_pass_the_tag_limit():
    tags = [{"key": f"k{i}"} for i in range(50)]
    assert len(spec_options.apply_tags_patch(tags, [{"key": "k0", "value": "v"}], [])) == 50
    with pytest.raises(InvalidParameter, match="at most 50 tags"):
        spec_options.apply_tags_patch(tags, [{"key": "new"}], [])


# ---- quotas (400 QUOTA_EXCEEDED) ----

def _owned(endpoint_id: str, concurrency: int, creator: str = "alice") -> dict:
    config = {"served_entities": [_entity(max_provisioned_concurrency=concurrency)]}
    return {"id": endpoint_id, "creator": creator, "config": config, "pending_config": None}


def _config(concurrency: int | None = None, external: bool = False) -> dict:
    if external:
        return {"served_entities": [{"name": "x", "external_model": {"provider": "openai"}}]}
    fields = {} if concurrency is None else {"min_provisioned_concurrency": concurrency,
                                             "max_provisioned_concurrency": concurrency}
    return {"served_entities": [_entity(**fields)]}


@pytest.mark.parametrize("owned, replacing, config, quotas, needle", [
    pytest.param([], None, _config(), Quotas(1, 64), None, id="first endpoint"),
    pytest.param([_owned("a", 4)], None, _config(), Quotas(1, 64), "at most 1 endpoints per user",
                 id="endpoints per user"),
    pytest.param([_owned("a", 4)], "a", _config(8), Quotas(1, 64), None, id="an update is no new endpoint"),
    pytest.param([], None, _config(40), Quotas(10, 32), "at most 32 per user", id="one endpoint over the quota"),
    pytest.param([_owned("a", 30)], None, _config(8), Quotas(10, 32), "38 requested", id="summed over endpoints"),
    pytest.param([_owned("a", 30)], "a", _config(32), Quotas(10, 32), None, id="an update replaces its own share"),
    pytest.param([_owned("a", 32)], None, _config(external=True), Quotas(10, 32), None,
                 id="external models provision nothing"),
    pytest.param([_owned("a", 4)] * 3, None, _config(1024), Quotas(0, 0), None, id="0 turns quotas off"),
    pytest.param([_owned("a", 64, creator="bob")], None, _config(64), Quotas(1, 64), None,
                 id="others' endpoints do not count"),
    pytest.param([_owned("a", 4, creator="bob"), _owned("b", 60, creator="bob")], "a", _config(8), Quotas(9, 64),
                 "68 requested", id="an update of another's endpoint counts against its creator's quota"),
])
def test_quotas(owned, replacing, config, quotas, needle):
    check_quotas(ADMIN, owned, replacing, config, Quotas(1, 1))   # admins are not limited
    if needle is None:
        check_quotas(ALICE, owned, replacing, config, quotas)
        return
    with pytest.raises(QuotaExceeded) as refused:
        check_quotas(ALICE, owned, replacing, config, quotas)
    assert needle in refused.value.message and refused.value.http_status == 400
    assert refused.value.code == "QUOTA_EXCEEDED"


class _Context:
    async def abort(self, code, details, trailing_metadata=()):
        self.aborted = (code, details, trailing_metadata)
        raise grpc.aio.AbortError()


async def test_a_quota_error_keeps_its_code_and_status_across_the_grpc_hop():
    context = _Context()
    with pytest.raises(grpc.aio.AbortError):
        await abort_with(context, QuotaExceeded("Endpoint quota reached"))
    code, details, trailing = context.aborted
    rebuilt = error_from_rpc(grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details),
                             "control plane")
    assert (rebuilt.code, rebuilt.http_status, rebuilt.message) == ("QUOTA_EXCEEDED", 400, "Endpoint quota reached")


# ---- small fixes ----

@pytest.mark.parametrize("value, want", [
    (None, 7), (60, 60), ("600s", 600), ("600", 600), (100 * 365 * 24 * 3600, 100 * 365 * 24 * 3600),
])
def test_token_lifetimes(value, want):
    assert _lifetime(value, 7) == want


@pytest.mark.parametrize("value", [0, -1, True, 1000000000000000000, 100 * 365 * 24 * 3600 + 1, "600s\n", "1.5"])
def test_token_lifetimes_refused(value):
    with pytest.raises(InvalidParameter):
        _lifetime(value, 7)


def test_environment_vars_are_never_sealed_or_hidden():
    cipher = Cipher.from_key(bytes(range(32)))
    entity = {"name": "m", "environment_vars": {"MY_TOKEN_plaintext": "v", "token_plaintext": "w"}}
    config = {"served_entities": [entity, {"name": "x", "external_model": {"custom_provider_config": {
        "bearer_token_auth": {"token_plaintext": "t"}, "other_plaintext": "o"}}}]}
    sealed = seal_plaintext(config, cipher)
    assert sealed["served_entities"][0] == entity
    external = sealed["served_entities"][1]["external_model"]["custom_provider_config"]
    assert set(external["bearer_token_auth"]) == {"token_ciphertext"}
    assert external["other_plaintext"] == "o"     # not a documented secret field: not sealed
    assert public_view(sealed)["served_entities"][0] == entity


async def test_the_router_refuses_a_request_that_already_passed_through_podium():
    from services.router.rest import error_middleware, hop_guard

    async def handler(request):
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[error_middleware, hop_guard])
    app.router.add_post("/x", handler)
    async with TestClient(TestServer(app)) as client:
        assert (await client.post("/x")).status == 200
        looped = await client.post("/x", headers={"x-podium-hop": "1"})
        assert looped.status == 400 and "Podium" in (await looped.json())["message"]


async def test_the_provider_client_checks_the_address_it_connects_to():
    """A target on 127.0.0.1 (an IP literal) and on `localhost` (a name resolved at call time): refused for a
    user's spec before any byte is sent, served for an admin's, and the provider sees the hop header."""
    from services.common.gateway_routes import ExternalModelTarget
    from services.common.errors import PermissionDenied
    from services.router.external.client import ProviderClient
    from services.router.external.credentials import Credentials

    seen = []

    async def chat(request):
        seen.append(request.headers.get("x-podium-hop"))
        return web.json_response({"id": "1", "object": "chat.completion", "model": "m", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    async with TestServer(app, host="127.0.0.1") as server:
        client = ProviderClient(Credentials(None, None), timeout_s=5, max_retries=0, connect_timeout_s=2,
                                egress=EgressPolicy(podium_ports=frozenset({12345})))
        await client.start()
        try:
            payload = {"messages": [{"role": "user", "content": "hi"}]}
            for host in ("127.0.0.1", "localhost"):
                url = f"http://{host}:{server.port}/v1"
                user = ExternalModelTarget("custom", "m", "llm/v1/chat", url)
                with pytest.raises(PermissionDenied, match="egress policy"):
                    await client.invoke("e", user, payload)
                assert seen == []
                admin = ExternalModelTarget("custom", "m", "llm/v1/chat", url, may_reach_private=True)
                await client.invoke("e", admin, payload)
                assert seen.pop() == "1"
            admin_at_router = ExternalModelTarget("custom", "m", "llm/v1/chat", "http://127.0.0.1:12345/v1",
                                                  may_reach_private=True)
            with pytest.raises(PermissionDenied, match="Podium's own listeners"):
                await client.invoke("e", admin_at_router, payload)
        finally:
            await client.close()


async def test_the_endpoint_core_applies_egress_and_quotas_by_writer(tmp_path):
    """Through EndpointService: a user's private URL is refused, the admin's is stored marked and reaches the
    routing table as may_reach_private; a user's update of the admin's config drops the mark; quotas count
    only the caller's own endpoints."""
    from services.control_plane.core import EndpointService
    from services.control_plane.store import EndpointStore
    from tests.support.identity import ADMIN_TOKEN, start_identity

    identity = await start_identity(f"sqlite:///{tmp_path / 'podium.db'}")
    service = EndpointService(EndpointStore(identity.engine), identity.identity, quotas=Quotas(1, 8), egress=POLICY)
    await service.start()
    alice = (await identity.user_token("alice"))[1]
    local = {"served_entities": [{"external_model": {"provider": "custom", "name": "m", "task": "llm/v1/chat",
                                                     "custom_provider_config": {"custom_provider_url":
                                                                                "http://127.0.0.1:11434/v1"}}}]}
    with pytest.raises(InvalidParameter, match="egress policy"):
        await service.create(alice, {"name": "mine", "config": local})
    await service.create(ADMIN_TOKEN, {"name": "shared", "config": local})
    [routes] = service.routing_table()
    assert routes.routes[0].external_model.may_reach_private is True
    public = {"served_entities": [{"external_model": {"provider": "custom", "name": "m", "task": "llm/v1/chat",
                                                      "custom_provider_config": {"custom_provider_url":
                                                                                 "https://llm.example.com/v1"}}}]}
    await service.create(alice, {"name": "mine", "config": public})
    with pytest.raises(QuotaExceeded, match="at most 1 endpoints"):
        await service.create(alice, {"name": "second", "config": public})
    await service.create(ADMIN_TOKEN, {"name": "admins-second", "config": public})   # admins: no quota
    # Alice, given CAN_MANAGE on the admin's endpoint, may not keep its private URL by rewriting it.
    endpoint_id = (await service.get(ADMIN_TOKEN, "shared"))["id"]
    await service.set_permissions(ADMIN_TOKEN, endpoint_id, {"access_control_list": [
        {"user_name": "alice", "permission_level": "CAN_MANAGE"}]}, replace=False)
    with pytest.raises(InvalidParameter, match="egress policy"):
        await service.update_config(alice, "shared", local)
