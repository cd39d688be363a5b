"""`podium up --tls`: HTTPS (TLS 1.2+) on the router with a certificate the user brings, mutual TLS on every
internal hop (control plane, scaler, router, workers) under Podium's own CA, and a query served end to end."""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import threading

import grpc
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from podium_api.v1 import control_plane_pb2, control_plane_pb2_grpc, query_pb2, query_pb2_grpc, worker_pb2, \
    worker_pb2_grpc
from tests.support.models import register_sklearn_classifier
from tests.support.stack import start_stack

pytestmark = pytest.mark.stack


def _issue(name: str, issuer_key=None, issuer_name=None, *, ca: bool = False, client: bool = False):
    """A key and certificate (self-signed when no issuer) for 127.0.0.1: the user's own PKI, not Podium's."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name or subject) \
        .public_key(key.public_key()).serial_number(x509.random_serial_number()) \
        .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=2)) \
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        usage = x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH if client else x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return key, cert


def _pem(key, cert) -> tuple[bytes, bytes]:
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()), cert.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="module")
def user_pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("user-pki")
    ca_key, ca_cert = _issue("user CA", ca=True)
    server_key, server_cert = _issue("router.example", ca_key, ca_cert.subject)
    client_key, client_cert = _issue("stranger", ca_key, ca_cert.subject, client=True)
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    key_pem, cert_pem = _pem(server_key, server_cert)
    (directory / "router.key").write_bytes(key_pem)
    (directory / "router.pem").write_bytes(cert_pem + (directory / "ca.pem").read_bytes())
    client_key_pem, client_cert_pem = _pem(client_key, client_cert)
    return {"dir": directory, "ca": directory / "ca.pem", "client": (client_key_pem, client_cert_pem)}


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory, user_pki):
    running = start_stack(tmp_path_factory.mktemp("podium-tls"), {"PODIUM_AUTH_CACHE_TTL_S": "1"}, extra_args=[
        "--tls", "--tls-cert", str(user_pki["dir"] / "router.pem"), "--tls-key", str(user_pki["dir"] / "router.key")])
    assert "ca_file" not in running.info   # the router's certificate is the user's: Podium names no CA for it
    running.info["ca_file"] = str(user_pki["ca"])
    yield running
    running.stop()


def _https(stack, user_pki, method, path, **kwargs):
    return stack.api_as(stack.admin_token, method, path, verify=str(user_pki["ca"]), **kwargs)


def test_https_with_the_users_certificate(tls_stack, user_pki):
    assert tls_stack.url.startswith("https://127.0.0.1:")
    assert _https(tls_stack, user_pki, "GET", "/api/2.0/preview/scim/v2/Me").json()["userName"] == "admin"
    probe = _https(tls_stack, user_pki, "GET", "/.well-known/databricks-config").json()
    assert probe["oidc_endpoint"] == tls_stack.url + "/oidc"
    with pytest.raises(requests.exceptions.SSLError):   # not trusted without the user's CA
        requests.get(tls_stack.url + "/healthz", timeout=10)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(tls_stack.url.replace("https://", "http://") + "/healthz", timeout=10)


def test_databricks_sdk_over_https(tls_stack, user_pki, monkeypatch):
    from databricks.sdk import WorkspaceClient

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(user_pki["ca"]))
    assert WorkspaceClient(host=tls_stack.url, token=tls_stack.admin_token).current_user.me().user_name == "admin"


def _tls11_client() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def _handshake(address: str, context: ssl.SSLContext) -> str:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw) as tls:
            return tls.version()


def test_the_tls11_client_works_against_a_server_that_allows_it(tls_stack):
    """The control for the next test: this client really speaks TLS 1.1."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.minimum_version = ssl.TLSVersion.TLSv1
    server_context.set_ciphers("DEFAULT:@SECLEVEL=0")
    tls_dir = tls_stack.data_dir / "tls"
    server_context.load_cert_chain(tls_dir / "router.pem", tls_dir / "router.key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept():
        connection, _ = listener.accept()
        try:
            server_context.wrap_socket(connection, server_side=True).close()
        except (ssl.SSLError, OSError):
            connection.close()
    worker = threading.Thread(target=accept)
    worker.start()
    try:
        assert _handshake(f"127.0.0.1:{port}", _tls11_client()) == "TLSv1.1"
    finally:
        worker.join(10)
        listener.close()


def test_tls_below_1_2_is_refused_on_every_port(tls_stack):
    router = "127.0.0.1:" + tls_stack.url.rsplit(":", 1)[1]
    for address in (router, tls_stack.info["grpc_target"], tls_stack.info["control_plane_target"]):
        with pytest.raises(ssl.SSLError):   # a protocol-version alert or a hang-up, never a session
            _handshake(address, _tls11_client())
    # The same ports speak TLS 1.2 (the control plane's only to a Podium certificate).
    tls12 = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls12.check_hostname, tls12.verify_mode = False, ssl.CERT_NONE
    tls12.minimum_version = tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert _handshake(router, tls12) == _handshake(tls_stack.info["grpc_target"], tls12) == "TLSv1.2"
    tls_dir = tls_stack.data_dir / "tls"
    tls12.load_cert_chain(tls_dir / "internal.pem", tls_dir / "internal.key")
    assert _handshake(tls_stack.info["control_plane_target"], tls12) == "TLSv1.2"


def _podium_files(stack, name: str) -> tuple[bytes, bytes, bytes]:
    tls_dir = stack.data_dir / "tls"
    return ((tls_dir / "ca.pem").read_bytes(), (tls_dir / f"{name}.key").read_bytes(),
            (tls_dir / f"{name}.pem").read_bytes())


def _list_deployments(stack, credentials: grpc.ChannelCredentials) -> grpc.StatusCode:
    with grpc.secure_channel(stack.info["control_plane_target"], credentials) as channel:
        try:
            control_plane_pb2_grpc.ControlPlaneStub(channel).ListDeployments(
                control_plane_pb2.ListDeploymentsRequest(), timeout=5)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def test_internal_grpc_needs_a_podium_certificate(tls_stack, user_pki):
    ca, key, cert = _podium_files(tls_stack, "internal")
    # No client certificate, or one from another CA: the handshake fails, nothing is served.
    assert _list_deployments(tls_stack, grpc.ssl_channel_credentials(root_certificates=ca)) == \
        grpc.StatusCode.UNAVAILABLE
    stranger_key, stranger_cert = user_pki["client"]
    assert _list_deployments(tls_stack, grpc.ssl_channel_credentials(ca, stranger_key, stranger_cert)) == \
        grpc.StatusCode.UNAVAILABLE
    # Podium's certificate gets through TLS; the call still needs Podium's service credential.
    assert _list_deployments(tls_stack, grpc.ssl_channel_credentials(ca, key, cert)) == \
        grpc.StatusCode.UNAUTHENTICATED
    with grpc.insecure_channel(tls_stack.info["control_plane_target"]) as channel:   # plaintext: refused
        with pytest.raises(grpc.RpcError) as plaintext:
            control_plane_pb2_grpc.ControlPlaneStub(channel).ListDeployments(
                control_plane_pb2.ListDeploymentsRequest(), timeout=5)
        assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_query_crosses_every_tls_hop(tls_stack, user_pki):
    model = register_sklearn_classifier(tls_stack.info, "main.default.tls_iris", seed=5)
    body = {"name": "tls-iris", "config": {"served_entities": [{"entity_name": model.name,
                                                                 "entity_version": model.version}]}}
    assert _https(tls_stack, user_pki, "POST", "/api/2.0/serving-endpoints", json=body).status_code == 200
    endpoint = tls_stack.wait_endpoint("tls-iris")   # the scaler reported over mutual TLS
    assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}, endpoint
    records = {"dataframe_records": model.frame.to_dict(orient="records")}
    reply = _https(tls_stack, user_pki, "POST", "/serving-endpoints/tls-iris/invocations", json=records)
    assert reply.status_code == 200, reply.text   # router → worker over mutual TLS
    assert reply.json()["predictions"] == model.model.predict(model.frame).tolist()

    credentials = grpc.ssl_channel_credentials(root_certificates=user_pki["ca"].read_bytes())
    with grpc.secure_channel(tls_stack.info["grpc_target"], credentials) as channel:
        answer = query_pb2_grpc.QueryStub(channel).Invoke(
            query_pb2.InvokeRequest(endpoint="tls-iris", body=json.dumps(records).encode()), timeout=30,
            metadata=tls_stack.grpc_metadata())
    assert json.loads(answer.body)["predictions"] == model.model.predict(model.frame).tolist()

    # A worker accepts no TLS client but Podium's router: not even one holding the CA, without its certificate.
    log = (tls_stack.data_dir / "logs" / "scaler.log").read_text()
    worker = log.rsplit("is ready at ", 1)[1].split('"')[0]
    ca, key, cert = _podium_files(tls_stack, "worker")   # a worker's certificate is for serving only
    for credentials in (grpc.ssl_channel_credentials(ca), grpc.ssl_channel_credentials(ca, key, cert)):
        with grpc.secure_channel(worker, credentials) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                worker_pb2_grpc.WorkerStub(channel).Metadata(worker_pb2.MetadataRequest(), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
