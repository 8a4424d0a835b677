"""The platform's certificate in moto's ACM: what the moto apply imports so that the HTTPS listeners
have a certificate that exists and is issued, as AWS requires (an imported certificate is issued
at once)."""

from __future__ import annotations

from harness.certificates import self_signed


def import_certificate(acm, host: str) -> str:
    """Import a fresh self-signed certificate for ``host`` through ``acm`` (a boto3 client); its ARN."""
    cert, key = self_signed(host)
    return acm.import_certificate(Certificate=cert, PrivateKey=key)["CertificateArn"]
