"""FETCH and UID FETCH (RFC 9051 §6.4.5, §7.5.2; RFC 3501 §6.4.5), BINARY (RFC 3516), CHANGEDSINCE and MODSEQ
(RFC 7162 §3.1.4), VANISHED (RFC 7162 §3.2.6).

ENVELOPE, BODYSTRUCTURE and BODY come pre-rendered from the store (:class:`~carnet.mailbox.api.MessageSummary`);
sections are slices of the stored message at the offsets the store recorded (:class:`~carnet.mailbox.api.
PartLocation`). Messages are fetched from the store in batches (:attr:`ImapLimits.fetch_batch`) and the responses
are written in large chunks. A non-PEEK body fetch sets ``\\Seen`` (one STORE per batch) and reports the new
FLAGS in the same response (RFC 9051 §6.4.5).
"""

from __future__ import annotations

import asyncio
import binascii
import itertools
import quopri
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from carnet.mailbox import api
from carnet.mailbox.imap import response
from carnet.mailbox.imap.parser import Command, Fetch, FetchAtt, Section
from carnet.mailbox.imap.response import ImapError

if TYPE_CHECKING:
    from carnet.mailbox.imap.server import Connection
    from carnet.mailbox.imap.session import SelectedFolder

_SUMMARY_ITEMS = frozenset({"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY", "MODSEQ"})
_SETS_SEEN = frozenset({"BODY", "BINARY", "RFC822", "RFC822.TEXT"})  # with a section for BODY / BINARY


def _sets_seen(att: FetchAtt) -> bool:
    if att.name in ("BODY", "BINARY"):
        return att.section is not None
    return att.name in ("RFC822", "RFC822.TEXT")


async def fetch(conn: Connection, cmd: Command) -> str | tuple[str, str | None]:
    """FETCH / UID FETCH (RFC 9051 §6.4.5, §6.4.8; CHANGEDSINCE RFC 7162 §3.1.4.1; VANISHED §3.2.6)."""
    selected = conn.selected
    assert selected is not None
    args: Fetch = cmd.args
    items = list(args.items)
    if args.changedsince is not None or any(att.name == "MODSEQ" for att in items):
        conn.condstore = True  # CONDSTORE-enabling (RFC 7162 §3.1)
    if args.vanished and (not cmd.uid or not conn.qresync):
        raise ImapError("VANISHED needs UID FETCH and ENABLE QRESYNC (RFC 7162 §3.2.6)", status="BAD")
    if args.changedsince is not None and not any(att.name == "MODSEQ" for att in items):
        items.append(FetchAtt("MODSEQ"))  # RFC 7162 §3.1.4.1
    if cmd.uid and not any(att.name == "UID" for att in items):
        items.insert(0, FetchAtt("UID"))  # RFC 9051 §6.4.8
    pairs = await selected.resolve(args.set, uid=cmd.uid)

    if args.changedsince is not None:
        changes = await conn.store.changes_since(selected.folder_id, args.changedsince)
        if args.vanished:
            wanted = _uid_filter(args.set.ranges, max((u for _, u in pairs), default=0))
            gone = [uid for uid in changes.vanished if uid <= selected.max_uid and wanted(uid)]
            if gone:
                conn.untagged("VANISHED (EARLIER) " + response.uid_set_of(gone))  # RFC 7162 §3.2.6
        changed = {state.uid for state in changes.changed}
        pairs = [(seq, uid) for seq, uid in pairs if uid in changed]

    plan = _Plan(items, readonly=selected.readonly)
    missing = 0
    batch = conn.server.limits.fetch_batch
    chunks = [pairs[start : start + batch] for start in range(0, len(pairs), batch)]
    # The next batch's summaries are read while this one is rendered and written.
    upcoming = _load(conn, selected, chunks[0], plan) if chunks else None
    for index, chunk in enumerate(chunks):
        assert upcoming is not None
        summaries = await upcoming
        upcoming = _load(conn, selected, chunks[index + 1], plan) if index + 1 < len(chunks) else None
        try:
            missing += await _fetch_chunk(conn, selected, chunk, plan, summaries)
            await conn.maybe_flush()
        except BaseException:
            if upcoming is not None:
                upcoming.cancel()
            raise
    if missing and not cmd.uid:
        # RFC 9051 §7.1, RFC 5530 §3: another session expunged some of them; NOOP will tell.
        return f"{cmd.display_name} completed; some messages were expunged meanwhile", "EXPUNGEISSUED"
    return f"{cmd.display_name} completed"


def _uid_filter(ranges: Sequence[tuple[int, int]], star: int):  # type: ignore[no-untyped-def]
    bounds = []
    for first, last in ranges:
        a = star if first == 0 else first
        b = 2**63 if last == 0 else last
        if first == 0 and last == 0:
            b = 2**63
        bounds.append((min(a, b), max(a, b)))

    def wanted(uid: int) -> bool:
        return any(a <= uid <= b for a, b in bounds)

    return wanted


class _Plan:
    """What a FETCH needs, worked out once for all its messages."""

    def __init__(self, items: list[FetchAtt], *, readonly: bool) -> None:
        self.items = items
        self.summary = any(att.name in _SUMMARY_ITEMS for att in items)
        self.raw = any(att.section is not None or (att.name.startswith("RFC822") and att.name != "RFC822.SIZE")
                       for att in items)
        self.parts = any(att.section is not None and (att.section.part or att.name.startswith("BINARY"))
                         for att in items)
        self.sets_seen = not readonly and any(_sets_seen(att) for att in items)
        self.has_flags = any(att.name == "FLAGS" for att in items)
        self.has_modseq = any(att.name == "MODSEQ" for att in items)


def _load(conn: Connection, selected: SelectedFolder, chunk: list[tuple[int, int]],
          plan: _Plan) -> asyncio.Future[dict[int, api.MessageSummary]]:
    async def load() -> dict[int, api.MessageSummary]:
        if not (plan.summary or plan.raw or plan.sets_seen):
            return {}
        found = await conn.store.summaries(selected.folder_id, [uid for _, uid in chunk])
        return {summary.uid: summary for summary in found}

    return asyncio.ensure_future(load())


async def _fetch_chunk(conn: Connection, selected: SelectedFolder, chunk: list[tuple[int, int]], plan: _Plan,
                       summaries: dict[int, api.MessageSummary]) -> int:
    store = conn.store
    uids = [uid for _, uid in chunk]
    flags_changed: dict[int, api.MessageState] = {}
    if plan.sets_seen:
        unseen = [uid for uid in uids if uid in summaries and "\\Seen" not in summaries[uid].flags]
        if unseen:
            update = await store.store_flags(selected.folder_id, unseen, "add", ["\\Seen"], origin=conn.origin)
            for state in update.changed:
                flags_changed[state.uid] = state
            selected.note_reported(update.changed)
            selected.touch()
    need_summary = plan.summary or plan.raw or plan.sets_seen
    missing = 0
    condstore = conn.condstore
    bodies = _Bodies(conn, selected, [uid for uid in uids if uid in summaries], summaries, plan) if plan.raw else None
    try:
        for seq, uid in chunk:
            missing += await _render(conn, seq, uid, summaries.get(uid), flags_changed.get(uid), plan, bodies,
                                     need_summary, condstore)
    finally:
        if bodies is not None:
            bodies.cancel()
    return missing


class _Bodies:
    """Raw messages and part maps read a few messages ahead of the one being written (bounded memory)."""

    WINDOW = 2

    def __init__(self, conn: Connection, selected: SelectedFolder, uids: list[int],
                 summaries: dict[int, api.MessageSummary], plan: _Plan) -> None:
        self.conn = conn
        self.selected = selected
        self.uids = uids
        self.position = {uid: i for i, uid in enumerate(uids)}
        self.summaries = summaries
        self.plan = plan
        self.tasks: dict[int, asyncio.Future[tuple[bytes, list[api.PartLocation]]]] = {}

    async def _load(self, uid: int) -> tuple[bytes, list[api.PartLocation]]:
        store = self.conn.store
        raw = await store.raw(self.summaries[uid].blob_id)
        parts = await store.parts(self.selected.folder_id, uid) if self.plan.parts else []
        return raw, parts

    async def get(self, uid: int) -> tuple[bytes, list[api.PartLocation]] | None:
        start = self.position[uid]
        for other in self.uids[start : start + self.WINDOW]:
            if other not in self.tasks:
                self.tasks[other] = asyncio.ensure_future(self._load(other))
        try:
            return await self.tasks.pop(uid)
        except api.StoreError:  # expunged meanwhile (its blob may be gone)
            return None

    def cancel(self) -> None:
        for task in self.tasks.values():
            task.cancel()
            task.add_done_callback(_consume)
        self.tasks.clear()


def _consume(task: asyncio.Future[object]) -> None:
    if not task.cancelled():
        task.exception()


async def _render(conn: Connection, seq: int, uid: int, summary: api.MessageSummary | None,
                  state: api.MessageState | None, plan: _Plan, bodies: _Bodies | None, need_summary: bool,
                  condstore: bool) -> int:
    """Write one message's FETCH response; 1 if it has vanished, else 0."""
    if summary is None and need_summary:
        return 1
    flags = state.flags if state is not None else (summary.flags if summary is not None else frozenset())
    modseq = state.modseq if state is not None else (summary.modseq if summary is not None else 0)
    out: list[bytes] = []
    raw: bytes | None = None
    parts: list[api.PartLocation] | None = None
    for att in plan.items:
        name = att.name
        if name == "UID":
            out.append(b"UID %d" % uid)
        elif name == "FLAGS":
            out.append(b"FLAGS " + response.flag_list(flags))
        elif name == "MODSEQ":
            out.append(b"MODSEQ (%d)" % modseq)
        elif summary is None:
            continue
        elif name == "INTERNALDATE":
            out.append(b"INTERNALDATE " + response.imap_datetime(summary.internal_date))
        elif name == "RFC822.SIZE":
            out.append(b"RFC822.SIZE %d" % summary.size)
        elif name == "ENVELOPE":
            out.append(b"ENVELOPE " + summary.envelope)
        elif name == "BODYSTRUCTURE":
            out.append(b"BODYSTRUCTURE " + summary.bodystructure)
        elif name == "BODY" and att.section is None:
            out.append(b"BODY " + summary.body)
        else:
            if raw is None:
                assert bodies is not None
                loaded = await bodies.get(uid)
                if loaded is None:
                    return 1
                raw, parts = loaded
            out.append(_body_item(att, raw, parts or []))
    if state is not None:
        if not plan.has_flags:
            out.append(b"FLAGS " + response.flag_list(flags))
        if condstore and not plan.has_modseq:
            out.append(b"MODSEQ (%d)" % modseq)
    conn.write(b"* %d FETCH (" % seq + b" ".join(out) + b")\r\n")
    if raw is not None:
        await conn.maybe_flush()
    return 0


# Sections -------------------------------------------------------------------------------------------------------


def _body_item(att: FetchAtt, raw: bytes, parts: list[api.PartLocation]) -> bytes:
    name = att.name
    if name == "RFC822":
        return b"RFC822 " + response.literal(raw)
    if name == "RFC822.HEADER":
        return b"RFC822.HEADER " + response.literal(raw[: _top(parts, raw).header_end])
    if name == "RFC822.TEXT":
        return b"RFC822.TEXT " + response.literal(raw[_top(parts, raw).header_end :])
    section = att.section
    assert section is not None
    if name == "BINARY.SIZE":
        data = _binary(section, raw, parts)
        return b"BINARY.SIZE[%s] %d" % (section.spec().encode(), len(data))
    if name in ("BINARY", "BINARY.PEEK"):
        data = _binary(section, raw, parts)
        label = b"BINARY[" + section.spec().encode() + b"]"
        data, label = _partial(att, data, label)
        return label + b" " + response.literal(data, binary=b"\x00" in data)
    data_or_none = section_bytes(section, raw, parts)
    label = b"BODY[" + section.spec().encode() + b"]"
    if data_or_none is None:
        return label + b" NIL"
    data, label = _partial(att, data_or_none, label)
    return label + b" " + response.literal(data)


def _partial(att: FetchAtt, data: bytes, label: bytes) -> tuple[bytes, bytes]:
    if att.partial is None:
        return data, label
    origin, count = att.partial
    return data[origin : origin + count], label + b"<%d>" % origin


def _top(parts: list[api.PartLocation], raw: bytes) -> api.PartLocation:
    for part in parts:
        if part.section == "":
            return part
    end = _header_end(raw, 0)
    return api.PartLocation("", 0, end, len(raw), "text/plain", "7bit", None, False)


def _header_end(raw: bytes, start: int) -> int:
    """Offset just past the empty line ending the header that starts at ``start`` (or the end)."""
    if raw.startswith(b"\r\n", start):
        return start + 2
    if raw.startswith(b"\n", start):
        return start + 1
    crlf = raw.find(b"\r\n\r\n", start)
    lf = raw.find(b"\n\n", start)
    ends = [i + 4 for i in (crlf,) if i >= 0] + [i + 2 for i in (lf,) if i >= 0]
    return min(ends) if ends else len(raw)


def _find(parts: list[api.PartLocation], section: str) -> api.PartLocation | None:
    for part in parts:
        if part.section == section:
            return part
    return None


def section_bytes(section: Section, raw: bytes, parts: list[api.PartLocation]) -> bytes | None:
    """The octets of ``BODY[section]`` (RFC 9051 §6.4.5); None when the part does not exist."""
    if not section.part:
        header_end = _top(parts, raw).header_end if parts else _header_end(raw, 0)
        return _text_of(section, raw, 0, header_end, len(raw))
    location = _find(parts, ".".join(str(n) for n in section.part))
    if location is None:
        return None
    if section.text == "":
        return raw[location.header_end : location.body_end]
    if section.text == "MIME":
        return raw[location.header_start : location.header_end]
    # HEADER, HEADER.FIELDS(.NOT), TEXT of a message/rfc822 part: its encapsulated message (RFC 9051 §6.4.5).
    if not location.is_message:
        return None
    inner_end = location.message_body_start
    if inner_end is None:
        inner_end = _header_end(raw, location.header_end)
    return _text_of(section, raw, location.header_end, inner_end, location.body_end)


def _text_of(section: Section, raw: bytes, start: int, header_end: int, end: int) -> bytes:
    text = section.text
    if text == "":
        return raw[start:end]
    if text == "TEXT":
        return raw[header_end:end]
    header = raw[start:header_end]
    if text == "HEADER":
        return header
    wanted = {f.lower() for f in section.fields}
    keep = text == "HEADER.FIELDS"
    out = [field for name, field in _header_fields(header) if (name in wanted) == keep]
    return b"".join(out) + b"\r\n"


_FIELD_START = re.compile(rb"(?m)^(?=[^ \t\r\n])")


def _header_fields(header: bytes) -> list[tuple[str, bytes]]:
    """A header block split into (lower-case name, field octets with folding and line end)."""
    fields: list[tuple[str, bytes]] = []
    body = header.rstrip(b"\r\n")
    if not body:
        return fields
    starts = [m.start() for m in _FIELD_START.finditer(body)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    starts.append(len(body))
    for a, b in itertools.pairwise(starts):
        field = body[a:b]
        if not field.endswith(b"\n"):
            field += b"\r\n"
        colon = field.find(b":")
        name = field[:colon].strip().decode("latin-1").lower() if colon > 0 else ""
        fields.append((name, field))
    return fields


def _binary(section: Section, raw: bytes, parts: list[api.PartLocation]) -> bytes:
    """``BINARY[section]`` (RFC 3516 §4.2): the part's content with its transfer encoding undone."""
    if not section.part:
        location = _top(parts, raw)
        body = raw[location.header_end :]
        encoding = location.transfer_encoding if not location.content_type.startswith("multipart/") else "7bit"
        return _decode(body, encoding)
    location = _find(parts, ".".join(str(n) for n in section.part))
    if location is None:
        raise ImapError(f"no part {section.spec()} in this message", "NONEXISTENT")
    body = raw[location.header_end : location.body_end]
    if location.content_type.startswith(("multipart/", "message/")):
        return body
    return _decode(body, location.transfer_encoding)


def _decode(body: bytes, encoding: str) -> bytes:
    encoding = (encoding or "7bit").lower()
    if encoding in ("7bit", "8bit", "binary", ""):
        return body
    if encoding == "base64":
        # Lenient, as mail readers are: stray characters are skipped and a truncated last group dropped.
        cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", body)
        cleaned = cleaned[: len(cleaned) - len(cleaned) % 4]
        try:
            return binascii.a2b_base64(cleaned)
        except (binascii.Error, ValueError):  # pragma: no cover - cleaned input always decodes
            raise ImapError("the part's base64 content is corrupt", "PARSE") from None
    if encoding == "quoted-printable":
        return quopri.decodestring(body)
    raise ImapError(f"unknown content-transfer-encoding {encoding}", "UNKNOWN-CTE")  # RFC 3516 §4.3
