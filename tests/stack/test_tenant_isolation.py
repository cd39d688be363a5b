"""What an ordinary user can reach on a shared stack, through the real REST API (issue 19).

- Inference tables and usage belong to the endpoint's id: a user who creates an endpoint with the name of
  one the admin deleted reads none of the admin's captured prompts, answers or usage.
- Egress: a user's external model may not name a loopback or private address (at write time, and at call
  time for a host name resolving to one); the admin's may; an endpoint whose provider is Podium itself
  fails after one hop instead of looping.
- Spec limits (400) and per-user quotas (400 QUOTA_EXCEEDED), and the small fixes: token lifetimes, names with a trailing
  newline, environment variables ending in `_plaintext`.
"""

from __future__ import annotations

import socket
import time
import uuid

import pytest

from tests.support.external import create_external_endpoint, external_entity
from tests.support.stack import wait_for

pytestmark = pytest.mark.stack

SCIM = "/api/2.0/preview/scim/v2"
USER = "iso-alice"
LOGGED = {"inference_table_config": {"enabled": True, "catalog_name": "main", "schema_name": "default"},
          "usage_tracking_config": {"enabled": True}}
ABSENT_MODEL = {"entity_name": "main.default.iso-absent", "entity_version": "1", "scale_to_zero_enabled": True}


@pytest.fixture(scope="module")
def alice(stack) -> str:
    """An ordinary user's token (not an admin), who may serve main.default's models."""
    created = stack.api("POST", f"{SCIM}/Users", json={"userName": USER})
    assert created.status_code == 201, created.text
    token = stack.api("POST", "/api/2.0/token-management/on-behalf-of/tokens",
                      json={"user_name": USER, "lifetime_seconds": 3600})
    assert token.status_code == 200, token.text
    execute = {"changes": [{"principal": USER, "add": ["EXECUTE"]}]}
    granted = stack.api("PATCH", "/api/2.1/unity-catalog/permissions/schema/main.default", json=execute)
    assert granted.status_code == 200, granted.text
    return token.json()["token_value"]


def _create(stack, token: str, body: dict):
    return stack.api_as(token, "POST", "/api/2.0/serving-endpoints", json=body)


def _custom(url: str, name: str = "iso-model") -> dict:
    return {"external_model": {"provider": "custom", "name": name, "task": "llm/v1/chat",
                               "custom_provider_config": {"custom_provider_url": url}}}


CHAT = {"messages": [{"role": "user", "content": "hi"}]}


# ---- 3: records belong to the endpoint's id ----

def test_a_new_endpoint_with_a_deleted_ones_name_reads_none_of_its_records(stack, alice, fake_providers):
    name, marker = "iso-gpt-plain", uuid.uuid4().hex
    create_external_endpoint(stack, name, external_entity(fake_providers, "openai", "llm/v1/chat"), ai_gateway=LOGGED)
    asked = stack.api("POST", f"/serving-endpoints/{name}/invocations",
                      json={"messages": [{"role": "user", "content": f"admin-secret-{marker}"}]})
    assert asked.status_code == 200, asked.text
    wait_for(lambda: stack.api("GET", f"/api/2.0/serving-endpoints/{name}/inference-table").json()["rows"],
             timeout_s=20, what="the admin's inference row")
    assert stack.api("DELETE", f"/api/2.0/serving-endpoints/{name}").status_code == 200

    # Alice's endpoint of the same name (at a public provider she may name; it is never called here).
    mine = _create(stack, alice, {"name": name, "ai_gateway": LOGGED, "config": {"served_entities": [{
        "external_model": {"provider": "openai", "name": "gpt-4o-mini", "task": "llm/v1/chat",
                           "openai_config": {"openai_api_key_plaintext": "sk-alice"}}}]}})
    assert mine.status_code == 200, mine.text

    def read(path):
        reply = stack.api_as(alice, "GET", f"/api/2.0/serving-endpoints/{name}/{path}", params={"start_time_ms": 0})
        return reply.status_code == 200 and reply   # until this router's table has her endpoint
    table = wait_for(lambda: read("inference-table"), timeout_s=20, what="alice's inference table")
    usage = read("usage")
    assert table.json()["rows"] == [] and marker not in table.text
    assert usage.json()["usage"] == []


# ---- 4: egress ----

@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "169.254.169.254", "[::1]"])
def test_a_user_may_not_name_a_private_address(stack, alice, fake_providers, host):
    port = fake_providers.url.rsplit(":", 1)[1]
    reply = _create(stack, alice, {"name": "iso-private", "config": {"served_entities": [
        _custom(f"http://{host}:{port}/v1")]}})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "egress policy" in reply.json()["message"] and host not in reply.json()["message"]


def test_a_host_name_resolving_to_a_private_address_is_refused_when_called(stack, alice, fake_providers):
    host = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        pytest.skip("this machine's host name does not resolve")
    if not all(a.startswith(("127.", "10.", "192.168.", "172.", "::1", "fe80", "fd")) for a in addresses):
        pytest.skip(f"this machine's host name resolves to a public address ({addresses})")
    port = fake_providers.url.rsplit(":", 1)[1]
    created = _create(stack, alice, {"name": "iso-by-name", "config": {"served_entities": [
        _custom(f"http://{host}:{port}/v1")]}})
    assert created.status_code == 200, created.text   # a name: what it resolves to is checked at call time
    before = len(fake_providers.requests)
    reply = stack.api_as(alice, "POST", "/serving-endpoints/iso-by-name/invocations", json=CHAT)
    assert reply.status_code == 403, reply.text
    assert reply.json()["error_code"] == "PERMISSION_DENIED" and "egress policy" in reply.json()["message"]
    assert len(fake_providers.requests) == before   # nothing reached the provider


def test_the_admin_may_name_a_local_provider(stack, fake_providers):
    create_external_endpoint(stack, "iso-admin-local", external_entity(fake_providers, "custom", "llm/v1/chat"))
    reply = stack.api("POST", "/serving-endpoints/iso-admin-local/invocations", json=CHAT)
    assert reply.status_code == 200, reply.text
    assert {k.lower(): v for k, v in fake_providers.requests[-1]["headers"].items()}["x-podium-hop"] == "1"


def test_an_endpoint_whose_provider_is_podium_fails_after_one_hop(stack):
    """Before: the router called itself until the deadline (thousands of requests)."""
    name = "iso-loop"
    created = stack.api("POST", "/api/2.0/serving-endpoints", json={"name": name, "config": {"served_entities": [
        _custom(stack.url + "/serving-endpoints", name=name)]}})
    if created.status_code == 400:   # the router's port is fixed: refused when written (Podium's own listener)
        assert "egress policy" in created.json()["message"]
        return
    assert created.status_code == 200, created.text
    started = time.monotonic()
    reply = stack.api("POST", f"/serving-endpoints/{name}/invocations", json=CHAT, timeout_s=20)
    assert time.monotonic() - started < 5
    assert reply.status_code in (400, 403), reply.text
    assert "Podium" in reply.json()["message"]


# ---- 6: spec limits and quotas ----

@pytest.mark.parametrize("fields, needle", [
    ({"config": {"served_entities": [{**ABSENT_MODEL, "max_provisioned_concurrency": 100000000000}]}},
     "at most 1024"),
    ({"tags": [{"key": f"k{i}", "value": "v"} for i in range(10_000)]}, "at most 50 tags"),
    ({"description": "d" * 1_000_000}, "description must be at most"),
])
def test_spec_limits(stack, alice, fields, needle):
    body = {"name": "iso-limits", "config": {"served_entities": [ABSENT_MODEL]}, **fields}
    reply = _create(stack, alice, body)
    assert reply.status_code == 400, reply.text[:500]
    assert reply.json()["error_code"] == "INVALID_PARAMETER_VALUE" and needle in reply.json()["message"]


def test_provisioned_concurrency_is_limited_per_user(stack, alice):
    entity = {**ABSENT_MODEL, "min_provisioned_concurrency": 40, "max_provisioned_concurrency": 1000}
    reply = _create(stack, alice, {"name": "iso-big", "config": {"served_entities": [entity]}})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error_code"] == "QUOTA_EXCEEDED"
    assert "PODIUM_QUOTA_CONCURRENCY_PER_USER" in reply.json()["message"]
    assert stack.api("GET", "/api/2.0/serving-endpoints/iso-big").status_code == 404   # nothing was created


# ---- 7: small fixes ----

def test_a_huge_token_lifetime_is_a_400(stack, alice):
    reply = stack.api_as(alice, "POST", "/api/2.0/token/create", json={"lifetime_seconds": 1000000000000000000})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_a_name_with_a_trailing_newline_is_refused(stack, alice):
    reply = _create(stack, alice, {"name": "iris\n", "config": {"served_entities": [ABSENT_MODEL]}})
    assert reply.status_code == 400, reply.text
    listed = stack.api_as(alice, "GET", "/api/2.0/serving-endpoints").json().get("endpoints", [])
    assert "iris\n" not in {e["name"] for e in listed}


def test_an_environment_variable_ending_in_plaintext_reaches_the_spec_as_given(stack, alice):
    env = {"MY_TOKEN_plaintext": "not-a-secret"}
    reply = _create(stack, alice, {"name": "iso-env", "config": {"served_entities": [
        {**ABSENT_MODEL, "environment_vars": env}]}})
    assert reply.status_code == 200, reply.text
    got = stack.api_as(alice, "GET", "/api/2.0/serving-endpoints/iso-env").json()
    config = got.get("pending_config") or got["config"]
    assert config["served_entities"][0]["environment_vars"] == env
    assert stack.api_as(alice, "DELETE", "/api/2.0/serving-endpoints/iso-env").status_code == 200
