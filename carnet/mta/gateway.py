"""The S/MIME gateway: every message crosses it, in both directions (RFC 8551, RFC 5652, RFC 8550).

Outbound (submission, trusted networks, carnet's own DSNs and MDNs):

- a message the client left unsigned is signed on the author's behalf with the author mailbox's key, held by the
  platform (:func:`carnet.pki.authority.load_credential`), after the author's certificate was validated against
  the trust store (a revoked or expired certificate signs nothing);
- a message the client signed is verified (:func:`carnet.pki.smime.open_message`, signer ↔ From binding) and must
  be ``valid``; it is then kept byte for byte;
- mail for another operator is encrypted to each recipient's certificate at delivery time (:meth:`Gateway.encrypt`,
  AES-256-GCM AuthEnvelopedData with RSAES-OAEP; AES-256-CBC EnvelopedData only for operators marked legacy).

Inbound (relay from the trust space) and local delivery: the message is decrypted with the recipient mailbox's
key when enveloped, then verified; the outcome is the stored verification result (``SmimeResult.to_dict()``) that
becomes the ``Carnet-Signature`` header (:mod:`carnet.mta.headers`). What happens to each status is the
configured inbound policy (:mod:`carnet.mta.policy`).

Trust: our root and every trust-space operator's root are the anchors, their issuing CAs the intermediates, never
the system store. Revocation comes from CRLs: ours from the database, the operators' fetched over HTTPS from their
``/pki/crl/`` endpoint next to their directory, or from the distribution points their CA certificates name
(TLS checked against that operator's CAs only). The store is rebuilt when the trust space changes and its CRLs
refreshed every :data:`REFRESH_SECONDS`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID

from carnet.config import Settings
from carnet.db import Database, utcnow
from carnet.directory.records import MailboxInfo
from carnet.mta.mdn import report_type
from carnet.pki.smime import (
    ChainValidator,
    DecryptError,
    DecryptionKey,
    SignerCredential,
    SignerInfo,
    SmimeResult,
    Status,
    TrustStore,
    decrypt_message,
    encrypt_message,
    is_enveloped,
    open_message,
    sign_message,
)
from carnet.pki.smime.envelope import MalformedEnvelopeError

log = logging.getLogger(__name__)

#: Seconds between two rebuilds of the trust store (trust-space changes, CRL refresh).
REFRESH_SECONDS: Final = 300.0
#: A signature whose revocation status is unknown makes the gateway fetch the peers' CRLs again, at most this often.
REFETCH_SECONDS: Final = 10.0
CRL_TIMEOUT: Final = 10.0
_CARNET_CA_NAMES: Final = ("root", "persons", "organisations", "servers")
_NO_INTEGRITY: Final = (
    "no integrity protection: relayed encrypted with {algorithm} (EnvelopedData); the ciphertext could have been "
    "altered without detection (RFC 8551 §2.7 recommends AuthEnvelopedData with AES-GCM)"
)


class GatewayRefusal(Exception):
    """The gateway will not let the message through; ``reply`` is the SMTP answer."""

    def __init__(self, code: int, status: str, text: str) -> None:
        super().__init__(text)
        self.code, self.status, self.text = code, status, text

    def reply(self) -> str:
        return f"{self.code} {self.status} {self.text}"


@dataclass(slots=True)
class Opened:
    """An inbound message for one recipient: what to store and the verification result."""

    raw: bytes
    result: SmimeResult
    #: ``report-type`` when the innermost content is a multipart/report (a DSN or an MDN), else None.
    report: str | None = None


@dataclass(slots=True)
class Outbound:
    """A message ready to leave its author: signed (by the client or by us) and its verification result."""

    raw: bytes
    result: SmimeResult
    signed_here: bool
    report: str | None = None
    #: ``result.to_dict()``, when the gateway already has it.
    signature: dict[str, Any] | None = None


@dataclass(slots=True)
class _SignerCache:
    credential: SignerCredential
    validator: ChainValidator
    leaf: Any  # CertificateInfo of the credential's certificate, and of its chain
    extra: list[Any]
    chain: Any = None  # the ChainResult ``result`` was built from
    result: SmimeResult | None = None
    data: dict[str, Any] = field(default_factory=dict)


class Gateway:
    """Signing, verification, decryption and encryption for one process, with its key and trust caches."""

    def __init__(self, db: Database, settings: Settings, *, key_cache_size: int = 4096) -> None:
        self.db = db
        self.settings = settings
        self._credentials: OrderedDict[str, SignerCredential] = OrderedDict()
        self._cache_size = key_cache_size
        self._validator: ChainValidator | None = None
        self._built_at = 0.0
        self._operators_seen: tuple[tuple[str, datetime], ...] = ()
        self._remote_crls: dict[str, bytes] = {}
        self._crls_missing = False
        self._lock = asyncio.Lock()
        #: Per (credential, From): its parsed certificates, and the signer result last built and its dict.
        self._signer_results: dict[tuple[int, str], _SignerCache] = {}

    # Trust ---------------------------------------------------------------------------------------------------

    async def validator(self) -> ChainValidator:
        """The chain validator, rebuilt when the trust space changed or :data:`REFRESH_SECONDS` passed."""
        if self._validator is not None and time.monotonic() - self._built_at < REFRESH_SECONDS:
            return self._validator
        async with self._lock:
            if self._validator is None or time.monotonic() - self._built_at >= REFRESH_SECONDS:
                await self.refresh()
        assert self._validator is not None
        return self._validator

    async def refresh(self, *, fetch_remote: bool = True) -> None:
        """Rebuild the trust store: our CAs and CRLs, the operators' CAs and (when reachable) CRLs."""
        from carnet.directory.trustspace import list_operators
        from carnet.pki import authority, revocation

        ours = await authority.authority_certificates(self.db)
        crls = [await revocation.current_crl(self.db, self.settings, name) for name in ours]
        anchors = [ours["root"]]
        intermediates = [cert for name, cert in ours.items() if name != "root"]
        operators = await list_operators(self.db)
        missing = False
        for operator in operators:
            for cert in operator.ca_certificates:
                (anchors if cert.subject == cert.issuer else intermediates).append(cert)
            if fetch_remote:
                missing = not await self._fetch_operator_crls(operator) or missing
        self._crls_missing = missing
        crls.extend(self._remote_crls.values())
        store = TrustStore(anchors, intermediates, crls, hard_fail=self.settings.pki.revocation_hard_fail)
        self._validator = ChainValidator(store)
        self._operators_seen = tuple((op.domain, op.updated_at) for op in operators)
        self._built_at = time.monotonic()

    def _refetch_after(self) -> float:
        return 1.0 if self._crls_missing else REFETCH_SECONDS

    async def trust_changed(self) -> None:
        """Force a rebuild at the next use (after a trust-space import, a revocation)."""
        self._built_at = 0.0

    async def _fetch_operator_crls(self, operator: object) -> bool:
        """Fetch an operator's CRLs; True when at least one was obtained."""
        from carnet.directory.remote import tls_context
        from carnet.directory.trustspace import OperatorInfo

        assert isinstance(operator, OperatorInfo)
        urls: list[str] = []
        if operator.directory_url:
            origin = urlsplit(operator.directory_url)
            urls += [f"{origin.scheme}://{origin.netloc}/pki/crl/{name}.crl" for name in _CARNET_CA_NAMES]
        for cert in operator.ca_certificates:
            urls += _distribution_points(cert)
        cas = list(operator.ca_certificates)
        sni = {"sni_hostname": operator.domain}
        fetched = 0
        try:
            async with httpx.AsyncClient(
                verify=tls_context(operator), timeout=CRL_TIMEOUT, follow_redirects=False, trust_env=False
            ) as client:
                for url in dict.fromkeys(urls):
                    host = urlsplit(url).hostname or ""
                    try:
                        answer = await client.get(url, extensions=sni if _is_ip(host) else {})
                    except (httpx.HTTPError, OSError) as exc:
                        log.debug("CRL %s of %s unreachable: %s", url, operator.domain, exc)
                        continue
                    if answer.status_code == 200 and _crl_signed_by(answer.content, cas):
                        self._remote_crls[url] = answer.content
                        fetched += 1
        except (OSError, ValueError) as exc:  # an unusable CA bundle
            log.warning("cannot fetch the CRLs of %s: %s", operator.domain, exc)
        return fetched > 0

    # Keys ------------------------------------------------------------------------------------------------------

    async def credential(self, serial: str) -> SignerCredential:
        """The signing credential of a certificate we hold the key of (cached; keys are unsealed once)."""
        cached = self._credentials.get(serial)
        if cached is not None:
            self._credentials.move_to_end(serial)
            return cached
        from carnet.pki.authority import load_credential

        issued = await load_credential(self.db, self.settings, serial)
        credential = SignerCredential(issued.key, issued.certificate, issued.chain)  # type: ignore[arg-type]
        self._credentials[serial] = credential
        if len(self._credentials) > self._cache_size:
            self._credentials.popitem(last=False)
        return credential

    async def decryption_key(self, mailbox: MailboxInfo) -> DecryptionKey:
        credential = await self.credential(mailbox.certificate_serial)
        return DecryptionKey(credential.key, credential.certificate)

    async def signer_result(self, credential: SignerCredential, from_address: str) -> SmimeResult:
        """The verification result of a message we sign with ``credential`` (its chain validated now)."""
        return (await self._signer_result(credential, from_address))[0]

    async def _signer_result(self, credential: SignerCredential,
                             from_address: str) -> tuple[SmimeResult, dict[str, Any]]:
        """:meth:`signer_result` and its ``to_dict()``. The chain is validated for every message (the validator
        caches its answer for the time it holds); while that answer is the same object, the result is the one built
        last for this credential and From with a new signing time, not built and converted again."""
        validator = await self.validator()
        key = (id(credential), from_address)
        cached = self._signer_results.get(key)
        if cached is None or cached.credential is not credential or cached.validator is not validator:
            certificates = validator.certificates
            cached = _SignerCache(credential, validator, certificates.from_certificate(credential.certificate),
                                  [certificates.from_certificate(cert) for cert in credential.chain])
            if len(self._signer_results) > self._cache_size:
                self._signer_results.clear()
            self._signer_results[key] = cached
        chain = await validator.validate_info(cached.leaf, cached.extra)
        if cached.chain is chain and cached.result is not None:
            template, data = cached.result, cached.data
            now = utcnow()
            signer = replace(template.signer, signing_time=now)  # type: ignore[type-var]
            result = SmimeResult(template.status, detail=template.detail, signers=[signer], signer=signer,
                                 from_address=from_address)
            signed_at = now.isoformat()
            data = {**data, "signers": [{**data["signer"], "signing_time": signed_at}],
                    "signer": {**data["signer"], "signing_time": signed_at}}
            return result, data
        result = self._new_signer_result(validator, credential, chain, from_address)
        cached.chain, cached.result, cached.data = chain, result, result.to_dict()
        return result, cached.data

    @staticmethod
    def _new_signer_result(validator: ChainValidator, credential: SignerCredential, chain: Any,
                           from_address: str) -> SmimeResult:
        info = validator.certificates.from_certificate(credential.certificate)
        signer = SignerInfo(
            status=chain.status,
            detail=chain.detail,
            subject=info.subject,
            common_name=info.common_name,
            emails=list(info.binding_emails),
            national_id=info.national_id,
            serial=format(info.serial, "x"),
            issuer=info.issuer,
            fingerprint_sha256=info.fingerprint,
            digest_algorithm="sha256",
            signature_algorithm="rsassa_pkcs1v15" if credential.key_family == "rsa" else "ecdsa",
            signing_time=utcnow(),
            chain=chain.chain,
            chain_status=chain.chain_status,
            revocation=chain.revocation,
        )
        return SmimeResult(
            chain.status, detail=chain.detail, signers=[signer], signer=signer, from_address=from_address
        )

    # Outbound --------------------------------------------------------------------------------------------------

    async def outbound(self, raw: bytes, author: MailboxInfo, from_address: str) -> Outbound:
        """Sign ``raw`` for ``author`` or verify the client's signature (see the module docstring)."""
        if _is_signed_or_enveloped(raw):
            keys = [await self.decryption_key(author)]
            result = await open_message(raw, keys=keys, validator=await self.validator())
            if result.status is not Status.VALID:
                raise GatewayRefusal(
                    554, _enhanced(result.status), f"your S/MIME signature is {result.status.value}: {result.detail}"
                )
            report = report_type(result.content)
            result.content = b""
            return Outbound(raw, result, signed_here=False, report=report)
        credential = await self.credential(author.certificate_serial)
        result, signature = await self._signer_result(credential, from_address)
        if result.status is not Status.VALID:
            raise GatewayRefusal(
                554,
                "5.7.1",
                f"the certificate of {author.address} cannot sign ({result.status.value}: {result.detail})",
            )
        signed = sign_message(raw, credential)
        return Outbound(signed, result, signed_here=True, report=report_type(raw), signature=signature)

    @staticmethod
    def encrypt(raw: bytes, certificates: list[x509.Certificate], *, legacy: bool) -> bytes:
        """Envelope the message for its recipients (RFC 8551 §3.3): AuthEnvelopedData/AES-256-GCM/OAEP by default."""
        return encrypt_message(raw, certificates, legacy=legacy)

    # Inbound ---------------------------------------------------------------------------------------------------

    async def inbound(self, raw: bytes, recipient: MailboxInfo) -> Opened:
        """Decrypt (when enveloped) with the recipient's key and verify; never raises for message content."""
        validator = await self.validator()
        keys = [await self.decryption_key(recipient)]
        stored = raw
        decryption: tuple[str, bool] | None = None
        if is_enveloped(raw):
            try:
                stored, decrypted = decrypt_message(raw, keys)
                decryption = (decrypted.algorithm, decrypted.integrity_protected)
            except MalformedEnvelopeError as exc:
                return Opened(raw, SmimeResult(Status.MALFORMED, detail=str(exc)))
            except DecryptError as exc:
                return Opened(raw, SmimeResult(Status.DECRYPT_FAILED, detail=str(exc)))
        result = await open_message(stored, keys=keys, validator=validator)
        if _revocation_unknown(result) and time.monotonic() - self._built_at >= self._refetch_after():
            async with self._lock:  # a peer's CRL was missing or stale (it was down at our last refresh): fetch again
                if time.monotonic() - self._built_at >= self._refetch_after():
                    await self.refresh()
            result = await open_message(stored, keys=keys, validator=await self.validator())
        if decryption is not None:
            result.encrypted = True
            result.encryption_algorithm = decryption[0]
            result.integrity_protected = result.integrity_protected and decryption[1]
            if not decryption[1]:
                result.warnings.append(_NO_INTEGRITY.format(algorithm=decryption[0]))
        report = report_type(result.content)
        result.content = b""
        return Opened(stored, result, report)

    async def verify_only(self, raw: bytes) -> Opened:
        """Verify without any decryption key (mail for a brick address that is no mailbox)."""
        result = await open_message(raw, validator=await self.validator())
        report = report_type(result.content)
        result.content = b""
        return Opened(raw, result, report)


def _revocation_unknown(result: SmimeResult) -> bool:
    return result.status is Status.UNTRUSTED and result.signer is not None and result.signer.revocation == "unknown"


def _is_signed_or_enveloped(raw: bytes) -> bool:
    from carnet.pki.smime import canon

    try:
        header, _ = canon.split_header_body(raw)
        mime_type, _params = canon.content_type(header)
    except ValueError:
        return False
    return mime_type in ("multipart/signed", "application/pkcs7-mime", "application/x-pkcs7-mime")


_ENHANCED: Final = {
    Status.UNSIGNED: "5.7.1",
    Status.BAD_SIGNATURE: "5.7.7",
    Status.TAMPERED: "5.7.7",
    Status.DECRYPT_FAILED: "5.7.5",
    Status.MALFORMED: "5.6.0",
}


def _enhanced(status: Status) -> str:
    """RFC 3463 / RFC 7372 enhanced code for a refused S/MIME status (5.7.5 crypto failure, 5.7.7 integrity)."""
    return _ENHANCED.get(status, "5.7.1")


def enhanced_for(status: Status) -> str:
    return _enhanced(status)


def _distribution_points(cert: x509.Certificate) -> list[str]:
    try:
        points = cert.extensions.get_extension_for_oid(ExtensionOID.CRL_DISTRIBUTION_POINTS).value
    except x509.ExtensionNotFound:
        return []
    return [
        name.value
        for point in points
        for name in point.full_name or []
        if isinstance(name, x509.UniformResourceIdentifier) and name.value.startswith("https://")
    ]


def _crl_signed_by(der: bytes, cas: list[x509.Certificate]) -> bool:
    try:
        crl = x509.load_der_x509_crl(der)
    except ValueError:
        return False
    for ca in cas:
        if ca.subject == crl.issuer:
            try:
                return crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return False
    return False


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)
