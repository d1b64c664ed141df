"""S/MIME 4.0 (RFC 8551) for carnet: sign, verify, encrypt, decrypt and open messages, with CMS (RFC 5652).

Implemented, one module per concern:

- :mod:`.canon` — raw-bytes MIME: header/body split (RFC 5322 §2.1), Content-Type parsing (RFC 2045 §5.1,
  RFC 2231), multipart splitting (RFC 2046 §5.1.1, RFC 1847 §2.1) and canonicalisation before signing
  (RFC 8551 §3.1.1–3.1.3);
- :mod:`.sign` — ``SignedData`` (RFC 5652 §5) with signed attributes and SMIMECapabilities (RFC 8551 §2.5.2),
  SHA-256/384/512 (RFC 5754), RSASSA-PKCS1-v1_5, RSASSA-PSS (RFC 4056) and ECDSA (RFC 5753 §7.1.3); detached
  ``multipart/signed`` (RFC 8551 §3.5.3) or opaque ``application/pkcs7-mime`` signed-data (§3.5.2);
- :mod:`.verify` — signature verification (RFC 5652 §5.4–5.6) of both message forms, with
  :mod:`.validation` (RFC 5280 §6 path validation, CRL and OCSP revocation from a local store, RFC 8550 §4.4 key
  usage) and :mod:`.binding` (signer ↔ From, RFC 8550 §3);
- :mod:`.envelope` — encryption and decryption: ``AuthEnvelopedData`` (RFC 5083) with AES-256-GCM (RFC 5084) by
  default, ``EnvelopedData`` (RFC 5652 §6) with AES-256-CBC (RFC 3565) for legacy peers; key transport with
  RSAES-OAEP SHA-256 (RFC 8017 §7.1, RFC 4055 §4.1) or RSAES-PKCS1-v1_5 (legacy), key agreement for EC
  certificates with ephemeral-static ECDH, the X9.63 KDF and AES key wrap (RFC 5753 §3.1, RFC 3394); decryption
  of every AES-128/192/256 GCM/CBC variant, without a padding oracle (RFC 3218 §2.3.2);
- :mod:`.open` — :func:`open_message`, what the gateway calls for every inbound message: peels signature and
  encryption layers in any order (triple wrapping, RFC 2634 §1.1) up to a fixed depth, checks From against the
  outer header, and never raises;
- :mod:`.loading` — keys (PKCS#8 incl. encrypted, PKCS#1, SEC 1; PEM or DER), certificates and bundles, CRLs,
  PKCS#12 (RFC 7292);
- :mod:`.commands` — ``carnet smime sign|verify|encrypt|decrypt|open``;
- :mod:`.result` — :class:`SmimeResult`, the one outcome type of verify, decrypt and open.

Not implemented: compressed-data (RFC 3274) and certs-only layers (reported ``MALFORMED``), header protection by
``message/rfc822`` wrapping (RFC 8551 §3.1), receipts and security labels (RFC 2634), KEK and password
recipients (RFC 5652 §6.2.3–6.2.4), AuthenticatedData (RFC 5652 §9), legacy content ciphers (3DES, RC2).

The names below are imported lazily: importing one module (``carnet.pki.smime.canon``) does not load the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from carnet.pki.smime.binding import BindingError, binds, sender_address
    from carnet.pki.smime.canon import MimeError
    from carnet.pki.smime.credentials import SignerCredential
    from carnet.pki.smime.envelope import (
        Decrypted,
        DecryptError,
        DecryptionKey,
        EncryptError,
        MalformedEnvelopeError,
        decrypt_data,
        decrypt_message,
        encrypt_data,
        encrypt_message,
        is_enveloped,
    )
    from carnet.pki.smime.loading import (
        KeyAndCertificates,
        LoadError,
        load_certificate,
        load_certificates,
        load_crls,
        load_pkcs12,
        load_private_key,
    )
    from carnet.pki.smime.open import open_message
    from carnet.pki.smime.result import SignerInfo, SmimeResult, Status
    from carnet.pki.smime.sign import sign_data, sign_message
    from carnet.pki.smime.validation import ChainResult, ChainValidator, TrustStore
    from carnet.pki.smime.verify import verify_message, verify_signed_data

_EXPORTS = {
    "BindingError": "carnet.pki.smime.binding",
    "binds": "carnet.pki.smime.binding",
    "sender_address": "carnet.pki.smime.binding",
    "MimeError": "carnet.pki.smime.canon",
    "SignerCredential": "carnet.pki.smime.credentials",
    "DecryptError": "carnet.pki.smime.envelope",
    "Decrypted": "carnet.pki.smime.envelope",
    "DecryptionKey": "carnet.pki.smime.envelope",
    "EncryptError": "carnet.pki.smime.envelope",
    "MalformedEnvelopeError": "carnet.pki.smime.envelope",
    "decrypt_data": "carnet.pki.smime.envelope",
    "decrypt_message": "carnet.pki.smime.envelope",
    "encrypt_data": "carnet.pki.smime.envelope",
    "encrypt_message": "carnet.pki.smime.envelope",
    "is_enveloped": "carnet.pki.smime.envelope",
    "KeyAndCertificates": "carnet.pki.smime.loading",
    "LoadError": "carnet.pki.smime.loading",
    "load_certificate": "carnet.pki.smime.loading",
    "load_certificates": "carnet.pki.smime.loading",
    "load_crls": "carnet.pki.smime.loading",
    "load_pkcs12": "carnet.pki.smime.loading",
    "load_private_key": "carnet.pki.smime.loading",
    "open_message": "carnet.pki.smime.open",
    "SignerInfo": "carnet.pki.smime.result",
    "SmimeResult": "carnet.pki.smime.result",
    "Status": "carnet.pki.smime.result",
    "sign_data": "carnet.pki.smime.sign",
    "sign_message": "carnet.pki.smime.sign",
    "ChainResult": "carnet.pki.smime.validation",
    "ChainValidator": "carnet.pki.smime.validation",
    "TrustStore": "carnet.pki.smime.validation",
    "verify_message": "carnet.pki.smime.verify",
    "verify_signed_data": "carnet.pki.smime.verify",
}

__all__ = [
    "BindingError",
    "ChainResult",
    "ChainValidator",
    "DecryptError",
    "Decrypted",
    "DecryptionKey",
    "EncryptError",
    "KeyAndCertificates",
    "LoadError",
    "MalformedEnvelopeError",
    "MimeError",
    "SignerCredential",
    "SignerInfo",
    "SmimeResult",
    "Status",
    "TrustStore",
    "binds",
    "decrypt_data",
    "decrypt_message",
    "encrypt_data",
    "encrypt_message",
    "is_enveloped",
    "load_certificate",
    "load_certificates",
    "load_crls",
    "load_pkcs12",
    "load_private_key",
    "open_message",
    "sender_address",
    "sign_data",
    "sign_message",
    "verify_message",
    "verify_signed_data",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'carnet.pki.smime' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
