"""`podium up --tls`: a local certificate authority and the certificates every hop uses.

Under DIR/tls (mode 0700; private keys 0600):
- ca.pem / ca.key            Podium's CA; every internal peer must present a certificate it signed.
- internal.pem / .key        control plane, router and scaler: server and client (mutual TLS).
- worker.pem / .key          workers: server only, so model code in a worker cannot act as a Podium client.
- router.pem / .key          the router's HTTPS and gRPC query port (unless the user brings a certificate).
Existing files are kept, so clients that trust ca.pem keep working across restarts.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=825)


@dataclass(frozen=True)
class Certificates:
    ca_file: Path
    internal: tuple[Path, Path]   # (certificate, key)
    worker: tuple[Path, Path]
    router: tuple[Path, Path]


def ensure_certificates(directory: Path, router_hosts: list[str], internal_hosts: list[str] = (),
                        worker_hosts: list[str] = ()) -> Certificates:
    """The CA and the three certificates; extra names for services reached by DNS names (containers:
    `control-plane`, `*.workers.podium.internal`, ...) beside the local ones."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    ca_cert_path, ca_key_path = directory / "ca.pem", directory / "ca.key"
    if not (ca_cert_path.exists() and ca_key_path.exists()):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Podium local CA")])
        ca_cert = _builder(name, name, ca_key.public_key()) \
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True) \
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True) \
            .sign(ca_key, hashes.SHA256())
        _write(ca_key_path, ca_cert_path, ca_key, ca_cert)
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    local = ["127.0.0.1", "localhost", "::1"]
    usages = {
        "internal": ([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
                     list(dict.fromkeys(local + list(internal_hosts)))),
        "worker": ([ExtendedKeyUsageOID.SERVER_AUTH], list(dict.fromkeys(local + list(worker_hosts)))),
        "router": ([ExtendedKeyUsageOID.SERVER_AUTH], list(dict.fromkeys(local + router_hosts))),
    }
    paths = {}
    for name, (purposes, hosts) in usages.items():
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
        if not (cert_path.exists() and key_path.exists() and _covers(cert_path, hosts, ca_cert)):
            key = ec.generate_private_key(ec.SECP256R1())
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"podium-{name}")])
            cert = _builder(subject, ca_cert.subject, key.public_key()) \
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True) \
                .add_extension(x509.ExtendedKeyUsage(purposes), critical=False) \
                .add_extension(x509.SubjectAlternativeName([_general_name(h) for h in hosts]), critical=False) \
                .sign(ca_key, hashes.SHA256())
            _write(key_path, cert_path, key, cert)
        paths[name] = (cert_path, key_path)
    return Certificates(ca_cert_path, paths["internal"], paths["worker"], paths["router"])


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key) \
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5)) \
        .not_valid_after(now + VALIDITY)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _covers(cert_path: Path, hosts: list[str], ca_cert: x509.Certificate) -> bool:
    """Whether an existing certificate was signed by this CA, names every host and is not about to expire."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    if cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc) < datetime.timedelta(days=30):
        return False
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    have = {str(n) for n in names.get_values_for_type(x509.IPAddress)} | set(names.get_values_for_type(x509.DNSName))
    return all(str(_general_name(h).value) in have for h in hosts)


def _write(key_path: Path, cert_path: Path, key, cert: x509.Certificate) -> None:
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
