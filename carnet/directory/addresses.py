"""Mailbox addresses and the search form of names.

Address rules (all lower case, ASCII, RFC 5321 §4.5.3.1.1: local part at most 64 octets):

- professional (PER): ``prenom.nom@DOMAIN`` — each name is folded (accents stripped by Unicode NFKD, ligatures
  œ/æ/ß expanded, lower case), every run of other characters becomes one ``-`` (``Jean Pierre`` → ``jean-pierre``,
  ``D'Ornano`` → ``d-ornano``);
- service of an organisation (ORG) and practice (CAB): ``service@DOMAIN`` from the service (or practice) name,
  or an explicit local part;
- app (APP): its name, folded the same way;
- patient: ``<INS matricule>@patient.DOMAIN`` (lower case, ``2a``/``2b`` for Corsica).

Collisions: the first free address among ``base``, ``base2``, ``base3``… (the suffix is appended to the last
element, ``anne.martin2``). "Free" means never used: addresses of disabled mailboxes are never handed out again, so
mail meant for a former holder cannot reach a new one. When the base is too long the name part is cut so that base
and suffix fit in 64 octets. Role addresses of RFC 2142 (``postmaster``, ``abuse``…) are reserved.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

MAX_LOCAL_PART = 64
#: RFC 2142 §4-§5 role mailboxes and the usual system names, never given to a service or an app.
RESERVED_LOCAL_PARTS = frozenset(
    {
        "postmaster",
        "abuse",
        "hostmaster",
        "webmaster",
        "security",
        "noc",
        "mailer-daemon",
        "root",
        "admin",
        "administrator",
        "noreply",
        "no-reply",
        "nobody",
        "info",
        "support",
    }
)
_LIGATURES = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss", "ø": "o", "Ø": "O", "đ": "d"})
_NON_WORD = re.compile(r"[^a-z0-9]+")


class AddressError(ValueError):
    """An address cannot be built or is not acceptable."""


def fold(text: str) -> str:
    """Lower-case ASCII form of ``text``: NFKD, combining marks dropped, ligatures expanded."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()


def slug(text: str) -> str:
    """``fold`` then every run of characters other than a-z/0-9 as one ``-``, trimmed."""
    return _NON_WORD.sub("-", fold(text)).strip("-")


def search_key(text: str) -> str:
    """The search form of a name: folded, punctuation as single spaces (``Saint-Étienne`` → ``saint etienne``)."""
    return " ".join(_NON_WORD.sub(" ", fold(text)).split())


def professional_base(first_name: str, last_name: str) -> str:
    first, last = slug(first_name), slug(last_name)
    if not first or not last:
        raise AddressError(
            f"cannot build an address from first name {first_name!r} and last name {last_name!r}: "
            "each needs at least one letter or digit"
        )
    return f"{first}.{last}"


def name_base(name: str, what: str) -> str:
    """Base local part for a service, practice or app name (or an explicit local part)."""
    base = slug(name)
    if not base:
        raise AddressError(f"{what} {name!r} gives an empty address: it needs at least one letter or digit")
    if base in RESERVED_LOCAL_PARTS:
        raise AddressError(f"{what} {name!r} gives the reserved address {base!r} (RFC 2142)")
    return base


def candidate(base: str, n: int) -> str:
    """The ``n``-th candidate local part (1 is the base itself), cut to fit 64 octets."""
    suffix = "" if n == 1 else str(n)
    room = MAX_LOCAL_PART - len(suffix)
    return base[:room].rstrip(".-") + suffix


def first_free(base: str, taken: Callable[[str], bool], *, limit: int = 10_000) -> str:
    """The first candidate local part for which ``taken`` is False (deterministic: base, base2, base3…)."""
    for n in range(1, limit + 1):
        local = candidate(base, n)
        if not taken(local):
            return local
    raise AddressError(f"no free address left for {base!r} after {limit} attempts")


def patient_domain(domain: str) -> str:
    return f"patient.{domain}"


def normalise_address(address: str) -> str:
    """Lower case, surrounding spaces and angle brackets removed; raises AddressError when not ``local@domain``."""
    value = address.strip().strip("<>").strip().lower()
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or len(value) > 254 or len(local) > MAX_LOCAL_PART or " " in value:
        raise AddressError(f"{address!r} is not an e-mail address")
    return value


def is_local_domain(domain: str, our_domain: str) -> bool:
    domain = domain.lower().rstrip(".")
    return domain in (our_domain, patient_domain(our_domain))
