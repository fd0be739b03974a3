"""A small certificate authority for vehicle identities (mutual TLS to the broker).

Every vehicle gets its own client certificate whose common name is its vehicle id; the broker
(mosquitto with ``use_identity_as_username``) takes that name as the MQTT user, and the ACL
that :mod:`pipeline.broker.acl` writes lets each user publish only under its own topics. A
certificate expires (``--days``) and can be revoked (a CRL the broker checks).

The directory layout is plain files, so operators can inspect them with ``openssl``::

    ca.pem ca.key            the authority (keep ca.key offline in production)
    crl.pem                  revoked serial numbers, signed by the CA
    revoked.txt              one "serial name" line per revocation (source of crl.pem)
    <name>.pem <name>.key    one pair per vehicle, backend client or broker server

``ca.key`` can be encrypted with a password (``FLEETCARE_PIPELINE__CA_KEY_PASSWORD`` or
``..._FILE`` for ``fleetcare pki``): a copied key file is then useless without it. An issued
key can be encrypted too, for a gateway that keeps it on shared storage (the agent's
``tls_key_password``). Passwords are ``SecretStr`` and revealed only to ``cryptography``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr

from pipeline.errors import TerminalPipelineError

CA_NAME = "fleetcare vehicle CA"


class PkiError(TerminalPipelineError):
    """The PKI directory is missing, incomplete, or asked to do something impossible."""


@dataclass(frozen=True, slots=True)
class Issued:
    """Where a newly issued certificate and its key were written."""

    name: str
    serial: int
    cert: Path
    key: Path
    not_after: dt.datetime


def init_ca(directory: Path, *, days: int = 3650, password: SecretStr | None = None) -> Path:
    """Create the authority in ``directory`` (refuses to overwrite an existing one).

    ``password`` encrypts ``ca.key``; every later ``issue``/``revoke`` must then give it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "ca.key").exists():
        raise PkiError(f"{directory} already holds a CA; refusing to overwrite ca.key")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    now = _now()
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_key(directory / "ca.key", key, password)
    (directory / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "revoked.txt").touch()
    write_crl(directory, ca_password=password)
    return directory / "ca.pem"


def issue(directory: Path, name: str, *, days: int = 365, server_hosts: tuple[str, ...] = (),
          valid_from: dt.datetime | None = None, ca_password: SecretStr | None = None,
          key_password: SecretStr | None = None) -> Issued:
    """Issue a client certificate for ``name`` (or a server one when ``server_hosts``).

    ``ca_password`` opens an encrypted ``ca.key``; ``key_password`` encrypts the issued key.
    ``valid_from`` exists so tests can mint an already-expired certificate.
    """
    ca_cert, ca_key = _load_ca(directory, ca_password)
    key = ec.generate_private_key(ec.SECP256R1())
    start = valid_from or _now() - dt.timedelta(minutes=5)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_hosts else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server_hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [_san(host) for host in server_hosts]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    paths = directory / f"{name}.pem", directory / f"{name}.key"
    _write_key(paths[1], key, key_password)
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Issued(name, cert.serial_number, paths[0], paths[1], cert.not_valid_after_utc)


def revoke(directory: Path, name: str, *, ca_password: SecretStr | None = None) -> int:
    """Revoke ``name``'s current certificate and rewrite the CRL; returns its serial."""
    path = directory / f"{name}.pem"
    if not path.exists():
        raise PkiError(f"no certificate for {name!r} in {directory}")
    serial = x509.load_pem_x509_certificate(path.read_bytes()).serial_number
    with open(directory / "revoked.txt", "a", encoding="utf-8") as handle:
        handle.write(f"{serial} {name}\n")
    write_crl(directory, ca_password=ca_password)
    return serial


def write_crl(directory: Path, *, days: int = 30, ca_password: SecretStr | None = None) -> Path:
    """(Re)write ``crl.pem`` from ``revoked.txt``, signed by the CA."""
    ca_cert, ca_key = _load_ca(directory, ca_password)
    now = _now()
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now - dt.timedelta(minutes=5))
               .next_update(now + dt.timedelta(days=days)))
    for line in (directory / "revoked.txt").read_text(encoding="utf-8").splitlines():
        if line.strip():
            serial = int(line.split()[0])
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(now - dt.timedelta(minutes=5)).build())
    crl = builder.sign(ca_key, hashes.SHA256())
    path = directory / "crl.pem"
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return path


def _load_ca(directory: Path, password: SecretStr | None = None,
             ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
        pem = (directory / "ca.key").read_bytes()
    except FileNotFoundError as exc:
        raise PkiError(f"{directory} holds no CA: run `fleetcare pki init {directory}`") from exc
    secret = password.get_secret_value().encode() if password else None
    try:
        key = serialization.load_pem_private_key(pem, secret)
    except TypeError:  # encrypted without a password given, or a password for a plain key
        raise PkiError(
            f"{directory}/ca.key is encrypted: set FLEETCARE_PIPELINE__CA_KEY_PASSWORD or "
            "..._FILE" if secret is None else
            f"{directory}/ca.key is not encrypted, yet a CA key password was given; unset it"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise PkiError(f"cannot open {directory}/ca.key: wrong CA key password, or not a "
                       "PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{directory}/ca.key is not an EC key made by fleetcare pki")
    return cert, key


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey,
               password: SecretStr | None = None) -> None:
    """Write a private key readable by its owner only, encrypted when a password is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.get_secret_value().encode())
        if password else serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            encryption)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
