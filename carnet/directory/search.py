"""Directory search: who can I write to? (the HTTP search, the FHIR view and ``carnet directory search``).

Rules: at least one criterion; text criteria are folded (accents, case) and split into words, every word must occur
(``Saint-Étienne`` finds ``saint etienne``); each word at least :data:`MIN_WORD` characters, at most
:data:`MAX_WORDS` words and :data:`MAX_TEXT` characters per criterion; codes and identifiers are matched exactly
and checked for shape first. Results are paged (``offset``/``limit``, limit at most :data:`MAX_LIMIT`, offset at most
:data:`MAX_OFFSET`). Red-listed, disabled and patients' mailboxes are never returned.
"""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncSession

from carnet.db import Database
from carnet.directory import store
from carnet.directory.addresses import search_key
from carnet.directory.identifiers import InvalidIdentifier, validate_finess, validate_rpps
from carnet.directory.models import Mailbox
from carnet.directory.records import InvalidInput, MailboxKind, SearchHit, SearchPage, SearchQuery

MIN_WORD = 2
MAX_WORDS = 6
MAX_TEXT = 100
MAX_LIMIT = 50
DEFAULT_LIMIT = 20
MAX_OFFSET = 10_000
_CODE = re.compile(r"[A-Za-z0-9]{1,16}")


class QueryError(InvalidInput):
    """A search the directory refuses (too short, too long, malformed identifier…)."""


def words(value: str | None, field: str) -> tuple[str, ...]:
    if value is None or not value.strip():
        return ()
    if len(value) > MAX_TEXT:
        raise QueryError(f"{field} is {len(value)} characters long, the limit is {MAX_TEXT}")
    tokens = search_key(value).split()
    if not tokens:
        raise QueryError(f"{field} {value!r} has no letter or digit to search for")
    if len(tokens) > MAX_WORDS:
        raise QueryError(f"{field} has {len(tokens)} words, the limit is {MAX_WORDS}")
    short = [t for t in tokens if len(t) < MIN_WORD]
    if short:
        raise QueryError(f"{field}: each word needs at least {MIN_WORD} characters ({short[0]!r} is too short)")
    return tuple(tokens)


def code(value: str | None, field: str) -> str | None:
    if value is None or not value.strip():
        return None
    cleaned = value.strip().upper()
    if not _CODE.fullmatch(cleaned):
        raise QueryError(f"{field} {value[:40]!r} is not a code (letters and digits, at most 16)")
    return cleaned


def to_filter(query: SearchQuery) -> store.SearchFilter:
    """Validate ``query`` and turn it into the store's folded filter."""
    try:
        rpps = validate_rpps(query.rpps) if query.rpps and query.rpps.strip() else None
        finess = validate_finess(query.finess) if query.finess and query.finess.strip() else None
    except InvalidIdentifier as exc:
        raise QueryError(str(exc)) from None
    city = words(query.city, "city")
    kind = query.kind
    if kind is MailboxKind.PAT:
        raise QueryError("patients' mailboxes are not listed in the directory")
    f = store.SearchFilter(
        text=words(query.text, "q"),
        name=words(query.name, "name"),
        organisation=words(query.organisation, "organisation"),
        city=" ".join(city) or None,
        profession=code(query.profession, "profession"),
        specialty=code(query.specialty, "specialty"),
        rpps=rpps,
        finess=finess,
        kind=kind.value if kind else None,
    )
    if not any((f.text, f.name, f.organisation, f.city, f.profession, f.specialty, f.rpps, f.finess)):
        raise QueryError(
            "give at least one search criterion (q, name, profession, specialty, organisation, city, rpps or finess)"
        )
    return f


def page_bounds(offset: int, limit: int) -> tuple[int, int]:
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"the page size must be between 1 and {MAX_LIMIT}")
    if not 0 <= offset <= MAX_OFFSET:
        raise QueryError(f"results past the first {MAX_OFFSET} are not served: narrow the search")
    return offset, limit


async def search(db: Database, query: SearchQuery, *, offset: int = 0, limit: int = DEFAULT_LIMIT) -> SearchPage:
    """Listed mailboxes matching ``query``, one page of them, with the owner's profession and organisation."""
    f = to_filter(query)
    offset, limit = page_bounds(offset, limit)
    async with db.session() as session:
        total, rows = await store.search_mailboxes(session, f, offset=offset, limit=limit)
        hits = [await _hit(session, row) for row in rows]
    return SearchPage(total=total, offset=offset, limit=limit, hits=hits)


async def _hit(session: AsyncSession, mailbox: Mailbox) -> SearchHit:
    national_id = profession = specialty = organisation = city = None
    if mailbox.professional_id is not None:
        pro = await store.professional_by_id(session, mailbox.professional_id)
        if pro is not None:
            national_id, profession, specialty = pro.national_id, pro.profession_code, pro.specialty_code
            orgs = await store.affiliated_organisations(session, pro.id)
            if orgs:
                organisation, city = orgs[0].name, orgs[0].city
    elif mailbox.organisation_id is not None:
        org = await store.organisation_by_id(session, mailbox.organisation_id)
        if org is not None:
            national_id, organisation, city = org.national_id, org.name, org.city
    elif mailbox.app_id is not None:
        app = await store.app_by_id(session, mailbox.app_id)
        publisher = await store.organisation_by_id(session, app.publisher_id) if app else None
        if publisher is not None:
            organisation, city = publisher.name, publisher.city
    return SearchHit(
        address=mailbox.address,
        kind=MailboxKind(mailbox.kind),
        display_name=mailbox.display_name,
        national_id=national_id,
        profession=profession,
        specialty=specialty,
        organisation=organisation,
        city=city,
        service=mailbox.service,
    )
