"""The command parser: grammar examples from the RFCs, errors as ParseError (BAD), and property tests — round trips
of search keys, sequence sets and strings, and "never crashes" on arbitrary and on near-valid input."""

from __future__ import annotations

import contextlib
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carnet.mailbox.api import SearchKey, UidRange
from carnet.mailbox.imap import parser, response, utf7
from carnet.mailbox.imap.parser import (
    STAR,
    Append,
    FetchAtt,
    ParseError,
    Reader,
    Section,
    SequenceSet,
    parse_command,
)

# Examples -------------------------------------------------------------------------------------------------------


def test_fetch_items_sections_and_partials() -> None:
    cmd = parse_command(b"a1 UID FETCH 1:*,7 (UID FLAGS BODY.PEEK[1.2.HEADER.FIELDS.NOT (From \"To\")]<0.100> "
                        b"BINARY.PEEK[3]<10.5> BINARY.SIZE[1] BODY[] RFC822.SIZE MODSEQ) (CHANGEDSINCE 12 VANISHED)")
    assert cmd.uid and cmd.name == "FETCH"
    assert cmd.args.set == SequenceSet(((1, STAR), (7, 7)))
    assert cmd.args.items == (
        FetchAtt("UID"), FetchAtt("FLAGS"),
        FetchAtt("BODY.PEEK", Section((1, 2), "HEADER.FIELDS.NOT", ("FROM", "TO")), (0, 100)),
        FetchAtt("BINARY.PEEK", Section((3,)), (10, 5)), FetchAtt("BINARY.SIZE", Section((1,))),
        FetchAtt("BODY", Section()), FetchAtt("RFC822.SIZE"), FetchAtt("MODSEQ"))
    assert cmd.args.changedsince == 12 and cmd.args.vanished
    assert parse_command(b"a FETCH 2 full").args.items[-1] == FetchAtt("BODY")
    assert [a.name for a in parse_command(b"a FETCH 2 ALL").args.items] == ["FLAGS", "INTERNALDATE", "RFC822.SIZE",
                                                                             "ENVELOPE"]
    assert parse_command(b"a FETCH 1 BODY[2.MIME]").args.items[0].section == Section((2,), "MIME")
    assert parse_command(b"a FETCH 1 BODY[TEXT]<5.6>").args.items[0] == FetchAtt("BODY", Section((), "TEXT"), (5, 6))


def test_search_keys_become_store_keys() -> None:
    cmd = parse_command(b'a UID SEARCH RETURN (MIN MAX COUNT SAVE) CHARSET utf-8 OR FROM "Paul" NOT SUBJECT '
                        b'{6}\r\nr\xc3\xa9sum SINCE 1-Feb-2024 2:4,* UID $ HEADER X-Priority "" LARGER 10 '
                        b"UNKEYWORD $Junk MODSEQ \"/flags/\\\\draft\" all 620162338")
    args = cmd.args
    assert args.charset == "UTF-8" and args.returns == ("MIN", "MAX", "COUNT", "SAVE")
    assert args.key == SearchKey("and", children=(
        SearchKey("or", children=(SearchKey("from", value="Paul"),
                                  SearchKey("not", children=(SearchKey("subject", value="résum"),)))),
        SearchKey("since", day=date(2024, 2, 1)),
        SearchKey("seq", uids=(UidRange(2, 4), UidRange(STAR, STAR))),
        SearchKey("uid", value="$"),
        SearchKey("header", field="x-priority", value=""),
        SearchKey("larger", number=10),
        SearchKey("keyword", value="$Junk", negate=True),
        SearchKey("modseq", number=620162338),
    ))


def test_literals_of_every_kind_and_append() -> None:
    cmd = parse_command(b'A003 APPEND saved-messages (\\Seen) " 7-Feb-1994 21:52:25 -0800" {5+}\r\nhello')
    assert isinstance(cmd.args, Append)
    assert cmd.args.message == b"hello" and cmd.args.flags == ("\\Seen",)
    assert cmd.args.internal_date == datetime(1994, 2, 7, 21, 52, 25, tzinfo=timezone(-timedelta(hours=8)))
    assert parse_command(b"a APPEND INBOX {2-}\r\nhi").args.message == b"hi"
    assert parse_command(b"a APPEND INBOX ~{3}\r\nh\x00i").args.binary
    utf8 = parse_command(b"a APPEND INBOX UTF8 (~{2}\r\nhi)").args
    assert utf8.utf8 and utf8.message == b"hi"
    assert parse_command(b'a LOGIN {4}\r\nuser "pa\\"ss"').args.password == 'pa"ss'
    with pytest.raises(ParseError, match="MULTIAPPEND"):
        parse_command(b"a APPEND INBOX {1}\r\nx {1}\r\ny")
    with pytest.raises(ParseError, match="shorter"):
        parse_command(b"a APPEND INBOX {10}\r\nx")
    with pytest.raises(ParseError, match="NUL"):
        parse_command(b"a LOGIN {3}\r\na\x00b x")


def test_mailbox_commands() -> None:
    lst = parse_command(b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" %/%) RETURN (CHILDREN STATUS (MESSAGES '
                        b"SIZE))").args
    assert lst.selection == ("SUBSCRIBED", "RECURSIVEMATCH") and lst.patterns == ("INBOX", "%/%")
    assert lst.returns == ("CHILDREN", "STATUS") and lst.status_items == ("MESSAGES", "SIZE") and lst.extended
    assert parse_command(b'a LIST "" *').args.patterns == ("*",)
    assert parse_command(b"a SELECT inbox").args.mailbox == "INBOX"
    qresync = parse_command(b"a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))").args.qresync
    assert qresync.uidvalidity == 67890007 and qresync.known_uids.ranges[1] == (43, 211)
    assert parse_command(b"a CREATE Foo (USE (\\Sent))").args.special_use == ("\\Sent",)
    assert parse_command(b"a STATUS blurdybloop (UIDNEXT MESSAGES)").args.items == ("UIDNEXT", "MESSAGES")
    assert parse_command(b'a ID ("name" "mutt" "version" NIL)').args.params == (("name", "mutt"), ("version", None))
    assert parse_command(b"a ENABLE CONDSTORE qresync").args.capabilities == ("CONDSTORE", "QRESYNC")
    store = parse_command(b"a UID STORE 1:3 (UNCHANGEDSINCE 320162338) -FLAGS.SILENT (\\Deleted $Junk)").args
    assert store.mode == "remove" and store.silent and store.flags == ("\\Deleted", "$Junk")
    assert parse_command(b"a UID EXPUNGE 3000:3002").args.set == SequenceSet(((3000, 3002),))
    assert parse_command(b"a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==").args.initial == b"\x00alice\x00secret"
    assert parse_command(b"a AUTHENTICATE PLAIN =").args.initial == b""


@pytest.mark.parametrize(("command", "reason"), [
    (b"", "tag"),
    (b"a", "space"),
    (b"a NOPE", "unknown command"),
    (b"a UID LIST", "not a command"),
    (b"a FETCH 0 FLAGS", "zero"),
    (b"a FETCH 1 (FLAGS", "space"),
    (b"a FETCH 1 BODY[4.HEADERS]", "section text"),
    (b"a FETCH 1 BODY[HEADER.FIELDS ()]", "astring"),
    (b"a FETCH 1 FOO", "unknown FETCH item"),
    (b"a STORE 1 +FLAGS (\\Bogus)", "unknown system flag"),
    (b"a SEARCH CHARSET", "unknown search key"),
    (b"a SEARCH BEFORE 31-Feb-2024", "invalid date"),
    (b"a SEARCH OR FROM x", "space"),
    (b"a SEARCH NOT " * 1 + b"(" * 40 + b"ALL" + b")" * 40, "nesting"),
    (b"a SELECT INBOX (FOO)", "unknown SELECT parameter"),
    (b"a LOGIN \"unterminated", "unterminated"),
    (b"a LOGIN \"bad\\escape\" x", "escaped"),
    (b"a NOOP extra", "end of command"),
    (b"a FETCH 99999999999 FLAGS", "too large"),
])
def test_errors_explain_themselves(command: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_command(command)


def test_limits() -> None:
    ranges = b",".join(b"%d" % (i * 2 + 1) for i in range(parser.MAX_SET_RANGES + 1))
    with pytest.raises(ParseError, match="elements"):
        parse_command(b"a FETCH " + ranges + b" FLAGS")
    many = b" ".join([b"ALL"] * (parser.MAX_SEARCH_KEYS + 1))
    with pytest.raises(ParseError, match="search keys"):
        parse_command(b"a SEARCH " + many)
    with pytest.raises(ParseError, match="nesting"):
        parse_command(b"a SEARCH " + b"NOT " * 40 + b"ALL")


def test_tag_of_broken_commands() -> None:
    assert parser.parse_tag(b"x12 FETCH (((") == "x12"
    assert parser.parse_tag(b"+ bad") is None
    assert parser.parse_tag(b"") is None


# Properties -----------------------------------------------------------------------------------------------------

_NICE_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)


def _seq_number() -> st.SearchStrategy[int]:
    return st.one_of(st.just(STAR), st.integers(1, 2**32 - 1))


_SEQSETS = st.lists(st.tuples(_seq_number(), _seq_number()), min_size=1, max_size=8).map(
    lambda ranges: SequenceSet(tuple(ranges)))


def _leaf_keys() -> st.SearchStrategy[SearchKey]:
    flags = st.sampled_from(["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"])
    return st.one_of(
        st.just(SearchKey("all")),
        st.builds(lambda f, n: SearchKey("flag", value=f, negate=n), flags, st.booleans()),
        st.builds(lambda k, n: SearchKey("keyword", value=k, negate=n),
                  st.from_regex(r"\$?[A-Za-z][A-Za-z0-9_]{0,10}", fullmatch=True), st.booleans()),
        st.builds(lambda op, v: SearchKey(op, value=v),
                  st.sampled_from(["from", "to", "cc", "bcc", "subject", "body", "text"]), _NICE_TEXT),
        st.builds(lambda f, v: SearchKey("header", field=f.lower(), value=v),
                  st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True), _NICE_TEXT),
        st.builds(lambda op, d: SearchKey(op, day=d),
                  st.sampled_from(["before", "on", "since", "sentbefore", "senton", "sentsince"]),
                  st.dates(date(1900, 1, 1), date(2999, 12, 31))),
        st.builds(lambda op, n: SearchKey(op, number=n), st.sampled_from(["larger", "smaller"]),
                  st.integers(0, 2**40)),
        st.builds(lambda n: SearchKey("modseq", number=n), st.integers(0, 2**63 - 1)),
        st.builds(lambda op, s: SearchKey(op, uids=tuple(UidRange(a, b) for a, b in s.ranges)),
                  st.sampled_from(["seq", "uid"]), _SEQSETS),
    )


_KEYS = st.recursive(
    _leaf_keys(),
    lambda children: st.one_of(
        children.map(lambda c: SearchKey("not", children=(c,))),
        st.tuples(children, children).map(lambda cs: SearchKey("or", children=cs)),
        st.lists(children, min_size=2, max_size=4).map(lambda cs: SearchKey("and", children=tuple(cs))),
    ),
    max_leaves=12,
)


def _unparse(key: SearchKey) -> bytes:
    """IMAP syntax for a search key (the inverse of :func:`parser.search_key`)."""
    op = key.op
    if op == "all":
        return b"ALL"
    if op == "flag":
        name = key.value[1:].upper()
        return (b"UN" if key.negate else b"") + name.encode()
    if op == "keyword":
        return (b"UNKEYWORD " if key.negate else b"KEYWORD ") + key.value.encode()
    if op in ("from", "to", "cc", "bcc", "subject", "body", "text"):
        return op.upper().encode() + b" " + response.astring(key.value)
    if op == "header":
        return b"HEADER " + response.astring(key.field) + b" " + response.astring(key.value)
    if op in ("before", "on", "since", "sentbefore", "senton", "sentsince"):
        assert key.day is not None
        return op.upper().encode() + b" " + f"{key.day.day}-{parser.MONTHS[key.day.month - 1]}-{key.day.year}".encode()
    if op in ("larger", "smaller", "modseq"):
        return op.upper().encode() + b" %d" % key.number
    if op in ("seq", "uid"):
        text = str(SequenceSet(tuple((r.first, r.last) for r in key.uids))).encode()
        return text if op == "seq" else b"UID " + text
    if op == "not":
        return b"NOT " + _unparse(key.children[0])
    if op == "or":
        return b"OR " + _unparse(key.children[0]) + b" " + _unparse(key.children[1])
    assert op == "and"
    return b"(" + b" ".join(_unparse(child) for child in key.children) + b")"


@given(_KEYS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_search_keys_round_trip(key: SearchKey) -> None:
    assert parse_command(b"t SEARCH CHARSET UTF-8 " + _unparse(key)).args.key == key


@given(_SEQSETS)
def test_sequence_sets_round_trip(seqset: SequenceSet) -> None:
    assert parse_command(f"t UID FETCH {seqset} FLAGS".encode()).args.set == seqset


@given(_NICE_TEXT)
def test_strings_round_trip(text: str) -> None:
    for encoded in (response.astring(text), response.string(text), response.string(text, utf8=False)):
        assert Reader(encoded).astring() == text


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_modified_utf7_round_trip(name: str) -> None:
    encoded = utf7.encode(name)
    assert encoded.isascii() and utf7.decode(encoded) == name


@given(st.datetimes(datetime(1970, 1, 2), datetime(2999, 1, 1)), st.integers(-12 * 60, 14 * 60))
def test_date_time_round_trip(moment: datetime, offset: int) -> None:
    moment = moment.replace(microsecond=0, tzinfo=timezone(timedelta(minutes=offset)))
    text = response.imap_datetime(moment)
    parsed = parse_command(b"a APPEND INBOX " + text + b" {1}\r\nx").args.internal_date
    assert parsed == moment and parsed.utcoffset() == moment.utcoffset()
    assert response.imap_datetime(moment.astimezone(UTC)).endswith(b'+0000"')


@given(st.binary(max_size=200))
@settings(max_examples=500)
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_command(data)


_VOCABULARY = [
    b"a ", b"UID ", b"FETCH ", b"SEARCH ", b"STORE ", b"APPEND ", b"SELECT ", b"LIST ", b"STATUS ", b"COPY ", b"1",
    b":", b"*", b",", b"$", b" ", b"(", b")", b"[", b"]", b"<", b">", b".", b"BODY", b"BODY.PEEK", b"BINARY",
    b"HEADER.FIELDS", b"MIME", b"TEXT", b"FLAGS", b"+FLAGS.SILENT", b"\\Seen", b"{3}\r\nabc", b"{2+}\r\nab",
    b"~{1}\r\n\x00", b'"quoted"', b'"\\"', b"NOT ", b"OR ", b"ALL", b"SINCE 1-Jan-2024", b"CHARSET UTF-8 ",
    b"RETURN (MIN) ", b"INBOX", b"(QRESYNC (1 2 1:3 (1 2)))", b"UNCHANGEDSINCE 5", b"CHANGEDSINCE", b"NIL",
    b"\x80", b"\r\n", b"-", b"%", b"}", b"{", b"~",
]


@given(st.lists(st.sampled_from(_VOCABULARY), max_size=25))
@settings(max_examples=1500, deadline=None)
def test_near_valid_commands_never_crash(tokens: list[bytes]) -> None:
    try:
        command = parse_command(b"".join(tokens))
    except ParseError:
        return
    assert command.tag and command.name
