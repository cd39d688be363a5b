"""No secret in plaintext at rest, in logs, in answers or in the process list, across a live key rotation.

Secrets of every kind are made through the API of a real stack, then every file under its data directory
(database and its WAL, the key files and their neighbours, every log, the replica records) and every
process's command line are searched for each of them. A secret a served entity's `environment_vars`
reference is found in its replica's environment, and nowhere else. A replica credential (an agent's client
secret) and an access token it got are searched for too.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from podium_api.v1 import control_plane_pb2, control_plane_pb2_grpc, identity_pb2, identity_pb2_grpc
from tests.support.stack import service_pids, worker_pids

pytestmark = pytest.mark.stack


def _read(path: Path) -> bytes:
    """The file's bytes; none for one that is gone (a replica that exited, a journal SQLite removed): what
    no longer exists holds no secret. The session's stack keeps working while this test reads it."""
    try:
        return path.read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def _environ(pid: int) -> dict[str, str]:
    pairs = _read(Path(f"/proc/{pid}/environ")).split(b"\0")
    return dict(p.decode(errors="replace").split("=", 1) for p in pairs if b"=" in p)


def _resolve(stack, internal_token: str, text: str, endpoint_name: str = "at-rest-ep") -> str:
    with grpc.insecure_channel(stack.info["control_plane_target"]) as channel:
        reply = identity_pb2_grpc.IdentityStub(channel).ResolveSecrets(
            identity_pb2.ResolveSecretsRequest(texts=[text], endpoint_name=endpoint_name), timeout=10,
            metadata=(("authorization", f"Bearer {internal_token}"),))
    return reply.texts[0]


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and p.suffix != ".sock"]


def test_no_plaintext_secret_anywhere(stack, iris_endpoint, iris_model):
    api = stack.api
    value = "sk-at-rest-" + secrets.token_hex(12)
    assert api("POST", "/api/2.0/secrets/scopes/create", json={"scope": "at-rest"}).status_code == 200
    assert api("POST", "/api/2.0/secrets/put", json={"scope": "at-rest", "key": "openai", "string_value": value}).status_code == 200
    # A model's variable referencing a secret: resolved into its replica's environment as it starts.
    model_variable = "sk-model-env-" + secrets.token_hex(12)
    assert api("POST", "/api/2.0/secrets/put", json={"scope": "at-rest", "key": "model-env",
                                                      "string_value": model_variable}).status_code == 200
    env_endpoint = stack.serve("at-rest-env", [{"entity_name": iris_model.name, "entity_version": iris_model.version,
                                                "workload_size": "Small", "scale_to_zero_enabled": False,
                                                "environment_vars": {"MODEL_KEY": "{{secrets/at-rest/model-env}}"}}])
    assert model_variable not in str(env_endpoint)
    refused = api("POST", "/api/2.0/secrets/put", json={"scope": "at-rest", "key": "k", "string_value": value,
                                                         "bytes_value": "AA=="})
    assert refused.status_code == 400 and value not in refused.text        # errors never echo a value
    assert value not in api("GET", "/api/2.0/secrets/list", params={"scope": "at-rest"}).text
    assert value not in api("GET", "/api/2.0/secrets/get", params={"scope": "at-rest", "key": "openai"}).text

    pat = api("POST", "/api/2.0/token/create", json={"comment": "at rest"}).json()["token_value"]
    robot = api("POST", "/api/2.0/preview/scim/v2/ServicePrincipals", json={"displayName": "at-rest"}).json()
    client_secret = api("POST", f"/api/2.0/accounts/servicePrincipals/{robot['id']}/credentials/secrets",
                        json={}).json()["secret"]
    jwt_token = stack.api_as(None, "POST", "/oidc/v1/token", data={"grant_type": "client_credentials"},
                             auth=(robot["applicationId"], client_secret)).json()["access_token"]
    assert stack.api_as(jwt_token, "GET", "/api/2.0/preview/scim/v2/Me").json()["id"] == robot["id"]
    assert stack.api_as(pat, "GET", "/api/2.0/preview/scim/v2/Me").status_code == 200

    # (Other tests may have restarted a service or started a second router on this stack: any one will do.)
    internal_token = _environ(service_pids(stack.data_dir, "services.control_plane")[0])["PODIUM_INTERNAL_TOKEN"]
    worker_token = _environ(service_pids(stack.data_dir, "services.router")[0])["PODIUM_WORKER_TOKEN"]
    # A replica credential, as the scaler gets one for an agent's replica: its client secret, and an access token.
    with grpc.insecure_channel(stack.info["control_plane_target"]) as channel:
        internal = (("authorization", f"Bearer {internal_token}"),)
        [key] = [d.key for d in control_plane_pb2_grpc.ControlPlaneStub(channel).ListDeployments(
            control_plane_pb2.ListDeploymentsRequest(), timeout=10, metadata=internal).deployments
            if d.endpoint_name == "at-rest-env"]
        replica = identity_pb2_grpc.IdentityStub(channel).IssueReplicaCredential(
            identity_pb2.IssueReplicaCredentialRequest(deployment_key=key, endpoints=["at-rest-env"]),
            timeout=10, metadata=internal)
    replica_token = stack.api_as(None, "POST", "/oidc/v1/token", data={"grant_type": "client_credentials"},
                                 auth=(replica.client_id, replica.client_secret)).json()["access_token"]
    assert stack.api_as(replica_token, "GET", "/api/2.0/preview/scim/v2/Me").status_code == 403   # valid, confined
    # ResolveSecrets hands out only references of a live config whose writer (here the admin) may READ the scope.
    with pytest.raises(grpc.RpcError) as unreferenced:
        _resolve(stack, internal_token, "{{secrets/at-rest/openai}}")
    assert unreferenced.value.code() == grpc.StatusCode.PERMISSION_DENIED
    gateway = {"name": "at-rest-ep", "config": {"served_entities": [
        {"name": key, "external_model": {"name": "gpt-4o", "provider": "openai", "task": "llm/v1/chat",
                                         "openai_config": {"openai_api_key": f"{{{{secrets/at-rest/{key}}}}}"}}}
        for key in ("openai", "later")], "traffic_config": {"routes": [
            {"served_entity_name": "openai", "traffic_percentage": 50},
            {"served_entity_name": "later", "traffic_percentage": 50}]}}}
    assert api("POST", "/api/2.0/serving-endpoints", json=gateway).status_code == 200
    assert _resolve(stack, internal_token, "Bearer {{secrets/at-rest/openai}}") == f"Bearer {value}"
    with pytest.raises(grpc.RpcError) as elsewhere:   # only for the endpoint whose config references it
        _resolve(stack, internal_token, "{{secrets/at-rest/openai}}", endpoint_name="another-endpoint")
    assert elsewhere.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # Rotate the master key while the stack runs: every secret is re-encrypted and still resolves.
    rotated = subprocess.run([sys.executable, "-m", "podium.cli", "keys", "rotate", "--data-dir", str(stack.data_dir),
                              "--json"],
                             capture_output=True, text=True, timeout=180, env={**os.environ})
    assert rotated.returncode == 0, rotated.stderr
    report = json.loads(rotated.stdout)
    assert report["reencrypted_secrets"] >= 1
    assert _resolve(stack, internal_token, "{{secrets/at-rest/openai}}") == value
    rotated_value = "sk-after-rotation-" + secrets.token_hex(12)
    assert api("POST", "/api/2.0/secrets/put", json={"scope": "at-rest", "key": "later",
                                                      "string_value": rotated_value}).status_code == 200
    assert _resolve(stack, internal_token, "{{secrets/at-rest/later}}") == rotated_value
    assert api("DELETE", "/api/2.0/serving-endpoints/at-rest-ep").status_code == 200

    plaintexts = {"secret value": value, "secret written after rotation": rotated_value, "personal access token": pat,
                  "secret in a model's environment_vars": model_variable,
                  "service principal secret": client_secret, "OAuth access token": jwt_token,
                  "replica client secret": replica.client_secret, "replica access token": replica_token,
                  "internal service credential": internal_token, "router's worker credential": worker_token}
    files = _files(stack.data_dir)
    key_file = stack.data_dir / "keys" / "master-key.json"
    assert key_file in files and stack.data_dir / "podium.db" in files and any("logs" in p.parts for p in files)
    for path in files:
        content = _read(path)
        for what, plaintext in plaintexts.items():
            assert plaintext.encode() not in content, f"{what} found in {path}"
        if path.name != "podium.json":   # the admin token lives in podium.json (mode 0600) only
            assert stack.admin_token.encode() not in content, f"the admin token found in {path}"
    assert stat.S_IMODE((stack.data_dir / "podium.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((stack.data_dir / "podium.db").stat().st_mode) == 0o600

    # No credential on any command line: the stack's processes (workers included) are given them by env.
    workers = worker_pids(stack.data_dir) + service_pids(stack.data_dir, "services.worker.template")
    pids = [stack.process.pid] + [pid for module in ("services.control_plane", "services.router", "services.scaler")
                                  for pid in service_pids(stack.data_dir, module)] + workers
    assert len(pids) >= 5
    for pid in pids:
        cmdline = _read(Path(f"/proc/{pid}/cmdline"))
        for what, plaintext in {**plaintexts, "admin token": stack.admin_token}.items():
            assert plaintext.encode() not in cmdline, f"{what} on the command line of {pid}"
    # The model's variable is in exactly one process's environment: its replica's.
    holders = [pid for pid in pids if model_variable in _environ(pid).values()]
    assert len(holders) == 1 and holders[0] in workers, holders
    assert api("DELETE", "/api/2.0/serving-endpoints/at-rest-env").status_code == 200
    # Workers run model code: they hold no Podium credential at all, only the digest of the router's.
    assert workers
    for pid in workers:   # fresh ones, the warm template, and the replicas it forks
        environ = _environ(pid)
        assert not {"PODIUM_INTERNAL_TOKEN", "PODIUM_WORKER_TOKEN", "PODIUM_MASTER_KEY",
                    "PODIUM_BOOTSTRAP_ADMIN_TOKEN"} & environ.keys()
        assert internal_token not in environ.values() and worker_token not in environ.values()
