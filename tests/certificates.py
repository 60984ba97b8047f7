"""Self-signed CA certificates for tests of TLS (the service's, and a tree's given CA)."""

from __future__ import annotations

import datetime
import ipaddress


def self_signed(common_name: str, *, lifetime: datetime.timedelta, rsa: bool = False,
                path_length: int | None = None, ip: str | None = None) -> tuple[bytes, bytes]:
    """A CA certificate that signs itself, and its unencrypted key, both PEM: an EC P-256 key
    (``rsa``: RSA 2048), valid from five minutes ago for ``lifetime``, naming ``ip`` as a
    subject alternative name if given."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys
    from cryptography.x509.oid import NameOID

    key: rsa_keys.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        rsa_keys.generate_private_key(public_exponent=65537, key_size=2048) if rsa
        else ec.generate_private_key(ec.SECP256R1()))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + lifetime)
               .add_extension(x509.BasicConstraints(ca=True, path_length=path_length),
                              critical=True))
    if ip is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
