"""Tables of the certificate authority (migration ``0001_pki``).

Only the store functions of :mod:`carnet.pki.authority` and :mod:`carnet.pki.revocation` use them.

- ``pki_authorities``: the root and the issuing CAs, their certificate and sealed private key, the next CRL number
  (RFC 5280 §5.2.3: monotonically increasing per CA).
- ``pki_certificates``: every certificate an authority issued — end entities and the issuing CAs' own certificates
  (profile ``ca``, issued by the root) — with its revocation state; the source of CRLs and OCSP answers.
  ``sealed_key`` holds the subject's private key when the platform keeps it (mailbox certificates: carnet signs and
  decrypts on the users' behalf); it is NULL otherwise.
- ``pki_certificate_emails``: one row per rfc822Name, for lookup by address.
- ``pki_crls``: every CRL issued, by CA and number.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from carnet.db import Base, UTCDateTime


class Authority(Base):
    """A certificate authority of this instance: ``root``, ``persons``, ``organisations`` or ``servers``."""

    __tablename__ = "pki_authorities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("pki_authorities.id"))
    subject: Mapped[str] = mapped_column(String(512))
    certificate: Mapped[bytes] = mapped_column(LargeBinary)  # DER
    sealed_key: Mapped[bytes] = mapped_column(LargeBinary)  # carnet.pki.keys.KeyVault blob, owner "ca:<name>"
    fingerprint_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    next_crl_number: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:  # no key material, even sealed
        return f"<pki.Authority {self.name}>"


class Certificate(Base):
    """A certificate issued by one of our authorities."""

    __tablename__ = "pki_certificates"
    __table_args__ = (Index("ix_pki_certificates_authority_id_revoked_at", "authority_id", "revoked_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(40), unique=True)  # lower-case hex, no leading zeros
    authority_id: Mapped[int] = mapped_column(ForeignKey("pki_authorities.id"))
    profile: Mapped[str] = mapped_column(String(16))  # smime | tls-server | tls-client | ca
    subject: Mapped[str] = mapped_column(String(512))  # RFC 4514 string
    common_name: Mapped[str] = mapped_column(String(128))
    emails: Mapped[list[str]] = mapped_column(JSON, default=list)
    dns_names: Mapped[list[str]] = mapped_column(JSON, default=list)
    national_id: Mapped[str | None] = mapped_column(String(64), index=True)
    key_type: Mapped[str] = mapped_column(String(16))
    certificate: Mapped[bytes] = mapped_column(LargeBinary)  # DER
    sealed_key: Mapped[bytes | None] = mapped_column(LargeBinary)  # owner "cert:<serial>"
    fingerprint_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    not_after: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revocation_reason: Mapped[str | None] = mapped_column(String(32))  # x509.ReasonFlags value
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:  # no key material, even sealed
        return f"<pki.Certificate serial={self.serial} profile={self.profile} cn={self.common_name!r}>"


class CertificateEmail(Base):
    """An rfc822Name of a certificate (lower case), indexed for :func:`carnet.pki.authority.find_by_email`."""

    __tablename__ = "pki_certificate_emails"

    certificate_id: Mapped[int] = mapped_column(
        ForeignKey("pki_certificates.id", ondelete="CASCADE"), primary_key=True
    )
    email: Mapped[str] = mapped_column(String(254), primary_key=True, index=True)


class Crl(Base):
    """A CRL an authority issued (RFC 5280 §5), kept as DER."""

    __tablename__ = "pki_crls"
    __table_args__ = (UniqueConstraint("authority_id", "number", name="uq_pki_crls_authority_id_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("pki_authorities.id"))
    number: Mapped[int] = mapped_column(Integer)
    this_update: Mapped[datetime] = mapped_column(UTCDateTime())
    next_update: Mapped[datetime] = mapped_column(UTCDateTime())
    der: Mapped[bytes] = mapped_column(LargeBinary)
