"""The signature badge of a message, shown in the inbox list and on the message page.

The gateway verified every delivered message (RFC 8551 §3, RFC 5652 §5.6, path validation RFC 5280 §6) and stored
the outcome as :meth:`carnet.pki.smime.result.SmimeResult.to_dict`. :func:`badge_for` turns it into one of three
levels: ``verified`` (status ``valid``: the signature verifies, the chain is trusted and not revoked, the signer is
the From address), ``unsigned`` (no signature, or no stored result) and ``warning`` (any other status: the reader
must not trust who the message claims to come from, nor its content).

The signer's role comes from the directory (:func:`describe`, one query for a whole page of badges): the badge keeps
the profession code (ANS NOS ``TRE_G15-ProfessionSante``) and the specialty code (``TRE_R38-SpecialiteOrdinale``)
of the professional whose IDNPS is in the certificate, and :meth:`Badge.role` renders them per language: the
specialty when it is one of :data:`SPECIALTIES`, else the profession. Codes rather than a rendered string, so one
badge serves every language.

A warning badge never states the certificate's identity as a fact: :meth:`Badge.label` then names the problem only.
Languages: ``fr`` (default) and ``en``; any language tag starting with ``en`` is English, anything else French.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from sqlalchemy import select

from carnet.directory.checks import PROFESSIONS
from carnet.directory.models import Professional

if TYPE_CHECKING:
    from carnet.db import Database


class BadgeLevel(enum.StrEnum):
    VERIFIED = "verified"
    WARNING = "warning"
    UNSIGNED = "unsigned"


#: IGC-Santé national identifier prefixes (IDNPS: 8 = RPPS, 0 = ADELI; IDNST: 1 = FINESS, 3 = SIRET).
ID_PREFIXES: Final = {"8": "RPPS", "0": "ADELI", "1": "FINESS", "3": "SIRET"}
_PROFESSIONAL_TYPES: Final = {"RPPS": "8", "ADELI": "0"}

#: Readable (French, English) labels of common ``TRE_R38-SpecialiteOrdinale`` codes (display only). Codes checked
#: against the ANS nomenclature (e.g. SM26 "Qualifié en Médecine générale", SM38 "Ophtalmologie", SM40 "Pédiatrie").
SPECIALTIES: Final[Mapping[str, tuple[str, str]]] = {
    "SM02": ("anesthésiste-réanimateur", "anaesthetist"),
    "SM04": ("cardiologue", "cardiologist"),
    "SM15": ("dermatologue", "dermatologist"),
    "SM16": ("endocrinologue", "endocrinologist"),
    "SM18": ("gériatre", "geriatrician"),
    "SM19": ("gynécologue", "gynaecologist"),
    "SM20": ("gynécologue-obstétricien", "obstetrician-gynaecologist"),
    "SM24": ("gastro-entérologue", "gastroenterologist"),
    "SM26": ("médecin généraliste", "general practitioner"),  # Qualifié en Médecine générale
    "SM30": ("néphrologue", "nephrologist"),
    "SM32": ("neurologue", "neurologist"),
    "SM34": ("oto-rhino-laryngologiste", "ENT specialist"),  # ORL et Chirurgie cervico-faciale
    "SM38": ("ophtalmologiste", "ophthalmologist"),
    "SM39": ("oto-rhino-laryngologiste", "ENT specialist"),
    "SM40": ("pédiatre", "paediatrician"),
    "SM41": ("pneumologue", "pulmonologist"),
    "SM42": ("psychiatre", "psychiatrist"),
    "SM44": ("radiologue", "radiologist"),  # Radio-diagnostic
    "SM48": ("rhumatologue", "rheumatologist"),
    "SM53": ("médecin généraliste", "general practitioner"),  # Spécialiste en Médecine générale
    "SM54": ("médecin généraliste", "general practitioner"),  # Médecine générale
    "SM59": ("urgentiste", "emergency physician"),  # Médecine d'urgence
    "SM62": ("endocrinologue", "endocrinologist"),  # Endocrinologie, diabétologie, nutrition
    "SM73": ("cardiologue", "cardiologist"),  # Médecine cardiovasculaire
    "SM74": ("radiologue", "radiologist"),  # Radiologie et imagerie médicale
}
#: English labels of :data:`carnet.directory.checks.PROFESSIONS` (``TRE_G15-ProfessionSante``).
PROFESSIONS_EN: Final[Mapping[str, str]] = {
    "10": "doctor",
    "21": "pharmacist",
    "40": "dentist",
    "50": "midwife",
    "60": "nurse",
    "70": "physiotherapist",
    "80": "podiatrist",
    "91": "speech therapist",
    "92": "orthoptist",
}

#: The warning sentence per status, (French, English).
_WARNINGS: Final[Mapping[str, tuple[str, str]]] = {
    "revoked": (
        "Attention : le certificat du signataire est révoqué",
        "Warning: the signer's certificate is revoked",
    ),
    "from_mismatch": (
        "Attention : le signataire n'est pas l'expéditeur affiché",
        "Warning: the signer is not the sender shown",
    ),
    "untrusted": (
        "Attention : le certificat du signataire n'est pas reconnu comme digne de confiance",
        "Warning: the signer's certificate is not trusted",
    ),
    "bad_signature": (
        "Attention : le message a été modifié après sa signature",
        "Warning: the message was altered after signing",
    ),
    "tampered": (
        "Attention : le message a été modifié après sa signature",
        "Warning: the message was altered after signing",
    ),
    "expired": (
        "Attention : le certificat du signataire a expiré",
        "Warning: the signer's certificate has expired",
    ),
    "not_yet_valid": (
        "Attention : le certificat du signataire n'est pas encore valide",
        "Warning: the signer's certificate is not yet valid",
    ),
    "wrong_usage": (
        "Attention : le certificat du signataire ne permet pas de signer des messages",
        "Warning: the signer's certificate is not meant for signing messages",
    ),
    "malformed": (
        "Attention : le message est mal formé, sa signature n'a pas pu être vérifiée",
        "Warning: the message is malformed, its signature could not be checked",
    ),
    "decrypt_failed": (
        "Attention : le message chiffré n'a pas pu être déchiffré",
        "Warning: the encrypted message could not be decrypted",
    ),
}
_WARNING_OTHER: Final = (
    "Attention : la signature du message n'a pas pu être vérifiée",
    "Warning: the message's signature could not be verified",
)
_SHORT: Final[Mapping[BadgeLevel, tuple[str, str]]] = {
    BadgeLevel.VERIFIED: ("Vérifié", "Verified"),
    BadgeLevel.WARNING: ("Attention", "Warning"),
    BadgeLevel.UNSIGNED: ("Non signé", "Unsigned"),
}


def _en(lang: str) -> bool:
    return lang.lower().startswith("en")


@dataclass(frozen=True, slots=True)
class Badge:
    """What the reader is told about a message's signature.

    ``role`` is not a stored string: :func:`describe` fills ``profession_code`` / ``specialty_code`` from the
    directory and :meth:`role` renders them in the page's language.
    """

    level: BadgeLevel
    status: str  # the Status value ("valid", "revoked", …); "unsigned" when no result was stored
    signer_name: str = ""  # certificate common name, "" if none
    identifier: str = ""  # "RPPS 10001234567" / "ADELI …" / "FINESS …" / "SIRET …", "" if none
    address: str = ""  # the signer's email address
    profession_code: str = ""  # TRE_G15, from the directory (describe())
    specialty_code: str = ""  # TRE_R38, from the directory (describe())

    @property
    def national_id(self) -> str:
        """The IGC-Santé national identifier behind :attr:`identifier` (``8`` + RPPS, …), "" if none."""
        kind, _, value = self.identifier.partition(" ")
        for prefix, name in ID_PREFIXES.items():
            if name == kind and value:
                return prefix + value
        return ""

    def role(self, lang: str) -> str:
        """Profession or specialty label (``médecin généraliste`` / ``general practitioner``), "" if unknown."""
        english = _en(lang)
        specialty = SPECIALTIES.get(self.specialty_code)
        if specialty is not None:
            return specialty[english]
        if english:
            return PROFESSIONS_EN.get(self.profession_code, "")
        return PROFESSIONS.get(self.profession_code, "").lower()

    def label(self, lang: str) -> str:
        """The one-line statement of the badge (see the module docstring for what each level says)."""
        english = _en(lang)
        if self.level is BadgeLevel.VERIFIED:
            head = "Signed and verified" if english else "Signé et vérifié"
            parts = [p for p in (self.signer_name, self.role(lang), self.identifier) if p]
            if not parts:
                return head
            return f"{head}: {' — '.join(parts)}" if english else f"{head} : {' — '.join(parts)}"
        if self.level is BadgeLevel.WARNING:
            return _WARNINGS.get(self.status, _WARNING_OTHER)[english]
        return "Unsigned message" if english else "Message non signé"

    def short(self, lang: str) -> str:
        """A one- or two-word label for the inbox list."""
        return _SHORT[self.level][_en(lang)]


def badge_for(signature: Mapping[str, object] | None) -> Badge:
    """The badge of a stored verification result (``SmimeResult.to_dict()``); None means unsigned. Pure."""
    if signature is None:
        return Badge(BadgeLevel.UNSIGNED, "unsigned")
    raw_status = signature.get("status")
    status = raw_status if isinstance(raw_status, str) and raw_status else "malformed"
    if status == "valid":
        level = BadgeLevel.VERIFIED
    elif status == "unsigned":
        level = BadgeLevel.UNSIGNED
    else:
        level = BadgeLevel.WARNING
    signer = signature.get("signer")
    if not isinstance(signer, Mapping):
        return Badge(level, status)
    name = signer.get("common_name")
    national_id = signer.get("national_id")
    return Badge(
        level,
        status,
        signer_name=name if isinstance(name, str) else "",
        identifier=_identifier(national_id) if isinstance(national_id, str) else "",
        address=_address(signer.get("emails"), signature.get("from_address")),
    )


async def describe(db: Database, badges: Sequence[Badge]) -> list[Badge]:
    """``badges`` with the profession and specialty codes of RPPS/ADELI signers, from ``dir_professionals``.

    One query for all of them; badges of organisations (FINESS/SIRET), of unknown professionals or without an
    identifier come back unchanged. Returns new :class:`Badge` objects, in the same order.
    """
    wanted = {
        badge.national_id
        for badge in badges
        if badge.identifier.partition(" ")[0] in _PROFESSIONAL_TYPES and badge.national_id
    }
    if not wanted:
        return list(badges)
    async with db.session() as session:
        rows = await session.execute(
            select(Professional.national_id, Professional.profession_code, Professional.specialty_code).where(
                Professional.national_id.in_(sorted(wanted))
            )
        )
        codes = {national_id: (profession or "", specialty or "") for national_id, profession, specialty in rows}
    out: list[Badge] = []
    for badge in badges:
        found = codes.get(badge.national_id) if badge.national_id in wanted else None
        if found is None:
            out.append(badge)
        else:
            out.append(dataclasses.replace(badge, profession_code=found[0], specialty_code=found[1]))
    return out


def _identifier(national_id: str) -> str:
    national_id = national_id.strip()
    kind = ID_PREFIXES.get(national_id[:1])
    if kind is None or len(national_id) < 2 or not national_id[1:].isalnum():
        return ""
    return f"{kind} {national_id[1:]}"


def _address(emails: object, from_address: object) -> str:
    """The signer's address: From when the certificate carries it (the binding the gateway checked), else its first."""
    listed = [e for e in emails if isinstance(e, str) and e] if isinstance(emails, list) else []
    if isinstance(from_address, str) and from_address.lower() in {e.lower() for e in listed}:
        return from_address
    return listed[0] if listed else ""
