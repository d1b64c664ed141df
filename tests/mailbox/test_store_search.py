"""SEARCH on both backends: every key of SearchKey (RFC 9051 §6.4.4, RFC 7162 §3.1.5), evaluated in SQL."""

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import pytest
from storehelp import new_mailbox

from carnet.db import Database
from carnet.mailbox.api import NoSuchFolder, SearchKey, UidRange
from carnet.mailbox.search import InvalidSearch
from carnet.mailbox.store import MailStore

ONE = (b"From: =?utf-8?q?Dr_=C3=89mile_Dupr=C3=A9?= <emile@carnet.test>\r\n"
       b"To: Lea <lea@carnet.test>\r\nCc: secretariat@hopital.example\r\n"
       b"Subject: =?utf-8?q?R=C3=A9sultats_d=27analyse?=\r\nDate: Mon, 2 Mar 2026 23:30:00 -0300\r\n"
       b"X-Priority: 1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
       b"\r\nVotre taux de GLYC=C3=89MIE est normal.\r\n")
TWO = (b"From: labo@biologie.example\r\nTo: lea@carnet.test\r\nBcc: archive@carnet.test\r\n"
       b"Subject: Rendez-vous\r\nDate: Tue, 10 Mar 2026 08:00:00 +0100\r\n"
       b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n'
       b"<p>Rendez-vous <i>confirm&eacute;</i> le 12</p>\r\n--b--\r\n")
THREE = b"Subject: no date, no from\r\n\r\n" + b"x" * 2000


@pytest.fixture
async def searchable(db: Database) -> AsyncIterator[tuple[MailStore, int]]:
    store = MailStore(db)
    mailbox_id = await new_mailbox(db, 1)
    await store.ensure_account(mailbox_id)
    await store.append(mailbox_id, "INBOX", ONE, ["\\Seen", "\\Flagged", "$Important"],
                       datetime(2026, 3, 3, 2, 40, tzinfo=UTC))
    await store.append(mailbox_id, "INBOX", TWO, ["\\Answered"], datetime(2026, 3, 10, 7, 0, tzinfo=UTC))
    await store.append(mailbox_id, "INBOX", THREE, ["\\Deleted", "\\Draft", "NonJunk"],
                       datetime(2026, 3, 12, 23, 59, tzinfo=UTC))
    folder = await store.get_folder(mailbox_id, "INBOX")
    try:
        yield store, folder.id
    finally:
        await store.close()


def key(op: str, **fields: object) -> SearchKey:
    return SearchKey(op, **fields)  # type: ignore[arg-type]


CASES = [
    (key("all"), [1, 2, 3]),
    (key("flag", value="\\Seen"), [1]),
    (key("flag", value="\\seen", negate=True), [2, 3]),  # UNSEEN
    (key("flag", value="\\Answered"), [2]),
    (key("flag", value="\\Flagged"), [1]),
    (key("flag", value="\\Deleted"), [3]),
    (key("flag", value="\\Draft", negate=True), [1, 2]),
    (key("flag", value="\\Bogus"), []),
    (key("keyword", value="$important"), [1]),  # keywords compare case-insensitively
    (key("keyword", value="NonJunk", negate=True), [1, 2]),  # UNKEYWORD
    (key("keyword", value="Non_unk"), []),  # LIKE wildcards in a keyword match only themselves
    (key("recent"), []),  # no recent UIDs given
    (key("new"), []),
    (key("old"), [1, 2, 3]),
    (key("header", field="X-Priority", value="1"), [1]),
    (key("header", field="x-priority", value=""), [1]),  # "" = has the field
    (key("header", field="subject", value="RÉSULTATS"), [1]),  # decoded (RFC 2047) and case-folded
    (key("header", field="bcc", value="archive"), [2]),
    (key("from", value="émile dupré"), [1]),
    (key("from", value="@biologie."), [2]),
    (key("to", value="LEA@carnet"), [1, 2]),
    (key("cc", value="secretariat"), [1]),
    (key("bcc", value="archive@"), [2]),
    (key("subject", value="rendez"), [2]),
    (key("subject", value=""), [1, 2, 3]),
    (key("body", value="glycémie"), [1]),  # quoted-printable and charset undone, case-folded
    (key("body", value="confirmé"), [2]),  # HTML reduced to text, entities decoded
    (key("body", value="rendez-vous"), [2]),
    (key("body", value="lea@carnet"), []),  # headers are not body
    (key("text", value="lea@carnet"), [1, 2]),
    (key("text", value="x-priority: 1"), [1]),  # header field names count for TEXT
    (key("text", value="glycémie"), [1]),
    (key("before", day=date(2026, 3, 10)), [1]),  # internal date, UTC day
    (key("on", day=date(2026, 3, 10)), [2]),
    (key("since", day=date(2026, 3, 10)), [2, 3]),
    (key("on", day=date(2026, 3, 12)), [3]),
    (key("senton", day=date(2026, 3, 2)), [1]),  # the Date header's own day (-0300), not the UTC one
    (key("sentbefore", day=date(2026, 3, 3)), [1]),
    (key("sentsince", day=date(2026, 3, 3)), [2]),  # no Date: never matches…
    (key("not", children=(key("sentsince", day=date(2026, 3, 3)),)), [1, 3]),  # …so NOT matches it
    (key("larger", number=1000), [3]),
    (key("smaller", number=300), [2]),  # RFC822.SIZE 278 vs 355
    (key("uid", uids=(UidRange(2, 3),)), [2, 3]),
    (key("uid", uids=(UidRange(1, 1), UidRange(3, 2**32 - 1))), [1, 3]),
    (key("modseq", number=4), [3]),  # RFC 7162 §3.1.5: MODSEQ >= n
    (key("not", children=(key("flag", value="\\Seen"),)), [2, 3]),
    (key("or", children=(key("flag", value="\\Seen"), key("larger", number=1000))), [1, 3]),
    (key("and", children=(key("to", value="lea"), key("flag", value="\\Answered", negate=True))), [1]),
    (key("and", children=()), [1, 2, 3]),
    (key("and", children=(key("or", children=(key("from", value="labo"), key("subject", value="résultats"))),
                          key("not", children=(key("body", value="normal"),)))), [2]),
]


def test_every_documented_key_is_covered() -> None:
    documented = {"all", "flag", "keyword", "new", "old", "recent", "header", "from", "to", "cc", "bcc", "subject",
                  "body", "text", "before", "on", "since", "sentbefore", "senton", "sentsince", "larger", "smaller",
                  "uid", "modseq", "not", "or", "and"}
    assert {search.op for search, _ in CASES} == documented


async def test_each_search_key(searchable: tuple[MailStore, int]) -> None:
    """One database, every case (a fresh database per case would cost more than the searches)."""
    store, folder_id = searchable
    wrong = [(search, expected, found) for search, expected in CASES
             if (found := await store.search(folder_id, search)) != expected]
    assert wrong == []


async def test_recent_uids_come_from_the_session(searchable: tuple[MailStore, int]) -> None:
    store, folder_id = searchable
    assert await store.search(folder_id, key("recent"), recent_uids={2, 3}) == [2, 3]
    assert await store.search(folder_id, key("new"), recent_uids={1, 2}) == [2]  # recent and unseen
    assert await store.search(folder_id, key("old"), recent_uids={2, 3}) == [1]
    assert await store.search(folder_id, key("flag", value="\\Recent"), recent_uids={3}) == [3]


async def test_search_follows_flag_changes_and_expunges(searchable: tuple[MailStore, int]) -> None:
    store, folder_id = searchable
    await store.store_flags(folder_id, [2], "add", ["\\Seen"])
    assert await store.search(folder_id, key("flag", value="\\Seen")) == [1, 2]
    assert await store.search(folder_id, key("modseq", number=5)) == [2]
    await store.expunge(folder_id)
    assert await store.search(folder_id, key("all")) == [1, 2]


async def test_search_failures(searchable: tuple[MailStore, int]) -> None:
    store, folder_id = searchable
    with pytest.raises(InvalidSearch, match="unknown search key 'fuzzy'"):
        await store.search(folder_id, key("fuzzy"))
    with pytest.raises(InvalidSearch, match="OR takes two"):
        await store.search(folder_id, key("or", children=(key("all"),)))
    with pytest.raises(InvalidSearch, match="needs a day"):
        await store.search(folder_id, key("before"))
    with pytest.raises(NoSuchFolder):
        await store.search(999_999, key("all"))
