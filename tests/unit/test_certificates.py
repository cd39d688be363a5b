"""The local CA `podium up --tls` creates: chains, names, usages, private keys, and reuse across restarts."""

from __future__ import annotations

import stat

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from podium.certificates import ensure_certificates


def test_certificates_chain_to_the_local_ca_and_are_reused(tmp_path):
    made = ensure_certificates(tmp_path / "tls", ["127.0.0.1", "podium.internal"])
    ca = x509.load_pem_x509_certificate(made.ca_file.read_bytes())
    usages = {}
    for name, (cert_path, key_path) in {"internal": made.internal, "worker": made.worker, "router": made.router}.items():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(ca)
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        usages[name] = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "127.0.0.1" in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    assert usages["internal"] == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert usages["worker"] == usages["router"] == {ExtendedKeyUsageOID.SERVER_AUTH}   # no client use
    router = x509.load_pem_x509_certificate(made.router[0].read_bytes())
    assert "podium.internal" in router.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.DNSName)
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700 and stat.S_IMODE((tmp_path / "tls" / "ca.key").stat().st_mode) == 0o600

    before = {p.name: p.read_bytes() for p in (tmp_path / "tls").iterdir()}
    ensure_certificates(tmp_path / "tls", ["127.0.0.1", "podium.internal"])
    assert {p.name: p.read_bytes() for p in (tmp_path / "tls").iterdir()} == before    # clients keep trusting ca.pem
    ensure_certificates(tmp_path / "tls", ["127.0.0.1", "other.host"])
    assert (tmp_path / "tls" / "ca.pem").read_bytes() == before["ca.pem"]
    assert (tmp_path / "tls" / "router.pem").read_bytes() != before["router.pem"]    # re-issued for the new name
