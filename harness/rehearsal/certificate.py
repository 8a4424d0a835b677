"""A self-signed certificate for the platform's host name, made on the spot: what the moto apply
imports into ACM so the HTTPS listeners have a certificate that exists and is issued, as AWS
requires (an imported certificate is issued at once)."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(host: str, days: int = 2) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for ``host``, valid from a minute ago for ``days``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def import_certificate(acm, host: str) -> str:
    """Import a fresh self-signed certificate for ``host`` through ``acm`` (a boto3 client); its ARN."""
    cert, key = self_signed(host)
    return acm.import_certificate(Certificate=cert, PrivateKey=key)["CertificateArn"]
