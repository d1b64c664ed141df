"""Certificates of recipients at other operators of the trust space, fetched from their directories.

- The operator of the recipient's domain must be in the trust space (:mod:`carnet.directory.trustspace`); any
  other domain is answered ``untrusted_domain`` without a network request.
- The request goes over HTTPS to ``<directory URL>/certificates/<address>`` (the endpoint of
  :mod:`carnet.directory.http`). TLS is validated against that operator's CA bundle only — an
  :class:`ssl.SSLContext` built from it, never the system store (RFC 9525 host name check; TLS 1.2 minimum). A
  directory URL whose host is an IP literal is checked against the operator's domain name instead (sent as SNI).
- Each returned certificate must name the address (rfc822Name, RFC 5280 §4.2.1.6), be valid now, allow
  emailProtection when it has an EKU (RFC 8550 §4.4.4), and chain, signature by signature, to one of the operator's
  CAs. Revocation is left to the S/MIME validator that uses the certificates (CRL/OCSP, RFC 5280 §6.3).
- Answers are cached in ``dir_remote_certificates``: certificates found for :data:`FOUND_TTL` (never past the first
  expiry), "unknown address"/"no certificate" for :data:`NEGATIVE_TTL`; failures are not cached. A cached answer is
  validated again against the operator's current CAs before use.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import ssl
from datetime import datetime, timedelta
from urllib.parse import quote, urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from carnet.config import Settings
from carnet.db import Database, utcnow
from carnet.directory import store
from carnet.directory.certificates import CertificateLookup, LookupStatus
from carnet.directory.models import RemoteCertificate
from carnet.directory.trustspace import OperatorInfo, operator_for

log = logging.getLogger(__name__)

FOUND_TTL = timedelta(hours=1)
NEGATIVE_TTL = timedelta(minutes=10)
TIMEOUT = 10.0
MAX_ANSWER = 1024 * 1024
MAX_PATH = 5
_PROBLEM_STATUS = {
    "urn:carnet:problem:unknown-address": LookupStatus.UNKNOWN_ADDRESS,
    "urn:carnet:problem:no-certificate": LookupStatus.NO_CERTIFICATE,
}


def tls_context(operator: OperatorInfo) -> ssl.SSLContext:
    """A client TLS context trusting only ``operator``'s CAs."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=operator.ca_bundle_pem.decode())
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def check_certificate(
    cert: x509.Certificate,
    intermediates: list[x509.Certificate],
    anchors: list[x509.Certificate],
    address: str,
    now: datetime,
) -> str | None:
    """Why ``cert`` may not be used for ``address`` (None when it may)."""
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return f"certificate {cert.serial_number:x} is not valid now"
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        emails = [e.lower() for e in names.get_values_for_type(x509.RFC822Name)]
    except x509.ExtensionNotFound:
        emails = []
    if address not in emails:
        return f"certificate {cert.serial_number:x} does not name {address}"
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if (
            ExtendedKeyUsageOID.EMAIL_PROTECTION not in usages
            and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usages
        ):
            return f"certificate {cert.serial_number:x} is not for e-mail protection"
    except x509.ExtensionNotFound:
        pass
    current = cert
    for _ in range(MAX_PATH):
        for anchor in anchors:
            if anchor.subject == current.issuer and _signed_by(current, anchor):
                return None
        parent = next(
            (
                c
                for c in intermediates
                if c.subject == current.issuer
                and _signed_by(current, c)
                and _is_ca(c)
                and c.not_valid_before_utc <= now <= c.not_valid_after_utc
            ),
            None,
        )
        if parent is None or parent == current:
            break
        current = parent
    return f"certificate {cert.serial_number:x} does not chain to the operator's CAs"


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _usable(
    operator: OperatorInfo,
    address: str,
    certificates: list[x509.Certificate],
    chain: list[x509.Certificate],
    now: datetime,
) -> tuple[list[x509.Certificate], list[str]]:
    anchors = list(operator.ca_certificates)
    good, problems = [], []
    for cert in certificates:
        problem = check_certificate(cert, chain + anchors, anchors, address, now)
        if problem is None:
            good.append(cert)
        else:
            problems.append(problem)
    good.sort(key=lambda c: c.not_valid_before_utc, reverse=True)
    return good, problems


async def fetch(
    operator: OperatorInfo, address: str
) -> tuple[LookupStatus, list[x509.Certificate], list[x509.Certificate], str]:
    """Ask ``operator``'s directory for ``address``: (status, certificates, chain, detail)."""
    if not operator.directory_url:
        return LookupStatus.UNREACHABLE, [], [], f"{operator.domain} publishes no directory URL"
    url = f"{operator.directory_url}/certificates/{quote(address, safe='@')}"
    host = urlsplit(url).hostname or ""
    extensions = {"sni_hostname": operator.domain} if _is_ip(host) else {}
    try:
        async with (
            httpx.AsyncClient(
                verify=tls_context(operator), timeout=TIMEOUT, follow_redirects=False, trust_env=False
            ) as client,
            client.stream("GET", url, headers={"Accept": "application/json"}, extensions=extensions) as response,
        ):
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER:
                    return LookupStatus.UNREACHABLE, [], [], f"{url}: answer larger than {MAX_ANSWER} bytes"
    except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
        return LookupStatus.UNREACHABLE, [], [], f"{url}: {type(exc).__name__}: {exc}"
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = {}
    if response.status_code == 404 and isinstance(data, dict) and data.get("type") in _PROBLEM_STATUS:
        return _PROBLEM_STATUS[data["type"]], [], [], str(data.get("detail") or data.get("title") or "")
    if response.status_code != 200 or not isinstance(data, dict):
        return LookupStatus.UNREACHABLE, [], [], f"{url}: HTTP {response.status_code}"
    try:
        certificates = [x509.load_pem_x509_certificate(item["pem"].encode()) for item in data.get("certificates", [])]
        chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in data.get("chain", [])]
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        return LookupStatus.INVALID, [], [], f"{url}: unreadable certificates ({exc})"
    if not certificates:
        return LookupStatus.NO_CERTIFICATE, [], [], "the directory returned no certificate"
    return LookupStatus.FOUND, certificates, chain, ""


def _pem(certificates: list[x509.Certificate]) -> str:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates).decode()


async def remote_certificates(
    db: Database, settings: Settings, address: str, *, now: datetime | None = None, refresh: bool = False
) -> CertificateLookup:
    """Certificates of a remote ``address`` (normalised), from the cache or the operator's directory."""
    now = now or utcnow()
    domain = address.rpartition("@")[2]
    operator = await operator_for(db, domain)
    if operator is None:
        return CertificateLookup(
            address, LookupStatus.UNTRUSTED_DOMAIN, source="remote", detail=f"{domain} is not in the trust space"
        )
    if not refresh:
        async with db.session() as session:
            cached = await store.cached_remote(session, address)
        if cached is not None and cached.expires_at > now and cached.domain == domain:
            status = LookupStatus(cached.status)
            if status is not LookupStatus.FOUND:
                return CertificateLookup(
                    address,
                    status,
                    source="cache",
                    detail=cached.detail,
                    legacy_crypto=operator.legacy_crypto,
                    fetched_at=cached.fetched_at,
                )
            everything = x509.load_pem_x509_certificates(cached.certificates_pem.encode())
            leaves = [c for c in everything if not _is_ca(c)]
            chain = [c for c in everything if _is_ca(c)]
            good, _problems = _usable(operator, address, leaves, chain, now)
            if good:
                return CertificateLookup(
                    address,
                    LookupStatus.FOUND,
                    tuple(good),
                    tuple(chain),
                    source="cache",
                    legacy_crypto=operator.legacy_crypto,
                    fetched_at=cached.fetched_at,
                )
    status, certificates, chain, detail = await fetch(operator, address)
    good: list[x509.Certificate] = []
    if status is LookupStatus.FOUND:
        good, problems = _usable(operator, address, certificates, chain, now)
        if not good:
            status, detail = LookupStatus.INVALID, "; ".join(problems)
    result = CertificateLookup(
        address,
        status,
        tuple(good),
        tuple(chain),
        source="remote",
        detail=detail,
        legacy_crypto=operator.legacy_crypto,
        fetched_at=now,
    )
    if status in (LookupStatus.FOUND, LookupStatus.UNKNOWN_ADDRESS, LookupStatus.NO_CERTIFICATE):
        ttl = NEGATIVE_TTL
        if good:
            ttl = min(FOUND_TTL, min(c.not_valid_after_utc for c in good) - now)
        async with db.transaction() as session:
            await store.put_remote(
                session,
                RemoteCertificate(
                    address=address,
                    domain=domain,
                    status=status.value,
                    certificates_pem=_pem(good + chain),
                    detail=detail[:500],
                    fetched_at=now,
                    expires_at=now + ttl,
                ),
            )
    if status is not LookupStatus.FOUND:
        log.info("no certificate for %s: %s (%s)", address, status.value, detail)
    return result
