"""The trust space: the operators carnet federates with, and what it publishes about itself.

An operator is a mail domain with a name, the CA certificates that issue its users' and servers' certificates (the
CA bundle), its SMTP relay endpoints, its certificate directory URL and whether it needs legacy cryptography
(RSAES-PKCS1-v1_5 and AES-CBC EnvelopedData instead of OAEP and AuthEnvelopedData).

Publication, in the shape of the MSSanté "liste blanche" (ANS, espace de confiance MSSanté)::

    <ListeBlanche xmlns:carnet="urn:carnet:trust:1" carnet:emetteur="a.example">
      <DateDeGeneration>2026-01-01T00:00:00Z</DateDeGeneration>
      <Domaine><Nom>a.example</Nom><carnet:Operateur>a.example</carnet:Operateur>
        <carnet:Annuaire>https://a.example/directory</carnet:Annuaire><carnet:Relais>a.example:25</carnet:Relais>
        <carnet:ChiffrementHerite>false</carnet:ChiffrementHerite></Domaine>
      <Domaine><Nom>b.example</Nom>…</Domaine>
    </ListeBlanche>

``ListeBlanche``/``DateDeGeneration``/``Domaine``/``Nom`` are the national format; the ``carnet:`` elements (in
their own namespace, ignored by readers of the national format) say which operator a domain belongs to and where
its directory and relays are. The trust bundle is a certs-only PKCS#7 SignedData (RFC 2315 §9 / RFC 5652 §5 with no
signers, ".p7b") of our root and issuing CAs. XML is parsed with defusedxml (no entities, no DTD).

Importing a peer's publication trusts the publisher's own domains with the peer's bundle; the other domains it
lists are reported but not trusted (trust is not transitive) unless ``transitive=True`` — meant for a list issued
by a trust-space authority, as the national whitelist is. Only these CAs are trusted, never the system store:
:func:`trust_anchors` is what the S/MIME gateway and the relay's TLS validate with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element, SubElement, tostring

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from carnet.config import Settings
from carnet.db import Database, utcnow
from carnet.directory import store
from carnet.directory.addresses import patient_domain
from carnet.directory.models import Operator
from carnet.directory.records import DirectoryError, NotFound

NS = "urn:carnet:trust:1"
_Q = f"{{{NS}}}"
MAX_DOCUMENT = 4 * 1024 * 1024
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_ENDPOINT = re.compile(r"[A-Za-z0-9.-]{1,253}:\d{1,5}")


class TrustError(DirectoryError, ValueError):
    """A whitelist or bundle that cannot be used, or an operator entry that is not acceptable."""


@dataclass(frozen=True, slots=True)
class OperatorInfo:
    domain: str
    name: str
    ca_certificates: tuple[x509.Certificate, ...]
    relay_endpoints: tuple[str, ...]
    directory_url: str | None
    legacy_crypto: bool
    source: str
    updated_at: datetime

    @property
    def ca_bundle_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.ca_certificates)


@dataclass(slots=True)
class ImportReport:
    publisher: str
    generated: datetime | None
    imported: list[str] = field(default_factory=list)
    not_trusted: list[str] = field(default_factory=list)
    ca_subjects: list[str] = field(default_factory=list)


# Validation ----------------------------------------------------------------------------------------------------


def validate_domain(value: str) -> str:
    domain = value.strip().lower().rstrip(".")
    labels = domain.split(".")
    if len(domain) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise TrustError(f"{value!r} is not a domain name")
    return domain


def validate_directory_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment or parts.username:
        raise TrustError(f"directory URL {value!r} must be an https:// URL without query or credentials")
    return value.strip().rstrip("/")


def validate_endpoints(values: list[str] | tuple[str, ...]) -> list[str]:
    endpoints = []
    for value in values:
        if not _ENDPOINT.fullmatch(value.strip()) or not 0 < int(value.rsplit(":", 1)[1]) < 65536:
            raise TrustError(f"relay endpoint {value!r} must be host:port")
        endpoints.append(value.strip().lower())
    return endpoints


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Certificates from a PKCS#7 bundle (DER or PEM) or from concatenated PEM certificates."""
    data = data.strip()
    try:
        if data.startswith(b"-----BEGIN PKCS7-----"):
            certificates = pkcs7.load_pem_pkcs7_certificates(data)
        elif data.startswith(b"-----BEGIN"):
            certificates = x509.load_pem_x509_certificates(data)
        else:
            certificates = pkcs7.load_der_pkcs7_certificates(data)
    except ValueError as exc:
        raise TrustError(f"the CA bundle is not a PKCS#7 bundle or PEM certificates ({exc})") from None
    if not certificates:
        raise TrustError("the CA bundle holds no certificate")
    return certificates


def check_ca_bundle(certificates: list[x509.Certificate]) -> list[x509.Certificate]:
    """Every certificate must be a CA (RFC 5280 §4.2.1.9) and at least one a self-signed root."""
    for cert in certificates:
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise TrustError(f"{cert.subject.rfc4514_string()} in the CA bundle is not a CA certificate")
    if not any(cert.issuer == cert.subject for cert in certificates):
        raise TrustError("the CA bundle holds no root (self-signed) certificate")
    unique = {cert.fingerprint(hashes.SHA256()): cert for cert in certificates}
    return list(unique.values())


def _pem(certificates: list[x509.Certificate]) -> str:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates).decode()


def _info(row: Operator) -> OperatorInfo:
    return OperatorInfo(
        domain=row.domain,
        name=row.name,
        ca_certificates=tuple(x509.load_pem_x509_certificates(row.ca_bundle_pem.encode())),
        relay_endpoints=tuple(row.relay_endpoints or ()),
        directory_url=row.directory_url,
        legacy_crypto=row.legacy_crypto,
        source=row.source,
        updated_at=row.updated_at,
    )


# Operators -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _OperatorValues:
    domain: str
    name: str
    ca_bundle_pem: str
    relay_endpoints: list[str]
    directory_url: str | None
    legacy_crypto: bool
    source: str


def _checked(
    settings: Settings,
    *,
    domain: str,
    name: str,
    ca_bundle: bytes,
    relay_endpoints: list[str],
    directory_url: str | None,
    legacy_crypto: bool,
    source: str,
) -> _OperatorValues:
    domain = validate_domain(domain)
    if domain in (settings.domain, patient_domain(settings.domain)):
        raise TrustError(f"{domain} is this instance's own domain")
    name = " ".join(name.split())
    if not name or len(name) > 200 or not name.isprintable():
        raise TrustError("the operator name must be 1 to 200 printable characters")
    certificates = check_ca_bundle(load_certificates(ca_bundle))
    return _OperatorValues(
        domain,
        name,
        _pem(certificates),
        validate_endpoints(relay_endpoints),
        validate_directory_url(directory_url) if directory_url else None,
        legacy_crypto,
        source,
    )


async def _upsert(db: Database, values: list[_OperatorValues]) -> list[OperatorInfo]:
    """Write operator entries in one transaction: all of them or none."""
    now = utcnow()
    out = []
    async with db.transaction() as session:
        for v in values:
            row = await store.operator_by_domain(session, v.domain)
            if row is None:
                row = Operator(domain=v.domain, added_at=now)
                session.add(row)
            row.name, row.ca_bundle_pem, row.relay_endpoints = v.name, v.ca_bundle_pem, v.relay_endpoints
            row.directory_url, row.legacy_crypto, row.source, row.updated_at = (
                v.directory_url,
                v.legacy_crypto,
                v.source,
                now,
            )
            await session.flush()
            out.append(_info(row))
    return out


async def add_operator(
    db: Database,
    settings: Settings,
    *,
    domain: str,
    name: str,
    ca_bundle: bytes,
    relay_endpoints: list[str] | tuple[str, ...] = (),
    directory_url: str | None = None,
    legacy_crypto: bool = False,
    source: str = "manual",
) -> OperatorInfo:
    """Add or update an operator of the trust space."""
    values = _checked(
        settings,
        domain=domain,
        name=name,
        ca_bundle=ca_bundle,
        relay_endpoints=list(relay_endpoints),
        directory_url=directory_url,
        legacy_crypto=legacy_crypto,
        source=source,
    )
    return (await _upsert(db, [values]))[0]


async def remove_operator(db: Database, domain: str) -> None:
    async with db.transaction() as session:
        if not await store.delete_operator(session, validate_domain(domain)):
            raise NotFound(f"{domain} is not in the trust space")


async def list_operators(db: Database) -> list[OperatorInfo]:
    async with db.session() as session:
        return [_info(row) for row in await store.operators(session)]


async def operator_for(db: Database, domain: str) -> OperatorInfo | None:
    """The operator serving ``domain`` (exact match), or None when the domain is not in the trust space."""
    async with db.session() as session:
        row = await store.operator_by_domain(session, domain.strip().lower().rstrip("."))
        return _info(row) if row is not None else None


async def our_ca_certificates(db: Database) -> list[x509.Certificate]:
    """Our root and issuing CAs (root first)."""
    from carnet.pki.authority import authority_certificates

    return list((await authority_certificates(db)).values())


async def trust_anchors(db: Database, settings: Settings) -> list[x509.Certificate]:
    """The only CAs to trust for relay TLS and signer validation: our root and every operator's CA certificates
    (never the system store). Duplicates removed, ours first."""
    from carnet.pki.authority import authority_certificates

    anchors = [(await authority_certificates(db))["root"]]
    for operator in await list_operators(db):
        anchors.extend(operator.ca_certificates)
    unique = {cert.fingerprint(hashes.SHA256()): cert for cert in anchors}
    return list(unique.values())


# Publication -----------------------------------------------------------------------------------------------------


def default_directory_url(domain: str) -> str:
    return f"https://{domain}/directory"


async def export_whitelist(
    db: Database,
    settings: Settings,
    *,
    name: str | None = None,
    directory_url: str | None = None,
    relay_endpoints: list[str] | None = None,
    now: datetime | None = None,
) -> bytes:
    """Our "liste blanche": our own domains (with our operator entry), then every domain we trust."""
    url = validate_directory_url(directory_url) if directory_url else default_directory_url(settings.domain)
    relays = validate_endpoints(relay_endpoints) if relay_endpoints else [f"{settings.domain}:25"]
    root = Element("ListeBlanche", {f"{_Q}emetteur": settings.domain})
    generated = (now or utcnow()).astimezone(UTC).replace(microsecond=0)
    SubElement(root, "DateDeGeneration").text = generated.strftime("%Y-%m-%dT%H:%M:%SZ")
    own = name or settings.domain
    for domain in (settings.domain, patient_domain(settings.domain)):
        _domain_element(root, domain, own, url, relays, legacy=False)
    for operator in await list_operators(db):
        _domain_element(
            root,
            operator.domain,
            operator.name,
            operator.directory_url,
            list(operator.relay_endpoints),
            legacy=operator.legacy_crypto,
        )
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + tostring(root, encoding="unicode").encode() + b"\n"


def _domain_element(
    root: Element, domain: str, operator: str, url: str | None, relays: list[str], *, legacy: bool
) -> None:
    element = SubElement(root, "Domaine")
    SubElement(element, "Nom").text = domain
    SubElement(element, f"{_Q}Operateur").text = operator
    if url:
        SubElement(element, f"{_Q}Annuaire").text = url
    for relay in relays:
        SubElement(element, f"{_Q}Relais").text = relay
    SubElement(element, f"{_Q}ChiffrementHerite").text = "true" if legacy else "false"


async def export_bundle(db: Database) -> bytes:
    """Our trust bundle: root and issuing CAs as a certs-only PKCS#7 (DER, ``application/pkcs7-mime``)."""
    return pkcs7.serialize_certificates(await our_ca_certificates(db), serialization.Encoding.DER)


@dataclass(frozen=True, slots=True)
class WhitelistEntry:
    domain: str
    operator: str | None
    directory_url: str | None
    relays: tuple[str, ...]
    legacy: bool


@dataclass(frozen=True, slots=True)
class Whitelist:
    publisher: str | None
    generated: datetime | None
    entries: tuple[WhitelistEntry, ...]


def parse_whitelist(document: bytes) -> Whitelist:
    """Parse a "liste blanche" (ours or the national one) safely (defusedxml)."""
    if len(document) > MAX_DOCUMENT:
        raise TrustError(f"the whitelist is larger than {MAX_DOCUMENT} bytes")
    try:
        root = SafeET.fromstring(document)
    except (SafeET.ParseError, DefusedXmlException) as exc:
        raise TrustError(f"the whitelist is not acceptable XML ({exc})") from None
    if root.tag != "ListeBlanche":
        raise TrustError(f"the whitelist's root element is {root.tag!r}, expected ListeBlanche")
    generated = None
    date_text = (root.findtext("DateDeGeneration") or "").strip()
    if date_text:
        try:
            generated = datetime.fromisoformat(date_text.replace("Z", "+00:00"))
        except ValueError:
            raise TrustError(f"DateDeGeneration {date_text!r} is not an ISO 8601 date") from None
        if generated.tzinfo is None:
            generated = generated.replace(tzinfo=UTC)
    entries = []
    for element in root.findall("Domaine"):
        domain = validate_domain(element.findtext("Nom") or "")
        url = (element.findtext(f"{_Q}Annuaire") or "").strip() or None
        entries.append(
            WhitelistEntry(
                domain=domain,
                operator=(element.findtext(f"{_Q}Operateur") or "").strip() or None,
                directory_url=validate_directory_url(url) if url else None,
                relays=tuple(validate_endpoints([(r.text or "").strip() for r in element.findall(f"{_Q}Relais")])),
                legacy=(element.findtext(f"{_Q}ChiffrementHerite") or "").strip().lower() == "true",
            )
        )
    if not entries:
        raise TrustError("the whitelist lists no Domaine")
    publisher = root.get(f"{_Q}emetteur")
    return Whitelist(validate_domain(publisher) if publisher else None, generated, tuple(entries))


async def import_peer(
    db: Database,
    settings: Settings,
    whitelist: bytes,
    bundle: bytes,
    *,
    publisher: str | None = None,
    directory_url: str | None = None,
    transitive: bool = False,
) -> ImportReport:
    """Trust a peer from its whitelist and trust bundle (see the module docstring for what is trusted)."""
    parsed = parse_whitelist(whitelist)
    certificates = check_ca_bundle(load_certificates(bundle))
    issuer = validate_domain(publisher) if publisher else parsed.publisher
    if issuer is None and not transitive:
        raise TrustError("the whitelist does not say which domain published it (carnet:emetteur): name it")
    report = ImportReport(
        publisher=issuer or "",
        generated=parsed.generated,
        ca_subjects=[c.subject.rfc4514_string() for c in certificates],
    )
    publisher_entry = next((e for e in parsed.entries if e.domain == issuer), None)
    own_name = (publisher_entry.operator if publisher_entry else None) or issuer
    planned: list[_OperatorValues] = []
    for entry in parsed.entries:
        ours = entry.domain in (settings.domain, patient_domain(settings.domain))
        belongs = entry.domain == issuer or (own_name is not None and entry.operator == own_name)
        if ours or not (belongs or transitive):
            if not ours:
                report.not_trusted.append(entry.domain)
            continue
        url = entry.directory_url
        if directory_url and belongs:
            url = validate_directory_url(directory_url)
        planned.append(
            _checked(
                settings,
                domain=entry.domain,
                name=entry.operator or own_name or entry.domain,
                ca_bundle=_pem(certificates).encode(),
                relay_endpoints=list(entry.relays),
                directory_url=url or default_directory_url(entry.domain),
                legacy_crypto=entry.legacy,
                source="whitelist",
            )
        )
        report.imported.append(entry.domain)
    if not planned:
        raise TrustError(f"the whitelist lists no domain of {issuer or 'its publisher'} to import")
    await _upsert(db, planned)
    return report
