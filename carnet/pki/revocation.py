"""Certificate revocation lists: one complete CRL per CA (RFC 5280 §5).

Each CA, the root included, signs a version 2 CRL (§5.1.2.1) over every unexpired certificate it issued and
revoked — the root's CRL therefore covers the issuing CAs. A CRL has:

- thisUpdate / nextUpdate (§5.1.2.4, §5.1.2.5): nextUpdate = thisUpdate + ``settings.pki.revocation_validity_hours``;
- cRLNumber (§5.2.3), strictly increasing per CA (``pki_authorities.next_crl_number``, taken with an atomic
  ``UPDATE … RETURNING`` so concurrent nodes never reuse a number);
- authorityKeyIdentifier (§5.2.1), the issuer's subjectKeyIdentifier;
- per entry the revocation date and, unless "unspecified", the reasonCode (§5.3.1: "the reason code CRL entry
  extension SHOULD be absent instead of using the unspecified (0) reasonCode value").

Certificates are removed from the CRL once expired (§3.3 allows it). Every CRL issued is kept in ``pki_crls``; the
latest is published over HTTP (``/pki/crl/<ca>.crl``) and as ``DATA_DIR/pki/crl/<ca>.crl`` (DER). A new CRL is
issued at every revocation and whenever the latest one has used up half of its validity.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import func, select, update

from carnet.config import Settings
from carnet.db import Database, utcnow
from carnet.pki import models
from carnet.pki.authority import NotInitialised, UnknownAuthority, load_issuer, pki_dir, write_file
from carnet.pki.profiles import AUTHORITY_NAMES, Issuer


def crl_path(settings: Settings, ca_name: str) -> Path:
    """``DATA_DIR/pki/crl/<ca>.crl``."""
    return pki_dir(settings) / "crl" / f"{ca_name}.crl"


def build_crl(
    issuer: Issuer,
    number: int,
    revoked: Iterable[tuple[int, datetime, str | None]],
    this_update: datetime,
    next_update: datetime,
) -> x509.CertificateRevocationList:
    """A v2 CRL signed by ``issuer`` for the ``(serial, revocation date, reason)`` entries (RFC 5280 §5.1)."""
    ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )
    for serial, revoked_at, reason in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at)
        if reason and reason != x509.ReasonFlags.unspecified.value:
            entry = entry.add_extension(x509.CRLReason(x509.ReasonFlags(reason)), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(issuer.key, hashes.SHA256())


def _check_name(ca_name: str) -> None:
    if ca_name not in AUTHORITY_NAMES:
        raise UnknownAuthority(f"no certificate authority named {ca_name!r} (known: {', '.join(AUTHORITY_NAMES)})")


async def generate_crl(db: Database, settings: Settings, ca_name: str) -> x509.CertificateRevocationList:
    """Issue, store and write a fresh CRL of ``ca_name`` (``carnet pki crl``)."""
    _check_name(ca_name)
    issuer = await load_issuer(db, settings, ca_name)
    this_update = utcnow().replace(microsecond=0)
    next_update = this_update + timedelta(hours=settings.pki.revocation_validity_hours)
    async with db.transaction() as session:
        # Taking the number first also takes the write lock (row lock on PostgreSQL, database lock on SQLite).
        authority_id, next_number = (
            await session.execute(
                update(models.Authority)
                .where(models.Authority.name == ca_name)
                .values(next_crl_number=models.Authority.next_crl_number + 1)
                .returning(models.Authority.id, models.Authority.next_crl_number)
            )
        ).one()
        revoked = (
            await session.execute(
                select(models.Certificate.serial, models.Certificate.revoked_at, models.Certificate.revocation_reason)
                .where(
                    models.Certificate.authority_id == authority_id,
                    models.Certificate.revoked_at.is_not(None),
                    models.Certificate.not_after >= this_update,
                )
                .order_by(models.Certificate.revoked_at, models.Certificate.serial)
            )
        ).all()
        crl = build_crl(
            issuer,
            next_number - 1,
            ((int(serial, 16), revoked_at, reason) for serial, revoked_at, reason in revoked),
            this_update,
            next_update,
        )
        session.add(
            models.Crl(
                authority_id=authority_id,
                number=next_number - 1,
                this_update=this_update,
                next_update=next_update,
                der=crl.public_bytes(serialization.Encoding.DER),
            )
        )
    write_file(crl_path(settings, ca_name), crl.public_bytes(serialization.Encoding.DER))
    return crl


async def _latest(db: Database, ca_name: str) -> tuple[models.Crl | None, datetime | None]:
    """The latest stored CRL of a CA, and the latest revocation time of its certificates."""
    async with db.session() as session:
        authority_id = (
            await session.execute(select(models.Authority.id).where(models.Authority.name == ca_name))
        ).scalar_one_or_none()
        if authority_id is None:
            raise NotInitialised()
        latest = (
            await session.execute(
                select(models.Crl)
                .where(models.Crl.authority_id == authority_id)
                .order_by(models.Crl.number.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        last_revocation = (
            await session.execute(
                select(func.max(models.Certificate.revoked_at)).where(models.Certificate.authority_id == authority_id)
            )
        ).scalar_one_or_none()
    return latest, last_revocation


def _is_current(crl: models.Crl, last_revocation: datetime | None, now: datetime) -> bool:
    """Fresh enough to publish: covers every revocation and has at least half of its validity left."""
    half = (crl.next_update - crl.this_update) / 2
    if now >= crl.next_update - half:
        return False
    return last_revocation is None or last_revocation <= crl.this_update


async def current_crl(db: Database, settings: Settings, ca_name: str, *, write: bool = False) -> bytes:
    """The DER of the CA's current CRL, issuing a fresh one when there is none or it is stale.

    ``write=True`` also writes it to ``DATA_DIR/pki/crl/<ca>.crl`` when it was not freshly issued.
    """
    _check_name(ca_name)
    latest, last_revocation = await _latest(db, ca_name)
    if latest is None or not _is_current(latest, last_revocation, utcnow()):
        return (await generate_crl(db, settings, ca_name)).public_bytes(serialization.Encoding.DER)
    if write:
        write_file(crl_path(settings, ca_name), latest.der)
    return latest.der
