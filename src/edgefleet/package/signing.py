"""Detached package signatures and the certificate checks behind them.

The signature file ``sagemaker_edge_signature`` is JSON with the algorithm, the base64 signature
of the manifest's exact bytes and the signer's PEM certificate chain (docs/package-format.md).
Two algorithms are accepted: ECDSA on P-256 with SHA-256 (what edgefleet writes; the signature is
DER-encoded, as X.509 and ``cryptography`` use it) and Ed25519 (RFC 8032).

The chain is checked with ``cryptography``'s path validation against the PEM certificates of a
root folder (the agent's ``sagemaker_edge_core_root_certs_path``): validity dates, CA basic
constraints and key usage follow its Web PKI profile, with two changes for code signing: the
signing certificate needs no subject alternative name, and when it lists extended key usages,
``codeSigning`` must be one of them.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from edgefleet import jsondoc
from edgefleet.errors import InvalidArgument, NotFound, TamperedPackage, UntrustedSigner
from edgefleet.package.manifest import SIGNATURE_NAME

#: Private keys that can sign packages.
SigningKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

ECDSA_P256_SHA256 = "ECDSA-P256-SHA256"
ED25519 = "Ed25519"

#: File name suffixes of the certificates read from a root folder.
ROOT_CERT_SUFFIXES = (".pem", ".crt")


@dataclass(frozen=True, slots=True)
class Signature:
    """The parsed ``sagemaker_edge_signature`` file.

    Attributes:
        algorithm: ``ECDSA-P256-SHA256`` or ``Ed25519``.
        value: the raw signature bytes (DER for ECDSA, 64 bytes for Ed25519).
        chain: the signing certificate first, then any intermediate CA certificates.
    """

    algorithm: str
    value: bytes
    chain: tuple[x509.Certificate, ...]

    @property
    def signer(self) -> str:
        """The signing certificate's subject as an RFC 4514 string, e.g. ``CN=ci,O=acme``."""
        return self.chain[0].subject.rfc4514_string()

    def to_json(self) -> bytes:
        """The signature file's bytes: UTF-8 JSON with sorted keys and a final newline."""
        pem = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in self.chain)
        document = {"algorithm": self.algorithm,
                    "signature": base64.b64encode(self.value).decode(),
                    "certificate_chain": pem.decode()}
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> Signature:
        """Parse the signature file's bytes.

        Raises:
            TamperedPackage: not the JSON object described in docs/package-format.md, an unknown
                algorithm, bad base64, or no parsable PEM certificate.
        """
        try:
            document = jsondoc.loads(data)
            algorithm = document["algorithm"]
            value = base64.b64decode(document["signature"], validate=True)
            chain = tuple(x509.load_pem_x509_certificates(
                document["certificate_chain"].encode()))
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as error:
            raise TamperedPackage(
                f"{SIGNATURE_NAME} is damaged ({type(error).__name__}: {error}); get a fresh "
                f"copy of the package or sign it again") from None
        if algorithm not in (ECDSA_P256_SHA256, ED25519):
            raise TamperedPackage(
                f"{SIGNATURE_NAME} names algorithm {algorithm!r}; edgefleet accepts "
                f"{ECDSA_P256_SHA256} and {ED25519}")
        return cls(algorithm=algorithm, value=value, chain=chain)

    def check(self, manifest: bytes) -> None:
        """Check that this signature was made over ``manifest`` by the signing certificate's key.

        This proves integrity only; :meth:`check_chain` says whether the signer is trusted.

        Raises:
            TamperedPackage: the signature does not match (the manifest was edited, or the
                signature file replaced), or the algorithm does not fit the certificate's key.
        """
        key = self.chain[0].public_key()
        try:
            if self.algorithm == ED25519 and isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(self.value, manifest)
            elif (self.algorithm == ECDSA_P256_SHA256 and isinstance(key, ec.EllipticCurvePublicKey)
                  and isinstance(key.curve, ec.SECP256R1)):
                key.verify(self.value, manifest, ec.ECDSA(hashes.SHA256()))
            else:
                raise TamperedPackage(
                    f"{SIGNATURE_NAME} says {self.algorithm} but the signing certificate "
                    f"{self.signer!r} holds a different kind of key; sign the package again")
        except InvalidSignature:
            raise TamperedPackage(
                f"the signature does not match the manifest: the manifest was edited or the "
                f"signature replaced after signing (signer claims to be {self.signer!r}); get a "
                f"fresh copy of the package") from None

    def check_chain(self, root_certs_path: Path) -> str:
        """Check that the signing certificate chains to a root certificate, valid now.

        Args:
            root_certs_path: folder of PEM root certificates (``*.pem``, ``*.crt``).

        Returns:
            The signer's subject (:attr:`signer`).

        Raises:
            UntrustedSigner: no path from the signing certificate to a root of the folder
                (unknown CA, expired or not yet valid, not allowed to sign code), or the folder
                holds no usable root certificate.
        """
        roots = load_root_certificates(root_certs_path)
        verifier = (PolicyBuilder().store(Store(roots))
                    .extension_policies(ee_policy=_CODE_SIGNING_EE_POLICY,
                                        ca_policy=ExtensionPolicy.webpki_defaults_ca())
                    .build_client_verifier())
        leaf = self.chain[0]
        try:
            verifier.verify(leaf, list(self.chain[1:]))
        except (VerificationError, x509.UnsupportedGeneralNameType) as error:
            raise UntrustedSigner(
                f"the package's signing certificate {self.signer!r} (issued by "
                f"{leaf.issuer.rfc4514_string()!r}, valid {leaf.not_valid_before_utc:%Y-%m-%d} "
                f"to {leaf.not_valid_after_utc:%Y-%m-%d}) is not trusted by the root "
                f"certificates in {root_certs_path}: {error}. Sign the package with a current "
                f"certificate issued under one of those roots, or add its root CA there") from None
        return self.signer


def _require_code_signing(
        _policy: Policy, cert: x509.Certificate, usage: x509.ExtendedKeyUsage | None) -> None:
    if usage is not None and not {ExtendedKeyUsageOID.CODE_SIGNING,
                                  ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE} & set(usage):
        raise ValueError(
            f"certificate {cert.subject.rfc4514_string()!r} is not allowed to sign code "
            f"(its extended key usage lacks codeSigning)")


_CODE_SIGNING_EE_POLICY = (
    ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _require_code_signing))


def sign_manifest(
        manifest: bytes, key: SigningKey, chain: tuple[x509.Certificate, ...]) -> Signature:
    """Sign a manifest's exact bytes.

    Args:
        manifest: the bytes of ``sagemaker_edge_manifest``.
        key: an ECDSA P-256 or Ed25519 private key.
        chain: the certificate of ``key``, then any intermediate CA certificates.

    Raises:
        InvalidArgument: an ECDSA key on a curve other than P-256.
    """
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return Signature(ED25519, key.sign(manifest), chain)
    if not isinstance(key.curve, ec.SECP256R1):
        raise InvalidArgument(
            f"signing keys on curve {key.curve.name} are not supported; use P-256 (secp256r1) "
            f"or Ed25519, e.g. from `edgefleet keys init`")
    return Signature(ECDSA_P256_SHA256, key.sign(manifest, ec.ECDSA(hashes.SHA256())), chain)


def load_signing_identity(
        key_path: Path, cert_path: Path) -> tuple[SigningKey, tuple[x509.Certificate, ...]]:
    """Read a signing key and its certificate chain from PEM files.

    Args:
        key_path: unencrypted PEM private key (PKCS #8 or SEC1), ECDSA P-256 or Ed25519.
        cert_path: PEM certificates: the key's certificate first, then intermediates if any.

    Raises:
        NotFound: a file does not exist.
        InvalidArgument: a file is not what is expected (not PEM, encrypted key, another kind
            of key, certificate of a different key).
    """
    for path in (key_path, cert_path):
        if not path.is_file():
            raise NotFound(f"{path} does not exist; create a signing key and certificate with "
                           f"`edgefleet keys init`")
    return parse_signing_identity(key_path.read_bytes(), cert_path.read_bytes(),
                                  key_source=str(key_path), cert_source=str(cert_path))


def parse_signing_identity(
        key_pem: bytes, cert_pem: bytes, *, key_source: str = "the signing key",
        cert_source: str = "the certificate") -> tuple[SigningKey, tuple[x509.Certificate, ...]]:
    """Parse a signing key and its certificate chain held in memory (PEM bytes).

    Args:
        key_pem: unencrypted PEM private key (PKCS #8 or SEC1), ECDSA P-256 or Ed25519.
        cert_pem: PEM certificates: the key's certificate first, then intermediates if any.
        key_source, cert_source: where the bytes came from, for error messages.

    Raises:
        InvalidArgument: not PEM, an encrypted key, another kind of key, or a certificate of a
            different key.
    """
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as error:
        raise InvalidArgument(
            f"{key_source} is not an unencrypted PEM private key ({error})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise InvalidArgument(
            f"{key_source} holds a {type(key).__name__}; package signing keys are ECDSA P-256 "
            f"or Ed25519")
    try:
        chain = tuple(x509.load_pem_x509_certificates(cert_pem))
    except ValueError as error:
        raise InvalidArgument(f"{cert_source} is not a PEM certificate ({error})") from None
    if chain[0].public_key() != key.public_key():
        raise InvalidArgument(
            f"the first certificate in {cert_source} ({chain[0].subject.rfc4514_string()!r}) "
            f"does not belong to the key ({key_source}); pass the certificate issued for it")
    return key, chain


def load_root_certificates(root_certs_path: Path) -> list[x509.Certificate]:
    """Read every ``*.pem`` and ``*.crt`` file of a folder (each may hold many certificates).

    Raises:
        UntrustedSigner: the folder does not exist, a file is not PEM, or there is no
            certificate at all; the message says which config key names the folder.
    """
    if not root_certs_path.is_dir():
        raise UntrustedSigner(
            f"root certificates folder {root_certs_path} does not exist; point "
            f"sagemaker_edge_core_root_certs_path (or --root-certs) at a folder of PEM root "
            f"certificates")
    roots: list[x509.Certificate] = []
    for path in sorted(root_certs_path.iterdir()):
        if path.suffix in ROOT_CERT_SUFFIXES and path.is_file():
            try:
                roots.extend(x509.load_pem_x509_certificates(path.read_bytes()))
            except ValueError as error:
                raise UntrustedSigner(
                    f"root certificate file {path} is not PEM ({error}); fix or remove it"
                ) from None
    if not roots:
        raise UntrustedSigner(
            f"no root certificates (*.pem, *.crt) in {root_certs_path}; copy the PEM root "
            f"certificate that signs your packages there")
    return roots
