"""carnet's public-key infrastructure: a certificate authority modelled on IGC-Santé, CRLs, OCSP, S/MIME.

Implemented here:

- a two-level hierarchy (RFC 5280): a self-signed root and issuing CAs ``persons`` (professionals, patients),
  ``organisations`` (structures, apps) and ``servers`` (the operator's TLS certificates) —
  :mod:`carnet.pki.authority`;
- certificate profiles for S/MIME (RFC 8550 §4.4), TLS server and TLS client, RSA-2048/3072 and ECDSA P-256, with
  the professional's national identifier in the subject serialNumber as IGC-Santé does — :mod:`carnet.pki.profiles`;
- private keys sealed at rest with AES-256-GCM under a scrypt-derived key (RFC 7914) — :mod:`carnet.pki.keys`;
- complete v2 CRLs per CA (RFC 5280 §5) — :mod:`carnet.pki.revocation`;
- an OCSP responder (RFC 6960, GET and POST per Appendix A, CA-signed responses §4.2.2.2) — :mod:`carnet.pki.ocsp`,
  served with the CRLs and CA certificates under ``/pki/`` by :mod:`carnet.pki.http`;
- the local trust store the S/MIME gateway validates with — :mod:`carnet.pki.trust`;
- the ``carnet pki`` commands (PKCS#12 export per RFC 7292 with PBES2/AES-256 and an HMAC-SHA-256 MAC) —
  :mod:`carnet.pki.commands`; demo identities — :mod:`carnet.pki.demo`;
- S/MIME signing, verification, encryption and decryption — :mod:`carnet.pki.smime`.

Not implemented: delta CRLs and indirect CRLs (RFC 5280 §5.2.4, §5.2.5), delegated OCSP responders (RFC 6960
§4.2.2.2 designated responders), OCSP requests for several certificates at once (every client we know asks for one;
such a request is answered malformedRequest), certificate policies and name constraints, certificate requests
carrying a client-generated key (PKCS#10), key escrow outside the database.

The names below are re-exported lazily, so that importing ``carnet.pki`` (as ``carnet.pki.smime`` does) costs
nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from carnet.pki.authority import (
        AlreadyRevoked,
        CertificateRecord,
        IssuedCredential,
        IssueRequest,
        KeyNotHeld,
        NotInitialised,
        UnknownAuthority,
        UnknownCertificate,
        find_by_email,
        init_hierarchy,
        issue,
        load_credential,
        revoke,
    )
    from carnet.pki.keys import KeyVault, PkiError, SealedKeyError
    from carnet.pki.profiles import InvalidRequest
    from carnet.pki.trust import local_trust_store

_EXPORTS = {
    "AlreadyRevoked": "carnet.pki.authority",
    "CertificateRecord": "carnet.pki.authority",
    "IssueRequest": "carnet.pki.authority",
    "IssuedCredential": "carnet.pki.authority",
    "KeyNotHeld": "carnet.pki.authority",
    "NotInitialised": "carnet.pki.authority",
    "UnknownAuthority": "carnet.pki.authority",
    "UnknownCertificate": "carnet.pki.authority",
    "find_by_email": "carnet.pki.authority",
    "init_hierarchy": "carnet.pki.authority",
    "issue": "carnet.pki.authority",
    "load_credential": "carnet.pki.authority",
    "revoke": "carnet.pki.authority",
    "KeyVault": "carnet.pki.keys",
    "PkiError": "carnet.pki.keys",
    "SealedKeyError": "carnet.pki.keys",
    "InvalidRequest": "carnet.pki.profiles",
    "local_trust_store": "carnet.pki.trust",
}

__all__ = [
    "AlreadyRevoked",
    "CertificateRecord",
    "InvalidRequest",
    "IssueRequest",
    "IssuedCredential",
    "KeyNotHeld",
    "KeyVault",
    "NotInitialised",
    "PkiError",
    "SealedKeyError",
    "UnknownAuthority",
    "UnknownCertificate",
    "find_by_email",
    "init_hierarchy",
    "issue",
    "load_credential",
    "local_trust_store",
    "revoke",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'carnet.pki' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
