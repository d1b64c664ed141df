"""What may pass: the inbound S/MIME policy and the MSSanté rules between patients and professionals.

Inbound policy (relayed mail from the trust space; ``mta.inbound_policy``): each
:class:`~carnet.pki.smime.Status` maps to ``accept``, ``reject`` (5.7.x, the sending operator bounces it) or
``defer`` (4.7.x, it retries). Defaults — safe: only ``valid`` is accepted; a chain that is fine but whose
revocation status could not be established (``revocation_unknown``: the peer's CRL could not be fetched) is
deferred; everything else (unsigned, bad signature, tampered, untrusted, expired, revoked, wrong usage, From not
the signer's, malformed, undecryptable) is refused. Mail from our own users is held to the same standard at
submission: a client signature must be valid, and our own signature is made only with a valid certificate.

Patients (MSSanté "messagerie citoyenne" rules):

- mail to a patient address is accepted only from professionals (PER), organisations (ORG/CAB) and apps (APP),
  never from another patient (addresses under ``patient.<domain>``, here or at a peer);
- a patient may only write to an address that wrote to them first (``mta_correspondents``), and not once that
  correspondent closed the exchange with ``X-MSS-MES: FIN``; a new message from the correspondent (without FIN)
  opens it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from carnet.config import MtaSettings
from carnet.directory.records import MailboxInfo, MailboxKind
from carnet.pki.smime import SmimeResult, Status

REVOCATION_UNKNOWN: Final = "revocation_unknown"


@dataclass(frozen=True, slots=True)
class Decision:
    action: str  # accept | reject | defer
    code: int = 250
    status: str = "2.0.0"
    text: str = ""

    def reply(self) -> str:
        return f"{self.code} {self.status} {self.text}"


def policy_key(result: SmimeResult) -> str:
    if result.status is Status.UNTRUSTED and result.signer is not None and result.signer.revocation == "unknown":
        return REVOCATION_UNKNOWN
    return result.status.value


def decide(result: SmimeResult, settings: MtaSettings) -> Decision:
    """Apply ``mta.inbound_policy`` to a verification result."""
    from carnet.mta.gateway import enhanced_for

    key = policy_key(result)
    action = settings.inbound_policy.get(key, "accept" if key == Status.VALID.value else "reject")
    detail = f": {result.detail}" if result.detail else ""
    if action == "accept":
        return Decision("accept")
    if action == "defer":
        return Decision("defer", 451, "4.7.5", f"S/MIME check {key}{detail}; try again later"[:400])
    return Decision("reject", 550, enhanced_for(result.status), f"S/MIME check {key}{detail}"[:400])


def is_patient_address(address: str, our_domain: str) -> bool:
    domain = address.rpartition("@")[2].lower()
    return domain.startswith("patient.")


def sender_is_patient(sender: MailboxInfo | None, address: str, our_domain: str) -> bool:
    if sender is not None:
        return sender.kind is MailboxKind.PAT
    return is_patient_address(address, our_domain)


def closes_exchange(header_value: str | None) -> bool:
    """``X-MSS-MES: FIN`` (case-insensitive, surrounding blanks ignored)."""
    return header_value is not None and header_value.strip().upper() == "FIN"
