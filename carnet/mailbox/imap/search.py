"""SEARCH and UID SEARCH (RFC 9051 §6.4.4, RFC 3501 §6.4.4) with ESEARCH results (RFC 4731), SEARCHRES (RFC 5182)
and the MODSEQ key (RFC 7162 §3.1.5).

The parser builds a :class:`~carnet.mailbox.api.SearchKey` tree; here sequence-number and ``$`` keys become UID
ranges, ``RECENT`` / ``NEW`` match nothing and ``OLD`` everything (``\\Recent`` is not kept), and the store
evaluates the rest. IMAP4rev1 clients get ``* SEARCH`` unless they ask for RETURN options; IMAP4rev2 clients
always get ``* ESEARCH`` (RFC 9051 §7.3.4). Charsets: UTF-8 and US-ASCII (``NO [BADCHARSET]`` otherwise).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from carnet.mailbox import api
from carnet.mailbox.imap import response
from carnet.mailbox.imap.parser import Command, Search, SequenceSet
from carnet.mailbox.imap.response import ImapError

if TYPE_CHECKING:
    from carnet.mailbox.imap.server import Connection
    from carnet.mailbox.imap.session import SelectedFolder

CHARSETS = ("UTF-8", "US-ASCII")


async def translate(key: api.SearchKey, selected: SelectedFolder) -> api.SearchKey:
    """Resolve the session-level keys of a search tree (sequence numbers, ``*``, ``$``, \\Recent)."""
    if key.op in ("seq", "uid"):
        if key.value == "$":
            seqset = SequenceSet(saved=True)
        else:
            seqset = SequenceSet(tuple((r.first, r.last) for r in key.uids))
        ranges = await selected.uid_ranges(seqset, uid=key.op == "uid")
        if not ranges:
            return api.SearchKey("not", children=(api.SearchKey("all"),))
        return api.SearchKey("uid", uids=ranges)
    if key.op in ("recent", "new"):
        return api.SearchKey("not", children=(api.SearchKey("all"),))
    if key.op == "old":
        return api.SearchKey("all")
    if key.op == "flag" and key.value == "\\Recent":
        return api.SearchKey("all") if key.negate else api.SearchKey("not", children=(api.SearchKey("all"),))
    if key.children:
        return replace(key, children=tuple([await translate(child, selected) for child in key.children]))
    return key


def _uses_modseq(key: api.SearchKey) -> bool:
    return key.op == "modseq" or any(_uses_modseq(child) for child in key.children)


async def search(conn: Connection, cmd: Command) -> str:
    """SEARCH / UID SEARCH (RFC 9051 §6.4.4, §6.4.8; ESEARCH RFC 4731 §3; SEARCHRES RFC 5182 §2)."""
    selected = conn.selected
    assert selected is not None
    args: Search = cmd.args
    if args.charset is not None and args.charset not in CHARSETS:
        raise ImapError(f"charset {args.charset} is not supported", "BADCHARSET (UTF-8 US-ASCII)")
    modseq_key = _uses_modseq(args.key)
    if modseq_key:
        conn.condstore = True  # CONDSTORE-enabling (RFC 7162 §3.1)
    returns = args.returns
    save = returns is not None and "SAVE" in returns
    try:
        key = await translate(args.key, selected)
        found = await conn.store.search(selected.folder_id, key)
    except BaseException:
        if save:
            selected.saved = ()  # RFC 5182 §2.1: a failed SEARCH (SAVE) empties the saved result
        raise
    await selected.ensure_map()
    matched = [uid for uid in found if selected.seq_of(uid) is not None]
    numbers = matched if cmd.uid else [selected.seq_of(uid) or 0 for uid in matched]
    highest = 0
    if modseq_key:
        # RFC 7162 §3.1.5: the highest MODSEQ of the messages found.
        for start in range(0, len(matched), 1000):
            chunk = await conn.store.summaries(selected.folder_id, matched[start : start + 1000])
            highest = max(highest, max((s.modseq for s in chunk), default=0))

    if save:
        assert returns is not None
        others = set(returns) - {"SAVE"}
        if others and others <= {"MIN", "MAX"}:  # RFC 5182 §2.4
            kept = []
            if matched and "MIN" in others:
                kept.append(matched[0])
            if matched and "MAX" in others:
                kept.append(matched[-1])
            selected.saved = tuple(sorted(set(kept)))
        else:
            selected.saved = tuple(matched)
        if not others:
            return f"{cmd.display_name} completed"  # SAVE alone: no ESEARCH response (RFC 5182 §2.1)

    if returns is None and not conn.rev2:
        line = "SEARCH" + "".join(f" {n}" for n in numbers)
        if modseq_key and numbers:
            line += f" (MODSEQ {highest})"  # RFC 7162 §3.1.5
        conn.untagged(line)
        return f"{cmd.display_name} completed"

    options = set(returns or ()) - {"SAVE"} or {"ALL"}  # RETURN () means ALL (RFC 4731 §3.1)
    out = b"ESEARCH (TAG " + response.quoted(cmd.tag.encode()) + b")"
    if cmd.uid:
        out += b" UID"
    if numbers:
        if "MIN" in options:
            out += b" MIN %d" % numbers[0]
        if "MAX" in options:
            out += b" MAX %d" % numbers[-1]
    if "COUNT" in options:
        out += b" COUNT %d" % len(numbers)
    if "ALL" in options and numbers:
        out += b" ALL " + response.number_set(numbers).encode()
    if modseq_key and numbers:
        out += b" MODSEQ %d" % highest
    conn.untagged(out)
    return f"{cmd.display_name} completed"
