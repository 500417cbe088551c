"""A root CA and a signing certificate for trying packages out (``edgefleet keys init``).

Keys are ECDSA P-256. The root is a self-signed CA certificate (basic constraints CA, critical;
key usage keyCertSign and cRLSign); the signing certificate is issued by it for code signing
(key usage digitalSignature; extended key usage codeSigning). Both pass the checks of
:meth:`edgefleet.package.signing.Signature.check_chain`. Production fleets should issue signing
certificates from their own PKI and keep the root key offline.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgefleet.errors import AlreadyExists

#: Validity of the certificates ``init_keys`` writes, in days.
ROOT_VALID_DAYS = 3650
SIGNING_VALID_DAYS = 825

#: Certificates start this long before "now", so devices with a slightly late clock accept them.
CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class KeyFiles:
    """Where ``init_keys`` wrote its files.

    Attributes:
        root_certs_dir: folder holding only the root certificate; point the agent's
            ``sagemaker_edge_core_root_certs_path`` (and ``package verify --root-certs``) here.
        root_cert: the root CA certificate (PEM), inside ``root_certs_dir``.
        root_key: the root CA's private key (PEM, mode 0600); issues more signing certificates.
        signing_cert: the signing certificate (PEM), for ``package build --cert``.
        signing_key: its private key (PEM, mode 0600), for ``package build --key``.
    """

    root_certs_dir: Path
    root_cert: Path
    root_key: Path
    signing_cert: Path
    signing_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgefleet"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_root_ca(
        *, common_name: str, not_before: dt.datetime, not_after: dt.datetime,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Make a new P-256 key and a self-signed root CA certificate for it.

    Args:
        common_name: the certificate's CN (the organization is ``edgefleet``).
        not_before: start of validity (timezone-aware).
        not_after: end of validity (timezone-aware).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue_signing_certificate(
        issuer_key: ec.EllipticCurvePrivateKey, issuer_cert: x509.Certificate, *,
        common_name: str, not_before: dt.datetime, not_after: dt.datetime,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Make a new P-256 key and a code-signing certificate for it, issued by a CA.

    Args:
        issuer_key: the CA's private key.
        issuer_cert: the CA's certificate.
        common_name: the signing certificate's CN; package inspection shows it as the signer.
        not_before: start of validity (timezone-aware).
        not_after: end of validity (timezone-aware).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    return key, cert


def init_keys(directory: Path, *, force: bool = False) -> KeyFiles:
    """Write a new root CA and a signing certificate issued by it into ``directory``.

    Layout: ``root-certs/root-ca.pem``, ``root-ca.key``, ``signing.pem``, ``signing.key``.
    Private keys are unencrypted PEM (PKCS #8) with mode 0600; certificates are PEM with mode
    0644. The root is valid for ``ROOT_VALID_DAYS``, the signing certificate for
    ``SIGNING_VALID_DAYS``.

    Args:
        directory: created if missing (with parents).
        force: replace existing files instead of refusing.

    Raises:
        AlreadyExists: one of the files exists and ``force`` is false.
        OSError: the directory cannot be written.
    """
    files = KeyFiles(
        root_certs_dir=directory / "root-certs",
        root_cert=directory / "root-certs" / "root-ca.pem",
        root_key=directory / "root-ca.key",
        signing_cert=directory / "signing.pem",
        signing_key=directory / "signing.key",
    )
    existing = [path for path in (files.root_cert, files.root_key, files.signing_cert,
                                  files.signing_key) if path.exists()]
    if existing and not force:
        raise AlreadyExists(
            f"{', '.join(map(str, existing))} already exist; pick another folder, or pass "
            f"--force to replace them (packages signed with the old key then stop verifying "
            f"on devices that trust only the new root)")
    now = dt.datetime.now(dt.UTC)
    root_key, root_cert = create_root_ca(
        common_name="edgefleet root CA", not_before=now - CLOCK_SKEW,
        not_after=now + dt.timedelta(days=ROOT_VALID_DAYS))
    signing_key, signing_cert = issue_signing_certificate(
        root_key, root_cert, common_name="edgefleet package signer",
        not_before=now - CLOCK_SKEW, not_after=now + dt.timedelta(days=SIGNING_VALID_DAYS))
    files.root_certs_dir.mkdir(parents=True, exist_ok=True)
    _write(files.root_key, _key_pem(root_key), 0o600)
    _write(files.signing_key, _key_pem(signing_key), 0o600)
    _write(files.root_cert, root_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(files.signing_cert, signing_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return files


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, mode: int) -> None:
    # Created with its final mode (never briefly world-readable), replaced if it exists.
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.chmod(path, mode)  # the umask may have cleared bits of ``mode``
