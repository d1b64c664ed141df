"""The certificate authority: the hierarchy, issuing, revoking and finding certificates (RFC 5280).

Public API (the directory issues mailbox certificates with it, the MTA loads keys to sign on users' behalf):

- :func:`init_hierarchy` creates, once, the root, the issuing CAs ``persons``, ``organisations`` and ``servers``,
  the TLS server certificate of the domain, the first CRLs and the published files under ``DATA_DIR/pki/``;
- :func:`issue` issues an end-entity certificate of a profile (:mod:`carnet.pki.profiles`) and keeps its private
  key sealed in the database (:mod:`carnet.pki.keys`);
- :func:`revoke` marks a certificate revoked and re-issues its CA's CRL (RFC 5280 §5);
- :func:`load_credential`, :func:`get_certificate`, :func:`find_by_email`, :func:`list_certificates` read back.

Files under ``DATA_DIR/pki/``: ``root.pem``, ``ca-bundle.pem`` (root + issuing CAs: what a mail client trusts),
``ca/<name>.pem``, ``crl/<name>.crl`` (DER), ``tls/server.pem`` (certificate + issuing CA) and ``tls/server.key``.
The TLS key is the one private key stored in plaintext (PKCS#8 PEM, mode 0600, directory 0700): a TLS listener must
read it at start-up without the key-encryption secret's indirection. Every other key lives sealed in the database.

This module and :mod:`carnet.pki.revocation` are the only ones of ``carnet.pki`` that speak SQL.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from carnet.config import Settings
from carnet.db import Database, utcnow
from carnet.pki import models
from carnet.pki.keys import (
    KEY_TYPES,
    KeyVault,
    PkiError,
    PrivateKey,
    generate_key,
    key_type_of,
    private_key_pem,
)
from carnet.pki.profiles import (
    ALLOWED_AUTHORITIES,
    AUTHORITY_NAMES,
    CA_PROFILE,
    DEFAULT_AUTHORITY,
    ISSUING_CAS,
    PROFILES,
    ROOT,
    EndEntity,
    InvalidRequest,
    Issuer,
    ProfileName,
    end_entity_certificate,
    issuing_ca_certificate,
    root_certificate,
    validate_dns_name,
    validate_email,
    validate_national_id,
    validate_text,
)

log = logging.getLogger(__name__)

#: CA keys: RSA-3072 (128-bit security, NIST SP 800-57), understood by every S/MIME and TLS client.
CA_KEY_TYPE: Final = "rsa3072"
#: RFC 5280 §5.3.1 reasons one may give to :func:`revoke`. removeFromCRL (delta CRLs only) and certificateHold
#: (carnet has no "unhold") are refused; cACompromise is for CA certificates, aACompromise for attribute authorities.
REVOCATION_REASONS: Final[tuple[x509.ReasonFlags, ...]] = (
    x509.ReasonFlags.unspecified,
    x509.ReasonFlags.key_compromise,
    x509.ReasonFlags.ca_compromise,
    x509.ReasonFlags.affiliation_changed,
    x509.ReasonFlags.superseded,
    x509.ReasonFlags.cessation_of_operation,
    x509.ReasonFlags.privilege_withdrawn,
)


# Errors ------------------------------------------------------------------------------------------------------


class NotInitialised(PkiError):
    """The database holds no certificate authority yet."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or "carnet's certificate authority does not exist: run `carnet init` first")


class UnknownAuthority(PkiError, LookupError):
    """No CA of that name."""


class AuthorityRevoked(PkiError):
    """The issuing CA's own certificate is revoked: it issues nothing more."""


class UnknownCertificate(PkiError, LookupError):
    """No certificate with that serial number was issued here."""


class AlreadyRevoked(PkiError):
    """The certificate is revoked already."""


class KeyNotHeld(PkiError):
    """The platform does not hold the private key of that certificate."""


# Data ----------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class IssueRequest:
    """What to certify. ``key_type`` defaults to ``settings.pki.default_key_type``; ``authority`` to ``persons`` for
    S/MIME and ``servers`` for TLS (``organisations`` for structures' and apps' mailboxes and servers)."""

    profile: ProfileName
    common_name: str
    emails: list[str] = field(default_factory=list)
    dns_names: list[str] = field(default_factory=list)
    national_id: str | None = None
    organisation: str | None = None
    key_type: str | None = None
    authority: str | None = None
    #: False: the key is returned once and never stored (then export it at once, e.g. as PKCS#12).
    keep_key: bool = True


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    """A certificate with its private key and the chain to send with it (issuing CA first, root excluded)."""

    certificate: x509.Certificate
    key: PrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...]
    authority: str
    profile: str

    @property
    def serial(self) -> str:
        return serial_hex(self.certificate.serial_number)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.certificate)

    def __repr__(self) -> str:
        return f"IssuedCredential(serial={self.serial!r}, profile={self.profile!r}, authority={self.authority!r})"


@dataclass(frozen=True, slots=True)
class CertificateRecord:
    """An issued certificate as stored (no key material)."""

    serial: str
    authority: str
    profile: str
    subject: str
    common_name: str
    emails: tuple[str, ...]
    dns_names: tuple[str, ...]
    national_id: str | None
    key_type: str
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    revocation_reason: str | None
    fingerprint_sha256: str
    der: bytes = field(repr=False)
    key_held: bool

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)

    def status(self, at: datetime | None = None) -> str:
        """``valid``, ``revoked``, ``expired`` or ``not_yet_valid`` at ``at`` (default now)."""
        at = at or utcnow()
        if self.revoked_at is not None and self.revoked_at <= at:
            return "revoked"
        if at > self.not_after:
            return "expired"
        if at < self.not_before:
            return "not_yet_valid"
        return "valid"


@dataclass(frozen=True, slots=True)
class AuthoritySummary:
    name: str
    subject: str
    fingerprint_sha256: str
    not_after: datetime


@dataclass(slots=True)
class HierarchyReport:
    """What :func:`init_hierarchy` found or created; :meth:`lines` never shows key material."""

    created: bool
    domain: str
    authorities: list[AuthoritySummary]
    tls_server: CertificateRecord | None
    ca_bundle: Path
    files_written: list[Path] = field(default_factory=list)
    #: The domain the caller's settings named, when it differs from the hierarchy's.
    other_domain_requested: str | None = None

    def lines(self) -> list[str]:
        state = "created" if self.created else "existing"
        out = [f"Certificate authority of {self.domain} ({state}):"]
        if self.other_domain_requested:
            out[0] += f" — this data directory serves {self.domain}, not {self.other_domain_requested}"
        out += [
            f"  {a.name:<14} {a.subject}  SHA-256 {display_fingerprint(a.fingerprint_sha256)}"
            for a in self.authorities
        ]
        if self.tls_server is not None:
            tls = self.tls_server
            out.append(
                f"TLS server certificate for {', '.join(tls.dns_names)}: serial {tls.serial}, "
                f"SHA-256 {display_fingerprint(tls.fingerprint_sha256)}, valid until {tls.not_after:%Y-%m-%d}"
            )
        out.append(f"CA bundle for mail clients: {self.ca_bundle}")
        if self.files_written:
            out.append("Files written:")
            note = " (unencrypted TLS private key, mode 0600, for the TLS listeners)"
            out += [f"  {path}{note if path.suffix == '.key' else ''}" for path in self.files_written]
        return out


# Helpers -------------------------------------------------------------------------------------------------------


def serial_hex(serial: int) -> str:
    """The canonical text of a serial number: lower-case hex without leading zeros."""
    return format(serial, "x")


def parse_serial(text: str) -> int:
    """A serial number from hex text as people paste it (``0x``, colons, spaces, any case)."""
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "").replace(" ", "")
    try:
        value = int(cleaned, 16)
    except ValueError:
        raise InvalidRequest(f"{text!r} is not a hexadecimal serial number") from None
    if value <= 0 or value.bit_length() > 160:
        raise InvalidRequest(f"{text!r} is not a valid serial number (RFC 5280 §4.1.2.2)")
    return value


def subject_text(name: x509.Name) -> str:
    """RFC 4514 text of a name, with ``serialNumber`` spelt out (cryptography prints its OID)."""
    return name.rfc4514_string({NameOID.SERIAL_NUMBER: "serialNumber"})


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lower-case hex."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def display_fingerprint(hex_digest: str) -> str:
    """``AB:CD:…``, as ``openssl x509 -fingerprint -sha256`` prints it."""
    return ":".join(hex_digest[i : i + 2] for i in range(0, len(hex_digest), 2)).upper()


def parse_reason(reason: str) -> x509.ReasonFlags:
    """A CRLReason (RFC 5280 §5.3.1) from ``keyCompromise``, ``key-compromise`` or ``key_compromise``."""
    wanted = reason.strip().replace("-", "").replace("_", "").lower()
    for flag in REVOCATION_REASONS:
        if flag.value.lower() == wanted:
            return flag
    choices = ", ".join(flag.value for flag in REVOCATION_REASONS)
    raise InvalidRequest(f"revocation reason {reason!r} is not accepted (choose one of {choices})")


def pki_dir(settings: Settings) -> Path:
    return settings.data_dir / "pki"


def ca_bundle_path(settings: Settings) -> Path:
    return pki_dir(settings) / "ca-bundle.pem"


def write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` atomically (temporary file, then rename) with permissions ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700 if mode & 0o077 == 0 else 0o755)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def _record(row: models.Certificate, authority: str) -> CertificateRecord:
    return CertificateRecord(
        serial=row.serial,
        authority=authority,
        profile=row.profile,
        subject=row.subject,
        common_name=row.common_name,
        emails=tuple(row.emails or ()),
        dns_names=tuple(row.dns_names or ()),
        national_id=row.national_id,
        key_type=row.key_type,
        not_before=row.not_before,
        not_after=row.not_after,
        revoked_at=row.revoked_at,
        revocation_reason=row.revocation_reason,
        fingerprint_sha256=row.fingerprint_sha256,
        der=row.certificate,
        key_held=row.sealed_key is not None,
    )


def _common_name(certificate: x509.Certificate) -> str:
    values = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


# Store ---------------------------------------------------------------------------------------------------------


async def _authority_rows(session: AsyncSession) -> dict[str, models.Authority]:
    rows = (await session.execute(select(models.Authority))).scalars().all()
    return {row.name: row for row in rows}


async def is_initialised(db: Database) -> bool:
    """Whether the hierarchy exists in this database."""
    async with db.session() as session:
        return (await session.execute(select(models.Authority.id).limit(1))).first() is not None


async def authority_certificates(db: Database) -> dict[str, x509.Certificate]:
    """The CA certificates by name (``root`` first); :class:`NotInitialised` if there are none."""
    async with db.session() as session:
        rows = await _authority_rows(session)
    if not rows:
        raise NotInitialised()
    return {name: x509.load_der_x509_certificate(rows[name].certificate) for name in AUTHORITY_NAMES if name in rows}


async def load_issuer(db: Database, settings: Settings, name: str) -> Issuer:
    """A CA with its private key opened, ready to sign (certificates, CRLs, OCSP responses)."""
    async with db.session() as session:
        query = select(models.Authority).where(models.Authority.name == name)
        row = (await session.execute(query)).scalar_one_or_none()
        if row is None:
            if not await _authority_rows(session):
                raise NotInitialised()
            raise UnknownAuthority(f"no certificate authority named {name!r} (known: {', '.join(AUTHORITY_NAMES)})")
    key = KeyVault.from_settings(settings).open(row.sealed_key, f"ca:{name}")
    return Issuer(name=name, certificate=x509.load_der_x509_certificate(row.certificate), key=key)


async def _chain(db: Database, authority: str) -> tuple[x509.Certificate, ...]:
    """Intermediates from the certificate's issuer up, the root excluded (RFC 8551 §2.4.2 / RFC 8446 §4.4.2)."""
    if authority == ROOT:
        return ()
    certificates = await authority_certificates(db)
    return (certificates[authority],)


def _owner(serial: str) -> str:
    return f"cert:{serial}"


async def _insert_certificate(
    session: AsyncSession,
    authority_id: int,
    certificate: x509.Certificate,
    profile: str,
    entity: EndEntity,
    sealed_key: bytes | None,
) -> models.Certificate:
    row = models.Certificate(
        serial=serial_hex(certificate.serial_number),
        authority_id=authority_id,
        profile=profile,
        subject=subject_text(certificate.subject),
        common_name=entity.common_name,
        emails=list(entity.emails),
        dns_names=list(entity.dns_names),
        national_id=entity.national_id,
        key_type=key_type_of(certificate.public_key()),  # type: ignore[arg-type]
        certificate=certificate.public_bytes(serialization.Encoding.DER),
        sealed_key=sealed_key,
        fingerprint_sha256=fingerprint(certificate),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        created_at=utcnow(),
    )
    session.add(row)
    await session.flush()
    session.add_all(models.CertificateEmail(certificate_id=row.id, email=email) for email in entity.emails)
    return row


# The hierarchy --------------------------------------------------------------------------------------------------


async def init_hierarchy(db: Database, settings: Settings) -> HierarchyReport:
    """Create the root, the issuing CAs and the domain's TLS server certificate, once.

    On an initialised database nothing changes (``created=False``); only published files missing from this node's
    data directory are written again, from the database (several nodes may share one PostgreSQL database).
    """
    if await is_initialised(db):
        return await _existing_hierarchy(db, settings)
    vault = KeyVault.from_settings(settings)
    ca_keys = await asyncio.to_thread(lambda: {name: generate_key(CA_KEY_TYPE) for name in AUTHORITY_NAMES})
    tls_key = await asyncio.to_thread(generate_key, settings.pki.default_key_type)
    now = utcnow()
    base = settings.pki_base_url
    root = Issuer(ROOT, root_certificate(ca_keys[ROOT], settings.domain, now), ca_keys[ROOT])
    issuers = {ROOT: root}
    for name in ISSUING_CAS:
        certificate = issuing_ca_certificate(ca_keys[name].public_key(), name, settings.domain, root, base, now)
        issuers[name] = Issuer(name, certificate, ca_keys[name])
    tls_entity = EndEntity(
        profile="tls-server",
        common_name=settings.domain,
        dns_names=(settings.domain, f"patient.{settings.domain}"),
    )
    validity = timedelta(days=settings.pki.leaf_validity_days)
    tls_certificate = end_entity_certificate(tls_entity, tls_key.public_key(), issuers["servers"], base, now, validity)
    try:
        async with db.transaction() as session:
            ids: dict[str, int] = {}
            for name in AUTHORITY_NAMES:
                certificate = issuers[name].certificate
                row = models.Authority(
                    name=name,
                    parent_id=ids.get(ROOT),
                    subject=subject_text(certificate.subject),
                    certificate=certificate.public_bytes(serialization.Encoding.DER),
                    sealed_key=vault.seal(issuers[name].key, f"ca:{name}"),
                    fingerprint_sha256=fingerprint(certificate),
                    next_crl_number=1,
                    created_at=now,
                )
                session.add(row)
                await session.flush()
                ids[name] = row.id
            for name in ISSUING_CAS:
                certificate = issuers[name].certificate
                entity = EndEntity(profile=CA_PROFILE, common_name=_common_name(certificate))
                await _insert_certificate(session, ids[ROOT], certificate, CA_PROFILE, entity, None)
            sealed = vault.seal(tls_key, _owner(serial_hex(tls_certificate.serial_number)))
            await _insert_certificate(session, ids["servers"], tls_certificate, "tls-server", tls_entity, sealed)
    except IntegrityError:
        # Another node initialised the same database concurrently: theirs stands.
        log.info("certificate authority created concurrently by another process; keeping it")
        return await _existing_hierarchy(db, settings)
    log.info("certificate authority created for %s", settings.domain)
    from carnet.pki import revocation

    written: list[Path] = []
    for name in AUTHORITY_NAMES:
        await revocation.generate_crl(db, settings, name)
        written.append(revocation.crl_path(settings, name))
    written += await publish_files(db, settings, only_missing=False)
    report = await _existing_hierarchy(db, settings, write_missing=False)
    report.created = True
    report.files_written = sorted(written)
    return report


async def _existing_hierarchy(db: Database, settings: Settings, *, write_missing: bool = True) -> HierarchyReport:
    async with db.session() as session:
        rows = await _authority_rows(session)
    summaries = [
        AuthoritySummary(
            name,
            rows[name].subject,
            rows[name].fingerprint_sha256,
            x509.load_der_x509_certificate(rows[name].certificate).not_valid_after_utc,
        )
        for name in AUTHORITY_NAMES
        if name in rows
    ]
    domain = _domain_of(x509.load_der_x509_certificate(rows[ROOT].certificate))
    written = await publish_files(db, settings, only_missing=True) if write_missing else []
    return HierarchyReport(
        created=False,
        domain=domain,
        authorities=summaries,
        tls_server=await server_certificate(db, domain),
        ca_bundle=ca_bundle_path(settings),
        files_written=written,
        other_domain_requested=settings.domain if settings.domain != domain else None,
    )


async def server_certificate(db: Database, domain: str) -> CertificateRecord | None:
    """The newest unrevoked TLS server certificate naming ``domain`` first, issued by ``servers``."""
    records = await list_certificates(db, profile="tls-server")
    candidates = [
        r for r in records if r.dns_names[:1] == (domain,) and r.authority == "servers" and r.revoked_at is None
    ]
    return max(candidates, key=lambda r: r.not_after, default=None)


async def publish_files(db: Database, settings: Settings, *, only_missing: bool) -> list[Path]:
    """Write the CA certificates, the bundle, the TLS server certificate and key, and any missing CRL file."""
    from carnet.pki import revocation

    certificates = await authority_certificates(db)
    directory = pki_dir(settings)
    files: dict[Path, tuple[bytes, int]] = {
        directory / "root.pem": (pem(certificates[ROOT]), 0o644),
        directory / "ca-bundle.pem": (pem(*certificates.values()), 0o644),
    }
    for name, certificate in certificates.items():
        files[directory / "ca" / f"{name}.pem"] = (pem(certificate), 0o644)
    domain_record = await server_certificate(db, _domain_of(certificates[ROOT]))
    written: list[Path] = []
    pair: set[Path] = set()  # the TLS certificate and key are written together, or not at all
    if domain_record is not None:
        cert_path, key_path = directory / "tls" / "server.pem", directory / "tls" / "server.key"
        if not only_missing or not (cert_path.exists() and key_path.exists()):
            credential = await load_credential(db, settings, domain_record.serial)
            files[key_path] = (private_key_pem(credential.key), 0o600)  # first: its directory gets mode 0700
            files[cert_path] = (pem(credential.certificate, *credential.chain), 0o644)
            pair = {key_path, cert_path}
    for path, (data, mode) in files.items():
        if only_missing and path.exists() and path not in pair:
            continue
        write_file(path, data, mode)
        written.append(path)
    for name in certificates:
        if not revocation.crl_path(settings, name).exists():
            await revocation.current_crl(db, settings, name, write=True)
            written.append(revocation.crl_path(settings, name))
    return written


def _domain_of(root: x509.Certificate) -> str:
    """The domain a hierarchy was created for: the root's organizationName (see profiles.ca_subject)."""
    return str(root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value)


async def hierarchy_domain(db: Database) -> str:
    """The mail domain this database's authority was created for."""
    return _domain_of((await authority_certificates(db))[ROOT])


async def settings_for_hierarchy(db: Database, settings: Settings) -> Settings:
    """``settings`` with the domain the hierarchy was created for (the URLs in new certificates derive from it).

    A data directory serves one domain; commands run without ``--domain`` or ``CARNET_DOMAIN`` must still name
    that domain's CRL and OCSP URLs in the certificates they issue.
    """
    domain = await hierarchy_domain(db)
    return settings if settings.domain == domain else settings.model_copy(update={"domain": domain})


# Issuing ---------------------------------------------------------------------------------------------------------


def validate_request(request: IssueRequest, settings: Settings) -> tuple[EndEntity, str, str]:
    """Check a request against its profile; returns (normalised entity, key type, authority name)."""
    if request.profile not in PROFILES:
        raise InvalidRequest(f"unknown profile {request.profile!r} (choose one of {', '.join(PROFILES)})")
    emails = tuple(dict.fromkeys(validate_email(e) for e in request.emails))
    dns_names = tuple(dict.fromkeys(validate_dns_name(d) for d in request.dns_names))
    if request.profile == "smime":
        if not emails:
            raise InvalidRequest("an S/MIME certificate needs at least one e-mail address")
        if dns_names:
            raise InvalidRequest("an S/MIME certificate carries e-mail addresses, not DNS names")
    else:
        if not dns_names:
            raise InvalidRequest(f"a {request.profile} certificate needs at least one DNS name")
        if emails:
            raise InvalidRequest(f"a {request.profile} certificate carries DNS names, not e-mail addresses")
    national_id = validate_national_id(request.national_id) if request.national_id else None
    if national_id and request.profile != "smime":
        raise InvalidRequest("a national identifier belongs in S/MIME certificates of persons and organisations")
    common_name = validate_text(request.common_name or (emails or dns_names)[0], "the common name")
    organisation = validate_text(request.organisation, "the organisation") if request.organisation else None
    key_type = request.key_type or settings.pki.default_key_type
    if key_type not in KEY_TYPES:
        raise InvalidRequest(f"unsupported key type {key_type!r} (choose one of {', '.join(KEY_TYPES)})")
    authority = request.authority or DEFAULT_AUTHORITY[request.profile]
    if authority not in ALLOWED_AUTHORITIES[request.profile]:
        allowed = " or ".join(ALLOWED_AUTHORITIES[request.profile])
        raise InvalidRequest(f"CA {authority!r} does not issue {request.profile} certificates (use {allowed})")
    entity = EndEntity(request.profile, common_name, emails, dns_names, national_id, organisation)
    return entity, key_type, authority


async def issue(db: Database, settings: Settings, request: IssueRequest) -> IssuedCredential:
    """Issue a certificate for ``request`` (profiles in :mod:`carnet.pki.profiles`), its key sealed in the database."""
    entity, key_type, authority = validate_request(request, settings)
    issuer = await load_issuer(db, settings, authority)
    if await _is_revoked(db, issuer.certificate):
        raise AuthorityRevoked(f"CA {authority!r} is revoked and issues no more certificates")
    key = await asyncio.to_thread(generate_key, key_type)
    validity = timedelta(days=settings.pki.leaf_validity_days)
    certificate = end_entity_certificate(entity, key.public_key(), issuer, settings.pki_base_url, utcnow(), validity)
    serial = serial_hex(certificate.serial_number)
    sealed = KeyVault.from_settings(settings).seal(key, _owner(serial)) if request.keep_key else None
    async with db.transaction() as session:
        authority_id = (
            await session.execute(select(models.Authority.id).where(models.Authority.name == authority))
        ).scalar_one()
        await _insert_certificate(session, authority_id, certificate, entity.profile, entity, sealed)
    log.info("issued %s certificate serial=%s by CA %s for %s", entity.profile, serial, authority,
             ", ".join(entity.emails or entity.dns_names))
    return IssuedCredential(certificate, key, await _chain(db, authority), authority, entity.profile)


async def _is_revoked(db: Database, certificate: x509.Certificate) -> bool:
    async with db.session() as session:
        revoked_at = (
            await session.execute(
                select(models.Certificate.revoked_at).where(
                    models.Certificate.serial == serial_hex(certificate.serial_number)
                )
            )
        ).scalar_one_or_none()
    return revoked_at is not None


# Reading --------------------------------------------------------------------------------------------------------


async def _row_by_serial(session: AsyncSession, serial: str) -> tuple[models.Certificate, str]:
    wanted = serial_hex(parse_serial(serial))
    found = (
        await session.execute(
            select(models.Certificate, models.Authority.name)
            .join(models.Authority, models.Authority.id == models.Certificate.authority_id)
            .where(models.Certificate.serial == wanted)
        )
    ).first()
    if found is None:
        raise UnknownCertificate(f"no certificate with serial {wanted} was issued by this authority")
    return found[0], found[1]


async def get_certificate(db: Database, serial: str) -> CertificateRecord:
    """The stored record of a certificate; :class:`UnknownCertificate` if none has that serial."""
    async with db.session() as session:
        row, authority = await _row_by_serial(session, serial)
    return _record(row, authority)


async def load_credential(db: Database, settings: Settings, serial: str) -> IssuedCredential:
    """A certificate with its private key (opened from the vault) and chain; :class:`KeyNotHeld` if not stored."""
    async with db.session() as session:
        row, authority = await _row_by_serial(session, serial)
    if row.sealed_key is None:
        raise KeyNotHeld(f"the platform does not hold the private key of certificate {row.serial}")
    key = KeyVault.from_settings(settings).open(row.sealed_key, _owner(row.serial))
    certificate = x509.load_der_x509_certificate(row.certificate)
    return IssuedCredential(certificate, key, await _chain(db, authority), authority, row.profile)


async def find_by_email(
    db: Database, email: str, *, valid_at: datetime | None = None
) -> list[CertificateRecord]:
    """Every certificate naming ``email`` (rfc822Name): those valid and unrevoked at ``valid_at`` (default now)
    first, newest first; then the others (revoked, expired, not yet valid), newest first."""
    address = validate_email(email)
    at = valid_at or utcnow()
    async with db.session() as session:
        rows = (
            await session.execute(
                select(models.Certificate, models.Authority.name)
                .join(models.CertificateEmail, models.CertificateEmail.certificate_id == models.Certificate.id)
                .join(models.Authority, models.Authority.id == models.Certificate.authority_id)
                .where(models.CertificateEmail.email == address)
            )
        ).all()
    records = [_record(row, authority) for row, authority in rows]
    return sorted(records, key=lambda r: (r.status(at) != "valid", -r.not_after.timestamp(), r.serial))


async def list_certificates(
    db: Database, *, revoked: bool | None = None, profile: str | None = None, authority: str | None = None
) -> list[CertificateRecord]:
    """Issued certificates, oldest first; filtered on revocation state, profile or issuing CA when given."""
    query = select(models.Certificate, models.Authority.name).join(
        models.Authority, models.Authority.id == models.Certificate.authority_id
    )
    if revoked is not None:
        query = query.where(
            models.Certificate.revoked_at.is_not(None) if revoked else models.Certificate.revoked_at.is_(None)
        )
    if profile is not None:
        query = query.where(models.Certificate.profile == profile)
    if authority is not None:
        query = query.where(models.Authority.name == authority)
    async with db.session() as session:
        rows = (await session.execute(query.order_by(models.Certificate.id))).all()
    return [_record(row, name) for row, name in rows]


# Revoking --------------------------------------------------------------------------------------------------------


async def revoke(db: Database, settings: Settings, serial: str, reason: str = "unspecified") -> CertificateRecord:
    """Revoke a certificate (RFC 5280 §3.3) and re-issue the CRL of its CA at once (§5).

    :class:`UnknownCertificate` if no such serial was issued here, :class:`AlreadyRevoked` if it is already.
    """
    flag = parse_reason(reason)
    async with db.transaction() as session:
        row, authority = await _row_by_serial(session, serial)
        # Lock the row (PostgreSQL) so two concurrent revocations cannot both succeed.
        locked = (
            await session.execute(
                select(models.Certificate).where(models.Certificate.id == row.id).with_for_update()
            )
        ).scalar_one()
        await session.refresh(locked)
        if locked.revoked_at is not None:
            raise AlreadyRevoked(
                f"certificate {locked.serial} is already revoked ({locked.revocation_reason}, "
                f"{locked.revoked_at:%Y-%m-%d %H:%M:%S}Z)"
            )
        if flag is x509.ReasonFlags.ca_compromise and locked.profile != CA_PROFILE:
            raise InvalidRequest("cACompromise applies to CA certificates only (RFC 5280 §5.3.1)")
        locked.revoked_at = utcnow().replace(microsecond=0)
        locked.revocation_reason = flag.value
        record = _record(locked, authority)
    log.info("revoked certificate serial=%s (%s)", record.serial, flag.value)
    from carnet.pki import revocation

    await revocation.generate_crl(db, settings, authority)
    return record
