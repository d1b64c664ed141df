"""Loading keys, certificates and CRLs from the files people actually have.

- private keys: PEM or DER; PKCS#8 (RFC 5958), encrypted PKCS#8 (RFC 5958 §3, PBES2 per RFC 8018), PKCS#1 RSA
  (RFC 8017 Appendix A.1.2) and SEC 1 EC (RFC 5915) keys, including OpenSSL's traditional encrypted PEM;
- certificates: PEM (one or a bundle of several, RFC 7468 §5) or DER (RFC 5280 §4.1);
- PKCS#12 files (RFC 7292) with a password: key, certificate and chain;
- CRLs: PEM (one or several, RFC 7468 §6) or DER (RFC 5280 §5.1).

Every function takes the raw bytes and a ``source`` (a file name) used in error messages, and raises
:class:`LoadError` — a ``ValueError`` whose message starts with that source — rather than a parser's exception.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

__all__ = [
    "KeyAndCertificates",
    "LoadError",
    "PrivateKey",
    "load_certificate",
    "load_certificate_files",
    "load_certificates",
    "load_crl_files",
    "load_crls",
    "load_pkcs12",
    "load_private_key",
    "read_file",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
_KeyLoader = Callable[..., object]

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)
_CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}
_KEY_LABELS = {b"PRIVATE KEY", b"ENCRYPTED PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY"}


class LoadError(ValueError):
    """A key, certificate, PKCS#12 file or CRL could not be loaded; the message names the source and the reason."""


@dataclass(frozen=True)
class KeyAndCertificates:
    """What a PKCS#12 file holds (RFC 7292): a private key, its certificate and the rest of the chain."""

    key: PrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = field(default_factory=tuple)


def read_file(path: str | Path) -> bytes:
    """Read a whole file; a missing or unreadable file is a :class:`LoadError` naming it."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise LoadError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise LoadError(f"{path}: is a directory") from exc
    except OSError as exc:
        raise LoadError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _pem_blocks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(label, whole block) of every PEM block in ``data`` (RFC 7468 §2), in order."""
    return [(match.group(1), match.group(0)) for match in _PEM_BLOCK.finditer(data)]


def _password_bytes(password: bytes | str | None) -> bytes | None:
    if isinstance(password, str):
        return password.encode("utf-8")
    return password


def _check_key_type(key: object, source: str) -> PrivateKey:
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise LoadError(f"{source}: {type(key).__name__} keys are not supported (RSA or EC only)")
    return key


def load_private_key(data: bytes, password: bytes | str | None = None, *, source: str = "key") -> PrivateKey:
    """Load an RSA or EC private key from PEM or DER (PKCS#8, encrypted PKCS#8, PKCS#1, SEC 1).

    ``password`` decrypts an encrypted key; it is an error to give none for an encrypted key.
    """
    secret = _password_bytes(password)
    blocks = [block for label, block in _pem_blocks(data) if label in _KEY_LABELS]
    encoded = blocks[0] if blocks else data
    loader = serialization.load_pem_private_key if blocks else serialization.load_der_private_key
    if not blocks and data.lstrip().startswith(b"-----BEGIN"):
        raise LoadError(f"{source}: no PRIVATE KEY block in this PEM file")
    try:
        key = loader(encoded, password=secret)
    except TypeError as exc:
        # cryptography: "Password was not given but private key is encrypted" / "… given but … not encrypted".
        if secret is None:
            raise LoadError(f"{source}: the private key is encrypted; a password is needed") from exc
        key = _load_plain(loader, encoded, source)
    except ValueError as exc:
        if secret is not None and _is_encrypted(loader, encoded):
            raise LoadError(f"{source}: wrong password, or the encrypted key is corrupt") from exc
        raise LoadError(f"{source}: not a PEM or DER private key") from exc
    except Exception as exc:  # UnsupportedAlgorithm and friends
        raise LoadError(f"{source}: unsupported private key ({exc})") from exc
    return _check_key_type(key, source)


def _load_plain(loader: _KeyLoader, encoded: bytes, source: str) -> object:
    try:
        return loader(encoded, password=None)
    except (TypeError, ValueError) as exc:
        raise LoadError(f"{source}: not a PEM or DER private key") from exc


def _is_encrypted(loader: _KeyLoader, encoded: bytes) -> bool:
    """True when ``encoded`` is an encrypted key (the loader then insists on a password)."""
    try:
        loader(encoded, password=None)
    except TypeError:
        return True
    except Exception:
        return False
    return False


def load_certificates(data: bytes, *, source: str = "certificate") -> list[x509.Certificate]:
    """Every certificate of a PEM bundle, or the one certificate of a DER file (RFC 7468 §5, RFC 5280 §4.1)."""
    blocks = _pem_blocks(data)
    if blocks:
        certs: list[x509.Certificate] = []
        for label, block in blocks:
            if label not in _CERT_LABELS:
                continue
            if label == b"TRUSTED CERTIFICATE":
                raise LoadError(f"{source}: OpenSSL 'TRUSTED CERTIFICATE' blocks are not supported; use CERTIFICATE")
            try:
                certs.append(x509.load_pem_x509_certificate(block))
            except ValueError as exc:
                raise LoadError(f"{source}: certificate #{len(certs) + 1} is corrupt ({exc})") from exc
        if not certs:
            raise LoadError(f"{source}: no CERTIFICATE block in this PEM file")
        return certs
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise LoadError(f"{source}: not a PEM or DER certificate") from exc


def load_certificate(data: bytes, *, source: str = "certificate") -> x509.Certificate:
    """Exactly one certificate, PEM or DER."""
    certs = load_certificates(data, source=source)
    if len(certs) != 1:
        raise LoadError(f"{source}: holds {len(certs)} certificates where one is expected")
    return certs[0]


def load_crls(data: bytes, *, source: str = "CRL") -> list[x509.CertificateRevocationList]:
    """Every CRL of a PEM file (RFC 7468 §6), or the one CRL of a DER file (RFC 5280 §5.1)."""
    blocks = _pem_blocks(data)
    if blocks:
        crls = []
        for label, block in blocks:
            if label != b"X509 CRL":
                continue
            try:
                crls.append(x509.load_pem_x509_crl(block))
            except ValueError as exc:
                raise LoadError(f"{source}: CRL #{len(crls) + 1} is corrupt ({exc})") from exc
        if not crls:
            raise LoadError(f"{source}: no X509 CRL block in this PEM file")
        return crls
    try:
        return [x509.load_der_x509_crl(data)]
    except ValueError as exc:
        raise LoadError(f"{source}: not a PEM or DER CRL") from exc


def load_pkcs12(data: bytes, password: bytes | str | None, *, source: str = "PKCS#12") -> KeyAndCertificates:
    """The key, certificate and other certificates of a PKCS#12 file (RFC 7292)."""
    try:
        key, cert, others = pkcs12.load_key_and_certificates(data, _password_bytes(password))
    except ValueError as exc:
        if password is None:
            raise LoadError(f"{source}: not a PKCS#12 file, or it needs a password") from exc
        raise LoadError(f"{source}: not a PKCS#12 file, or the password is wrong") from exc
    except Exception as exc:  # UnsupportedAlgorithm (e.g. RC2-40 bags without the legacy provider)
        raise LoadError(f"{source}: unsupported PKCS#12 file ({exc})") from exc
    if key is None:
        raise LoadError(f"{source}: holds no private key")
    if cert is None:
        raise LoadError(f"{source}: holds no certificate for its private key")
    return KeyAndCertificates(_check_key_type(key, source), cert, tuple(others))


def load_certificate_files(paths: Sequence[str | Path]) -> list[x509.Certificate]:
    """Every certificate of every file (bundles allowed), in order."""
    certs: list[x509.Certificate] = []
    for path in paths:
        certs.extend(load_certificates(read_file(path), source=str(path)))
    return certs


def load_crl_files(paths: Sequence[str | Path]) -> list[x509.CertificateRevocationList]:
    """Every CRL of every file, in order."""
    crls: list[x509.CertificateRevocationList] = []
    for path in paths:
        crls.extend(load_crls(read_file(path), source=str(path)))
    return crls
