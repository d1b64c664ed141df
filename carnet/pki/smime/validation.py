"""Certificate path validation for S/MIME signers, with revocation from a local store and a result cache.

Implemented:

- RFC 5280 §6 path validation through ``pyhanko-certvalidator``, against the configured trust anchors only
  (never a system store), with intermediates from the :class:`TrustStore` and from the message (RFC 8551
  §2.4.2), at an injectable validation time.
- Revocation (RFC 5280 §6.3 CRLs, RFC 6960 OCSP) from the store only: nothing is fetched. Every certificate of
  the path below the anchor must be covered by a CRL or an OCSP response of the store, whether or not it
  declares a distribution point (pyhanko's ``require`` policy). When a certificate lacks usable (present and
  fresh) revocation information, the chain is validated again without revocation checks, so that a more
  fundamental failure (expired, no path…) is what gets reported; if that passes, ``hard_fail=True`` makes the
  chain ``UNTRUSTED`` with ``revocation="unknown"``, ``hard_fail=False`` makes it ``VALID`` with
  ``revocation="unknown"`` and a detail saying so. ``REVOKED`` only ever means an actual revocation entry
  (with an explicit ``at``, one dated before it: point-in-time validation).
- Trust-anchor validity: unlike pyhanko, an expired (or not yet valid) anchor fails the chain.
- S/MIME usage (RFC 8550 §4.4.2, §4.4.4): key usage, when present, must allow digitalSignature or
  nonRepudiation; extended key usage must contain emailProtection (or anyExtendedKeyUsage). carnet requires the
  EKU extension to be present (``require_eku=True``, stricter than RFC 8550, as IGC-Santé certificates carry it).
- Caches: parsed certificates keyed by DER (:class:`CertificateCache`), and validated chains keyed by
  ``(leaf fingerprint, extra certificate fingerprints, trust.generation)`` with their validity window (latest
  notBefore / thisUpdate, earliest notAfter / nextUpdate along the path), LRU-bounded. Only validations for
  "now" are stored (a point-in-time validation ignores later revocations, so it cannot answer for other
  times); they then answer any time inside the window, ``at`` included. Results that do not depend on time
  (no path to an anchor) are cached too; expired, revoked and similar failures are not.

Known limits inherited from pyhanko: a stored OCSP response is consulted only for a certificate whose
authorityInfoAccess names an OCSP responder (otherwise its CRL is needed); a CRL signed by a trust anchor that
is not self-signed cannot be validated, so configure root CAs as anchors.

Not implemented: AIA/CRL/OCSP fetching (the PKI component feeds the store), delta-CRL bookkeeping beyond
keeping one full and one delta CRL per issuer, certificate policies and name constraints beyond what
pyhanko enforces by default.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    DisallowedAlgorithmError,
    ExpiredError,
    InsufficientRevinfoError,
    InvalidCertificateError,
    NotYetValidError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.path import ValidationPath
from pyhanko_certvalidator.policy_decl import (
    NO_REVOCATION,
    REQUIRE_REVINFO,
    CertRevTrustPolicy,
)

from .asn1util import der_tlv
from .result import Status

_FAR_PAST = datetime.min.replace(tzinfo=UTC)
_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)
_ANY_EKU = x509.ObjectIdentifier("2.5.29.37.0")


class CertificateInfo:
    """One parsed certificate: the ``cryptography`` object and everything S/MIME code reads from it.

    ``national_id`` is the subject's ``serialNumber`` attribute (OID 2.5.4.5), else its ``UID`` (OID
    0.9.2342.19200300.100.1.1): where IGC-Santé person certificates put the professional's national identifier
    ("8" + RPPS, "0" + ADELI…). ``emails`` are the rfc822Name SANs; ``binding_emails`` the addresses used for
    the From binding (the SANs, or the subject emailAddress values when there is no rfc822Name SAN).
    """

    __slots__ = (
        "_asn1",
        "_issuer_and_serial",
        "binding_emails",
        "certificate",
        "common_name",
        "der",
        "emails",
        "fingerprint",
        "issuer",
        "issuer_der",
        "national_id",
        "not_after",
        "not_before",
        "public_key",
        "serial",
        "subject",
        "subject_der",
        "subject_key_identifier",
    )

    def __init__(self, der: bytes, certificate: x509.Certificate | None = None) -> None:
        """Parse ``der``; raises ``ValueError`` when the certificate or one of its extensions is malformed."""
        cert = certificate or x509.load_der_x509_certificate(der)
        self.der = der
        self.certificate = cert
        self.fingerprint = hashlib.sha256(der).hexdigest()
        self.subject = cert.subject.rfc4514_string()
        self.issuer = cert.issuer.rfc4514_string()
        self.subject_der = cert.subject.public_bytes()
        self.issuer_der = cert.issuer.public_bytes()
        self.serial = cert.serial_number
        self.not_before = cert.not_valid_before_utc
        self.not_after = cert.not_valid_after_utc
        self.public_key = cert.public_key()
        self.common_name = _first_attribute(cert.subject, NameOID.COMMON_NAME)
        self.national_id = _first_attribute(cert.subject, NameOID.SERIAL_NUMBER) or _first_attribute(
            cert.subject, NameOID.USER_ID
        )
        extensions = cert.extensions  # parses them all: a malformed extension raises here, once
        self.subject_key_identifier = _subject_key_identifier(extensions)
        self.emails = _san_emails(extensions)
        subject_emails = [
            str(attr.value).lower() for attr in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)
        ]
        #: RFC 8550 §3: rfc822Name SANs; the subject emailAddress only when there is no rfc822Name SAN.
        self.binding_emails = tuple(e.lower() for e in self.emails) or tuple(subject_emails)
        self._asn1: asn1_x509.Certificate | None = None
        self._issuer_and_serial: bytes | None = None

    @property
    def issuer_and_serial(self) -> bytes:
        """DER of the RFC 5652 §10.2.4 ``IssuerAndSerialNumber`` naming this certificate, as written in it."""
        if self._issuer_and_serial is None:
            tbs = self.asn1["tbs_certificate"]
            contents = tbs["issuer"].dump() + tbs["serial_number"].dump()
            self._issuer_and_serial = der_tlv(0x30, contents)
        return self._issuer_and_serial

    @property
    def asn1(self) -> asn1_x509.Certificate:
        """The ``asn1crypto`` form pyhanko needs, parsed on first use."""
        if self._asn1 is None:
            self._asn1 = asn1_x509.Certificate.load(self.der)
        return self._asn1


def _first_attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    attrs = name.get_attributes_for_oid(oid)
    return str(attrs[0].value) if attrs else ""


def _subject_key_identifier(extensions: x509.Extensions) -> bytes | None:
    try:
        return extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def _san_emails(extensions: x509.Extensions) -> tuple[str, ...]:
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(san.get_values_for_type(x509.RFC822Name))


class CertificateCache:
    """LRU map DER → :class:`CertificateInfo`, so a signer seen again is not parsed again."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = max(size, 16)
        self._entries: OrderedDict[bytes, CertificateInfo] = OrderedDict()

    def get(self, der: bytes) -> CertificateInfo:
        """The parsed certificate for ``der`` (``ValueError`` if it does not parse)."""
        info = self._entries.get(der)
        if info is not None:
            self._entries.move_to_end(der)
            return info
        info = CertificateInfo(der)
        self._store(der, info)
        return info

    def from_certificate(self, certificate: x509.Certificate) -> CertificateInfo:
        der = certificate.public_bytes(serialization.Encoding.DER)
        info = self._entries.get(der)
        if info is None:
            info = CertificateInfo(der, certificate)
            self._store(der, info)
        return info

    def _store(self, der: bytes, info: CertificateInfo) -> None:
        self._entries[der] = info
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True, slots=True)
class _RevInfo:
    """What the window computation needs from one CRL or OCSP response."""

    der: bytes
    parsed: asn1_crl.CertificateList | asn1_ocsp.OCSPResponse
    this_update: datetime
    next_update: datetime | None
    #: CRL: the issuer name (asn1crypto ``Name.hashable``); OCSP: the certificate serial numbers covered.
    issuer: str = ""
    serials: frozenset[int] = frozenset()


class TrustStore:
    """Trust anchors, known intermediates and locally held revocation information.

    ``generation`` increases on every change, which invalidates the :class:`ChainValidator` cache.
    """

    def __init__(
        self,
        anchors: Iterable[x509.Certificate],
        intermediates: Iterable[x509.Certificate] = (),
        crls: Iterable[bytes] = (),
        ocsp_responses: Iterable[bytes] = (),
        *,
        hard_fail: bool = True,
    ) -> None:
        self.anchors: tuple[x509.Certificate, ...] = tuple(anchors)
        self.intermediates: tuple[x509.Certificate, ...] = tuple(intermediates)
        self.hard_fail = hard_fail
        self.generation = 0
        der = serialization.Encoding.DER
        self._anchors_asn1 = [asn1_x509.Certificate.load(c.public_bytes(der)) for c in self.anchors]
        self._intermediates_asn1 = [asn1_x509.Certificate.load(c.public_bytes(der)) for c in self.intermediates]
        self._crls: dict[tuple[str, bool], _RevInfo] = {}
        self._ocsp: dict[bytes, _RevInfo] = {}
        for crl_der in crls:
            self.add_crl(crl_der)
        for response in ocsp_responses:
            self.add_ocsp_response(response)

    def add_crl(self, der: bytes) -> None:
        """Add a CRL (RFC 5280 §5), replacing an older full (or delta) CRL of the same issuer."""
        parsed = asn1_crl.CertificateList.load(der)
        tbs = parsed["tbs_cert_list"]
        next_update = tbs["next_update"].native
        info = _RevInfo(
            der=der,
            parsed=parsed,
            this_update=tbs["this_update"].native,
            next_update=next_update,
            issuer=tbs["issuer"].hashable,
        )
        key = (info.issuer, parsed.delta_crl_indicator_value is not None)
        current = self._crls.get(key)
        if current is not None and current.this_update > info.this_update:
            return
        self._crls[key] = info
        self.generation += 1

    def add_ocsp_response(self, der: bytes) -> None:
        """Add a successful OCSP response (RFC 6960 §4.2), replacing an older one for the same certificates."""
        parsed = asn1_ocsp.OCSPResponse.load(der)
        if parsed["response_status"].native != "successful":
            raise ValueError(f"OCSP response status is {parsed['response_status'].native!r}")
        responses = parsed.basic_ocsp_response["tbs_response_data"]["responses"]
        if len(responses) == 0:
            raise ValueError("OCSP response without SingleResponse")
        this_updates = [single["this_update"].native for single in responses]
        next_updates = [single["next_update"].native for single in responses if single["next_update"].native]
        info = _RevInfo(
            der=der,
            parsed=parsed,
            this_update=max(this_updates),
            next_update=min(next_updates) if next_updates else None,
            serials=frozenset(single["cert_id"]["serial_number"].native for single in responses),
        )
        key = responses[0]["cert_id"].dump()
        current = self._ocsp.get(key)
        if current is not None and current.this_update > info.this_update:
            return
        self._ocsp[key] = info
        self.generation += 1

    @property
    def crls(self) -> list[asn1_crl.CertificateList]:
        return [info.parsed for info in self._crls.values()]  # type: ignore[misc]

    @property
    def ocsp_responses(self) -> list[asn1_ocsp.OCSPResponse]:
        return [info.parsed for info in self._ocsp.values()]  # type: ignore[misc]

    def revinfo_window(self, path: Sequence[CertificateInfo]) -> tuple[datetime, datetime]:
        """Latest thisUpdate and earliest nextUpdate of the revocation information covering ``path``."""
        start, end = _FAR_PAST, _FAR_FUTURE
        issuers = {cert.asn1.issuer.hashable for cert in path}
        serials = {cert.serial for cert in path}
        relevant = [i for i in self._crls.values() if i.issuer in issuers]
        relevant += [i for i in self._ocsp.values() if i.serials & serials]
        for info in relevant:
            start = max(start, info.this_update)
            if info.next_update is not None:
                end = min(end, info.next_update)
        return start, end

    def validation_context(
        self, extra: Sequence[asn1_x509.Certificate], moment: datetime | None, *, check_revocation: bool
    ) -> ValidationContext:
        """A fresh pyhanko context: our anchors only, no fetching, the store's CRLs and OCSP responses."""
        policy = CertRevTrustPolicy(REQUIRE_REVINFO if check_revocation else NO_REVOCATION)
        return ValidationContext(
            trust_roots=list(self._anchors_asn1),
            other_certs=[*self._intermediates_asn1, *extra],
            moment=moment,
            allow_fetching=False,
            crls=self.crls,
            ocsps=self.ocsp_responses,
            revinfo_policy=policy,
        )


@dataclass(slots=True)
class ChainResult:
    """Outcome of validating one signer certificate (RFC 5280 §6 plus RFC 8550 §4.4 usage)."""

    status: Status
    chain: list[str] = field(default_factory=list)  # subjects, leaf first, trust anchor last
    chain_status: str = ""  # "ok" or why the path failed
    revocation: str = ""  # "good", "revoked", "unknown", "not_checked"
    detail: str = ""


@dataclass(frozen=True, slots=True)
class _CacheEntry:
    result: ChainResult
    start: datetime
    end: datetime


class ChainValidator:
    """Validates signer certificates against a :class:`TrustStore`, caching what validated (see module doc)."""

    def __init__(self, trust: TrustStore, *, cache_size: int = 10_000, require_eku: bool = True) -> None:
        self.trust = trust
        self.require_eku = require_eku
        self.certificates = CertificateCache(cache_size)
        self._cache: OrderedDict[tuple[str, tuple[str, ...], int], _CacheEntry] = OrderedDict()
        self._cache_size = max(cache_size, 1)
        self.hits = 0
        self.misses = 0

    async def validate(
        self, leaf: x509.Certificate, extra_certs: Sequence[x509.Certificate] = (), *, at: datetime | None = None
    ) -> ChainResult:
        """Validate ``leaf`` for S/MIME signing at ``at`` (default: now), using ``extra_certs`` as intermediates."""
        infos = [self.certificates.from_certificate(cert) for cert in extra_certs]
        return await self.validate_info(self.certificates.from_certificate(leaf), infos, at=at)

    async def validate_info(
        self, leaf: CertificateInfo, extra: Sequence[CertificateInfo] = (), *, at: datetime | None = None
    ) -> ChainResult:
        """:meth:`validate` on already parsed certificates (the verification hot path)."""
        moment = _aware(at) if at is not None else datetime.now(UTC)
        extra_key = tuple(sorted({cert.fingerprint for cert in extra if cert is not leaf}))
        key = (leaf.fingerprint, extra_key, self.trust.generation)
        entry = self._cache.get(key)
        if entry is not None and entry.start <= moment <= entry.end:
            self._cache.move_to_end(key)
            self.hits += 1
            return entry.result
        self.misses += 1
        result, window = await self._validate(leaf, extra, at=_aware(at) if at is not None else None, now=moment)
        # A point-in-time result (explicit ``at``) ignores revocations dated after ``at``: it must not answer
        # for other times. Results computed for "now" count every revocation entry, so they hold for any time
        # in their window; "no path" holds at any time.
        if window is not None and (at is None or window == (_FAR_PAST, _FAR_FUTURE)):
            self._cache[key] = _CacheEntry(result, *window)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result

    async def _validate(
        self, leaf: CertificateInfo, extra: Sequence[CertificateInfo], *, at: datetime | None, now: datetime
    ) -> tuple[ChainResult, tuple[datetime, datetime] | None]:
        extra_asn1 = [cert.asn1 for cert in extra if cert is not leaf]
        revocation = "good"
        try:
            path = await self._path(leaf, extra_asn1, at, check_revocation=True)
        except InsufficientRevinfoError as exc:
            # Missing revocation data is reported only when nothing more fundamental (expiry, no path) is wrong:
            # pyhanko checks revocation from the anchor down, before it reaches the leaf's validity.
            try:
                path = await self._path(leaf, extra_asn1, at, check_revocation=False)
            except (ValidationError, PathBuildingError) as again:
                return self._map_error(again)
            if self.trust.hard_fail:
                detail = f"revocation status unknown under hard-fail: {exc.failure_msg}"
                return self._failure(Status.UNTRUSTED, detail, exc, "unknown"), None
            revocation = "unknown"
        except (ValidationError, PathBuildingError) as exc:
            return self._map_error(exc)
        chain = [self.certificates.get(cert.dump()) for cert in reversed(list(path.iter_certs(include_root=True)))]
        subjects = [cert.subject for cert in chain]
        anchor = chain[-1]
        if now < anchor.not_before or now > anchor.not_after:
            status = Status.NOT_YET_VALID if now < anchor.not_before else Status.EXPIRED
            detail = f"trust anchor {anchor.subject} is not valid at {now.isoformat()}"
            return ChainResult(status, subjects, detail, revocation, detail), None
        start = max(cert.not_before for cert in chain)
        end = min(cert.not_after for cert in chain)
        if revocation == "good":
            rev_start, rev_end = self.trust.revinfo_window(chain[:-1])
            start, end = max(start, rev_start), min(end, rev_end)
        usage_problem = check_usage(leaf.certificate, require_eku=self.require_eku)
        if usage_problem:
            return ChainResult(Status.WRONG_USAGE, subjects, "ok", revocation, usage_problem), (start, end)
        detail = "" if revocation == "good" else "no revocation information for the chain (soft-fail)"
        return ChainResult(Status.VALID, subjects, "ok", revocation, detail), (start, end)

    async def _path(
        self, leaf: CertificateInfo, extra: list[asn1_x509.Certificate], at: datetime | None, *, check_revocation: bool
    ) -> ValidationPath:
        context = self.trust.validation_context(extra, at, check_revocation=check_revocation)
        return await CertificateValidator(leaf.asn1, validation_context=context).async_validate_path()

    def _map_error(self, exc: Exception) -> tuple[ChainResult, tuple[datetime, datetime] | None]:
        """pyhanko exception → (result, cache window or None)."""
        message = getattr(exc, "failure_msg", None) or str(exc) or type(exc).__name__
        if isinstance(exc, RevokedError):
            return self._failure(Status.REVOKED, message, exc, "revoked"), None
        if isinstance(exc, ExpiredError):
            return self._failure(Status.EXPIRED, message, exc, "not_checked"), None
        if isinstance(exc, NotYetValidError):
            return self._failure(Status.NOT_YET_VALID, message, exc, "not_checked"), None
        if isinstance(exc, DisallowedAlgorithmError):
            return self._failure(Status.UNTRUSTED, f"disallowed algorithm: {message}", exc, "not_checked"), None
        if isinstance(exc, PathBuildingError | InvalidCertificateError):
            # No path to a configured anchor: true at any time until the store changes.
            detail = f"no path to a trust anchor: {message}"
            return self._failure(Status.UNTRUSTED, detail, exc, "not_checked"), (_FAR_PAST, _FAR_FUTURE)
        return self._failure(Status.UNTRUSTED, message, exc, "not_checked"), None

    def _failure(self, status: Status, detail: str, exc: Exception, revocation: str) -> ChainResult:
        chain: list[str] = []
        if isinstance(exc, PathValidationError):
            certs = reversed(list(exc.original_path.iter_certs(include_root=True)))
            chain = [self.certificates.get(cert.dump()).subject for cert in certs]
        return ChainResult(status, chain, detail, revocation, detail)

    def cache_clear(self) -> None:
        self._cache.clear()


def check_usage(certificate: x509.Certificate, *, require_eku: bool = True) -> str:
    """RFC 8550 §4.4.2 / §4.4.4 signing usage of an end-entity certificate; ``""`` when fine, else why not."""
    extensions = certificate.extensions
    try:
        key_usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        key_usage = None
    if key_usage is not None and not (key_usage.digital_signature or key_usage.content_commitment):
        return "key usage allows neither digitalSignature nor nonRepudiation"
    try:
        eku = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return "no extended key usage extension (emailProtection required)" if require_eku else ""
    if ExtendedKeyUsageOID.EMAIL_PROTECTION not in eku and _ANY_EKU not in eku:
        return "extended key usage lacks emailProtection"
    return ""


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
