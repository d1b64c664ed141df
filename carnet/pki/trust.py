"""The trust store the S/MIME gateway validates with: carnet's own hierarchy and its current CRLs.

Anchor: our root. Intermediates: the issuing CAs. Revocation: the current CRL of every CA (RFC 5280 §6.3), the
root's covering the issuing CAs; stale or missing CRLs are re-issued first (:func:`carnet.pki.revocation.current_crl`)
so that validation under ``hard_fail`` never lacks revocation information for our own certificates. Other operators'
anchors (the trust space) are added by the directory, not here.
"""

from __future__ import annotations

from carnet.config import Settings
from carnet.db import Database
from carnet.pki import authority, revocation
from carnet.pki.profiles import ROOT
from carnet.pki.smime.validation import TrustStore


async def local_trust_store(db: Database, settings: Settings) -> TrustStore:
    """A :class:`~carnet.pki.smime.validation.TrustStore` of our root, issuing CAs and their current CRLs."""
    certificates = await authority.authority_certificates(db)
    crls = [await revocation.current_crl(db, settings, name) for name in certificates]
    return TrustStore(
        anchors=[certificates[ROOT]],
        intermediates=[certificate for name, certificate in certificates.items() if name != ROOT],
        crls=crls,
        hard_fail=settings.pki.revocation_hard_fail,
    )


async def refresh_crls(db: Database, settings: Settings, store: TrustStore) -> None:
    """Put our CAs' current CRLs into ``store`` (newer ones replace older; call it after a revocation or
    periodically, well before ``settings.pki.revocation_validity_hours`` have passed)."""
    for name in await authority.authority_certificates(db):
        store.add_crl(await revocation.current_crl(db, settings, name))
