"""Certificates made on the spot with ``cryptography``: a self-signed one for the platform's host
name (what the moto apply imports into ACM), and a test certificate authority that issues the
stand-in Postgres its server certificate, so that the services connect with ``verify-full``
against a CA bundle exactly as they do against Amazon RDS's."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Key = ec.EllipticCurvePrivateKey


def _key_pem(key: Key) -> bytes:
    pkcs8, plain = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, pkcs8, plain)


def _alt_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _certificate(
    subject: str, key: Key, issuer: x509.Name | None, signer: Key, names: tuple[str, ...], ca: bool, days: int
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([_alt_name(n) for n in names]), critical=False)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    return builder.sign(signer, hashes.SHA256())


def self_signed(host: str, days: int = 2) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for ``host``, valid from a minute ago for ``days``."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(host, key, None, key, (host,), ca=False, days=days)
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


@dataclass(frozen=True, eq=False)
class Authority:
    """A certificate authority of one run: its certificate is the CA bundle the services verify
    against; ``issue`` makes a server certificate for the host names and addresses a client uses."""

    name: str = field(default_factory=lambda: f"harness test CA {secrets.token_hex(4)}")
    days: int = 365  # a stack kept up with `harness up` must not stop reconnecting after a weekend
    _key: Key = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()), repr=False)
    _issued: dict[tuple[str, ...], tuple[bytes, bytes]] = field(default_factory=dict, repr=False)

    @cached_property
    def certificate(self) -> x509.Certificate:
        return _certificate(self.name, self._key, None, self._key, (), ca=True, days=self.days)

    @property
    def pem(self) -> bytes:
        """The CA certificate: what a client's ``sslrootcert`` names."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def write(self, directory: Path) -> str:
        """The CA certificate as ``directory/ca.pem``, readable by every user (a container's own
        user reads it through a bind mount): what a client's ``sslrootcert`` names."""
        path = directory / "ca.pem"
        path.write_bytes(self.pem)
        path.chmod(0o644)
        return str(path)

    def issue(self, names: tuple[str, ...]) -> tuple[bytes, bytes]:
        """(certificate PEM, private key PEM) of a server known by every one of ``names`` (host
        names or IP addresses: ``verify-full`` checks the one the client connected to). The same
        names get the same certificate: a fault proxy in front of Postgres presents the server's
        own, or SCRAM's channel binding (which hashes the certificate the client saw into the
        password exchange, libpq's default over TLS) would refuse every login through it."""
        names = tuple(dict.fromkeys(names))
        if not names:
            raise ValueError("a server certificate needs at least one host name or address")
        if names not in self._issued:
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _certificate(names[0], key, self.certificate.subject, self._key, names, ca=False, days=self.days)
            self._issued[names] = (cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))
        return self._issued[names]
