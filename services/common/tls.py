"""TLS for every hop: mutual TLS between Podium's services, HTTPS (TLS 1.2+) on the router.

`podium up --tls` writes a local CA and certificates (podium/certificates.py) and hands each service the
paths in its settings. An internal gRPC server then accepts only clients presenting a certificate that
Podium's CA signed; gRPC's TLS (BoringSSL) negotiates TLS 1.2 or 1.3 only.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path      # the CA that signs every Podium certificate: peers are checked against it
    cert_file: Path    # this service's certificate chain (PEM)
    key_file: Path     # its private key (PEM, mode 0600)

    @classmethod
    def from_settings(cls, ca_file: Path | None, cert_file: Path | None, key_file: Path | None) -> "TlsFiles | None":
        """None when TLS is off (no files set); all three or an error."""
        given = [f for f in (ca_file, cert_file, key_file) if f]
        if not given:
            return None
        if len(given) != 3:
            raise ValueError("TLS needs a CA file, a certificate file and a key file")
        return cls(Path(ca_file), Path(cert_file), Path(key_file))


def add_server_port(server: grpc.aio.Server, address: str, tls: TlsFiles | None,
                    require_client_auth: bool = True) -> int:
    """Binds `address`: mutual TLS when `tls` is set (client certificates required unless told otherwise)."""
    if tls is None:
        return server.add_insecure_port(address)
    credentials = grpc.ssl_server_credentials(
        [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
        root_certificates=tls.ca_file.read_bytes() if require_client_auth else None,
        require_client_auth=require_client_auth)
    return server.add_secure_port(address, credentials)


def open_channel(target: str, tls: TlsFiles | None, options: list) -> grpc.aio.Channel:
    """A channel to another Podium service, presenting this service's certificate when TLS is on."""
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    credentials = grpc.ssl_channel_credentials(root_certificates=tls.ca_file.read_bytes(),
                                               private_key=tls.key_file.read_bytes(),
                                               certificate_chain=tls.cert_file.read_bytes())
    return grpc.aio.secure_channel(target, credentials, options=options)


def https_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The router's HTTPS: TLS 1.2 at least, whatever the OpenSSL defaults are."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context
