"""Certificates generated per run with `cryptography`: a CA, the sidecar's server certificate
(SPIFFE ID and DNS name of an Istio workload) and client certificates issued on demand."""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

TRUST_DOMAIN = "cluster.local"
SERVER_SPIFFE = "spiffe://cluster.local/ns/payments/sa/checkout"
SERVER_DNS = "checkout.payments.svc.cluster.local"


@dataclass
class Cert:
    cert_path: Path
    key_path: Path
    cn: str
    uri_sans: list[str]
    dns_sans: list[str]
    sha256: str  # lowercase hex of the DER certificate
    subject_rfc4514: str


@dataclass
class Pki:
    directory: Path
    ca_path: Path
    server: Cert
    clients: dict[str, Cert] = field(default_factory=dict)
    _ca_key: Any = None
    _ca_cert: Any = None

    def issue_client(self, name: str, cn: str, uri_sans: Iterable[str], dns_sans: Iterable[str] = ()) -> Cert:
        cert = _issue(
            self.directory,
            name,
            self._ca_key,
            self._ca_cert,
            cn=cn,
            uri_sans=list(uri_sans),
            dns_sans=list(dns_sans),
        )
        self.clients[name] = cert
        return cert


def _new_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _builder(subject, issuer, public_key, *, ca: bool):
    """A certificate valid from 5 minutes ago for 2 days: a CA that signs certificates, or a
    leaf for TLS servers and clients."""
    from cryptography import x509

    now = _dt.datetime.now(_dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=not ca,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )


def _issue(directory: Path, name: str, ca_key, ca_cert, *, cn: str, uri_sans: list[str], dns_sans: list[str]) -> Cert:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = _new_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshaudit-e2e"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uri_sans]
    sans += [x509.DNSName(d) for d in dns_sans]
    builder = (
        _builder(subject, ca_cert.subject, key.public_key(), ca=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if sans:
        # Istio marks the SAN extension critical because its certificates have an empty subject;
        # ours carry a CN, so it is not.
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path = directory / f"{name}.pem"
    key_path = directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    der = cert.public_bytes(serialization.Encoding.DER)
    return Cert(
        cert_path=cert_path,
        key_path=key_path,
        cn=cn,
        uri_sans=uri_sans,
        dns_sans=dns_sans,
        sha256=hashlib.sha256(der).hexdigest(),
        subject_rfc4514=cert.subject.rfc4514_string(),
    )


def make_pki(directory: Path) -> Pki:
    """A CA (ca.pem) and the sidecar's server certificate (server.pem / server-key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _new_key()
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cluster.local"),
            x509.NameAttribute(NameOID.COMMON_NAME, "meshaudit-e2e root CA"),
        ]
    )
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), ca=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(directory / "ca-key.pem", ca_key)
    server = _issue(
        directory,
        "server",
        ca_key,
        ca_cert,
        cn="checkout.payments",
        uri_sans=[SERVER_SPIFFE],
        dns_sans=[SERVER_DNS],
    )
    return Pki(directory=directory, ca_path=ca_path, server=server, _ca_key=ca_key, _ca_cert=ca_cert)
