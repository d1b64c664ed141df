"""Recipient certificates: :func:`certificates_for` answers for local and remote addresses alike.

Local addresses: the mailbox's certificate in force, only when the mailbox is active and the certificate valid and
unrevoked now (RFC 5280 §4.1.2.5, §3.3). Remote addresses: the operator serving the domain must be in the trust
space; its directory is asked over HTTPS (:mod:`carnet.directory.remote`) and the answer cached in the database.
Every outcome is a :class:`CertificateLookup` with a :class:`LookupStatus`: a recipient without a usable certificate
is reported as such, never silently dropped.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509

from carnet.config import Settings
from carnet.db import Database, utcnow
from carnet.directory import store
from carnet.directory.addresses import AddressError, is_local_domain, normalise_address
from carnet.directory.records import IdentityStatus


class LookupStatus(enum.StrEnum):
    FOUND = "found"
    NO_CERTIFICATE = "no_certificate"  # the mailbox exists but has no valid certificate (disabled, revoked…)
    UNKNOWN_ADDRESS = "unknown_address"  # no such mailbox (here, or at the peer)
    UNTRUSTED_DOMAIN = "untrusted_domain"  # the domain is not in the trust space
    UNREACHABLE = "unreachable"  # the peer's directory could not be reached or answered badly (TLS, HTTP, timeout)
    INVALID = "invalid"  # the peer answered with certificates that do not validate against its CAs


@dataclass(frozen=True, slots=True)
class CertificateLookup:
    """The certificates to encrypt to ``address`` (leaf certificates, newest first) and their intermediates."""

    address: str
    status: LookupStatus
    certificates: tuple[x509.Certificate, ...] = ()
    chain: tuple[x509.Certificate, ...] = ()
    source: str = "local"  # local | remote | cache
    detail: str = ""
    legacy_crypto: bool = False  # the recipient's operator needs EnvelopedData/PKCS#1 v1.5
    fetched_at: datetime | None = None
    serials: tuple[str, ...] = field(default=())

    @property
    def found(self) -> bool:
        return self.status is LookupStatus.FOUND


async def local_certificates(db: Database, address: str, *, at: datetime | None = None) -> CertificateLookup:
    """The certificate in force of one of our mailboxes (red-listed mailboxes included: lookups still work)."""
    from carnet.pki.authority import UnknownCertificate, authority_certificates, get_certificate

    at = at or utcnow()
    async with db.session() as session:
        mailbox = await store.mailbox_by_address(session, address)
        if mailbox is None:
            return CertificateLookup(address, LookupStatus.UNKNOWN_ADDRESS, detail=f"no mailbox {address}")
        if mailbox.disabled_at is not None:
            return CertificateLookup(address, LookupStatus.NO_CERTIFICATE, detail="mailbox disabled")
        if mailbox.patient_id is not None:
            patient = await store.patient_by_id(session, mailbox.patient_id)
            if patient is None or patient.identity_status != IdentityStatus.VALI:
                return CertificateLookup(
                    address, LookupStatus.NO_CERTIFICATE, detail="the patient's identity is not qualified (VALI)"
                )
        serial = mailbox.certificate_serial
    try:
        record = await get_certificate(db, serial)
    except UnknownCertificate:
        return CertificateLookup(address, LookupStatus.NO_CERTIFICATE, detail=f"certificate {serial} not found")
    status = record.status(at)
    if status != "valid":
        return CertificateLookup(address, LookupStatus.NO_CERTIFICATE, detail=f"certificate {serial} is {status}")
    issuer = (await authority_certificates(db)).get(record.authority)
    return CertificateLookup(
        address,
        LookupStatus.FOUND,
        certificates=(record.certificate,),
        chain=(issuer,) if issuer is not None else (),
        source="local",
        fetched_at=at,
        serials=(record.serial,),
    )


async def certificates_for(db: Database, settings: Settings, address: str) -> CertificateLookup:
    """Certificates to encrypt to ``address``, wherever it lives (ours, or a trusted operator's)."""
    try:
        normalised = normalise_address(address)
    except AddressError as exc:
        return CertificateLookup(address, LookupStatus.UNKNOWN_ADDRESS, detail=str(exc))
    domain = normalised.rpartition("@")[2]
    if is_local_domain(domain, settings.domain):
        return await local_certificates(db, normalised)
    from carnet.directory.remote import remote_certificates

    return await remote_certificates(db, settings, normalised)
