"""TLS between the processes of one tree over TCP: one certificate authority per tree, a
certificate per process, mutual verification.

The root system makes the tree's CA (an EC P-256 key and a self-signed
certificate, valid ``VALID_DAYS``) the first time a child needs TLS, and its
own certificate; or it is given one (``ActorSystem(tls=TreeTls.from_ca(...))``).
Each child is handed the CA and a certificate of its own in its boot (its
stdin, or the join file of a child started elsewhere): never on a command
line. Every bridge server asks for a client certificate and every
client checks the server's, both against the tree's CA, so a process holds a
connection only with members of its tree; the one-time secret (or join token)
in the hello still says which child a connection is. A member's certificate is
its tree membership: host names are not checked (children move between
machines and addresses), and the CA key travels with each child so that it can
certify its own children.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from typing import Any

VALID_DAYS = 30

__all__ = ["TreeTls", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class TreeTls:
    """The tree's CA, and this process's certificate and key (PEM)."""

    ca_cert: bytes
    ca_key: bytes
    cert: bytes
    key: bytes

    @classmethod
    def create(cls, name: str) -> TreeTls:
        """A new CA for a tree, and the certificate of its root process ``name``."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"actorstage tree {name}")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False),
                    critical=True)
                .sign(key, hashes.SHA256()))
        authority = cls(cert.public_bytes(serialization.Encoding.PEM),
                        key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()), b"", b"")
        return authority.issue(name)

    @classmethod
    def from_ca(cls, ca_cert: bytes | str, ca_key: bytes | str,
                name: str = "actorstage") -> TreeTls:
        """A tree whose CA is given rather than made: ``ca_cert`` and its unencrypted
        ``ca_key`` in PEM (say, an intermediate CA of your own PKI, kept for this tree),
        and the certificate of its root process ``name``. Pass it as
        ``ActorSystem(tls=...)``. ``InvalidDefinitionError`` when the certificate is not a
        CA's, has expired, or the key is not its key."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        from actorstage.exceptions import InvalidDefinitionError

        cert_pem = ca_cert.encode() if isinstance(ca_cert, str) else bytes(ca_cert)
        key_pem = ca_key.encode() if isinstance(ca_key, str) else bytes(ca_key)
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
            key = serialization.load_pem_private_key(key_pem, None)
        except (ValueError, TypeError) as exc:
            raise InvalidDefinitionError(f"the tree's CA: not a PEM certificate and "
                                         f"unencrypted key ({exc})") from None
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
            is_ca = constraints.value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise InvalidDefinitionError(f"the tree's CA: {cert.subject.rfc4514_string()} is "
                                         "not a CA's certificate (BasicConstraints ca=True)")
        if cert.not_valid_after_utc <= datetime.datetime.now(datetime.UTC):
            raise InvalidDefinitionError(f"the tree's CA: {cert.subject.rfc4514_string()} "
                                         f"expired on {cert.not_valid_after_utc:%Y-%m-%d}")
        public = serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(serialization.Encoding.DER, public) != \
                cert.public_key().public_bytes(serialization.Encoding.DER, public):
            raise InvalidDefinitionError("the tree's CA: the key is not the certificate's key")
        return cls(cert_pem, key_pem, b"", b"").issue(name)

    def issue(self, name: str) -> TreeTls:
        """The same CA, with a new certificate for the member ``name`` (a child)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        ca_key = serialization.load_pem_private_key(self.ca_key, None)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])]))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(min(ca_cert.not_valid_after_utc,
                                     now + datetime.timedelta(days=VALID_DAYS)))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
        return TreeTls(self.ca_cert, self.ca_key, cert.public_bytes(serialization.Encoding.PEM),
                       key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))

    def _context(self, purpose: ssl.Purpose) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH
                                 else ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = False  # (the tree's certificate is the identity; see above)
        context.load_verify_locations(cadata=self.ca_cert.decode())
        folder = tempfile.mkdtemp(prefix="actorstage-tls-")  # mode 0700, gone at once
        try:
            cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
            for path, data in ((cert, self.cert), (key, self.key)):
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "wb") as file:
                    file.write(data)
            context.load_cert_chain(cert, key)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        context.set_alpn_protocols(["h2"])
        return context

    def server_context(self) -> ssl.SSLContext:
        """For a bridge server: its certificate, and clients' certificates required."""
        return self._context(ssl.Purpose.CLIENT_AUTH)

    def client_context(self) -> ssl.SSLContext:
        """For a connection to a bridge server: the server's certificate checked, this
        process's given."""
        return self._context(ssl.Purpose.SERVER_AUTH)

    def to_boot(self) -> dict[str, str]:
        return {"ca_cert": self.ca_cert.decode(), "ca_key": self.ca_key.decode(),
                "cert": self.cert.decode(), "key": self.key.decode()}

    @classmethod
    def from_boot(cls, data: dict[str, Any]) -> TreeTls:
        return cls(*(str(data[name]).encode() for name in ("ca_cert", "ca_key", "cert", "key")))
