"""Mailbox commands: NAMESPACE (RFC 2342, RFC 9051 §6.3.10), CREATE (§6.3.4, CREATE-SPECIAL-USE RFC 6154 §3),
DELETE (§6.3.5), RENAME (§6.3.6), SUBSCRIBE / UNSUBSCRIBE (§6.3.7-8), LIST (§6.3.9 with LIST-EXTENDED RFC 5258,
LIST-STATUS RFC 5819, SPECIAL-USE RFC 6154 §2), LSUB (RFC 3501 §6.3.9) and STATUS (§6.3.11, STATUS=SIZE RFC 8438,
HIGHESTMODSEQ RFC 7162 §3.1.6).

One personal namespace with ``/`` as the hierarchy delimiter. Names are UTF-8 in the store and on the wire to
IMAP4rev2 / UTF8=ACCEPT clients, modified UTF-7 to the others. ``\\HasChildren`` / ``\\HasNoChildren`` and the
special-use attributes are always returned (RFC 5258 §4 and RFC 6154 §2 allow it); a parent that does not exist
is listed as ``\\NonExistent`` (``\\Noselect`` to rev1 clients) when a ``%`` stops above its children.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from carnet.mailbox import api
from carnet.mailbox.imap.parser import STATUS_ITEMS, Command, Create, ListArgs, MailboxArg, Rename, Status
from carnet.mailbox.imap.response import ImapError

if TYPE_CHECKING:
    from carnet.mailbox.imap.server import Connection

DELIMITER = "/"
_SPECIAL_USES = {use.value.upper(): use for use in api.SpecialUse}


async def namespace(conn: Connection, cmd: Command) -> str:
    """NAMESPACE (RFC 2342 §5, RFC 9051 §6.3.10): one personal namespace, no others."""
    conn.untagged('NAMESPACE (("" "/")) NIL NIL')
    return "NAMESPACE completed"


def _folder_name(conn: Connection, raw: str) -> str:
    name = conn.mailbox_in(raw)
    if name.upper() == "INBOX":
        return "INBOX"
    if name.upper().startswith("INBOX/"):
        name = "INBOX" + name[5:]
    return name


async def create(conn: Connection, cmd: Command) -> str:
    """CREATE (RFC 9051 §6.3.4): a trailing delimiter is dropped; ``USE (…)`` sets the special use (RFC 6154 §3)."""
    args: Create = cmd.args
    name = _folder_name(conn, args.mailbox).rstrip(DELIMITER)
    if not name:
        raise ImapError("empty mailbox name", "CANNOT")
    if name == "INBOX":
        raise ImapError("INBOX always exists", "ALREADYEXISTS")
    if "*" in name or "%" in name or any(part == "" for part in name.split(DELIMITER)):
        raise ImapError("mailbox names must not contain '*', '%' or empty levels", "CANNOT")
    special: api.SpecialUse | None = None
    if args.special_use:
        if len(args.special_use) > 1:
            raise ImapError("one special use per mailbox", "USEATTR")
        special = _SPECIAL_USES.get(args.special_use[0].upper())
        if special is None:
            raise ImapError(f"unsupported special use {args.special_use[0]}", "USEATTR")  # RFC 6154 §3
    await conn.store.create_folder(conn.mailbox_id, name, special)
    return "CREATE completed"


async def delete(conn: Connection, cmd: Command) -> str:
    """DELETE (RFC 9051 §6.3.5)."""
    args: MailboxArg = cmd.args
    name = _folder_name(conn, args.mailbox)
    if name == "INBOX":
        raise ImapError("INBOX cannot be deleted", "CANNOT")
    await conn.store.delete_folder(conn.mailbox_id, name)
    return "DELETE completed"


async def rename(conn: Connection, cmd: Command) -> str:
    """RENAME (RFC 9051 §6.3.6); renaming INBOX moves its messages (the store does it)."""
    args: Rename = cmd.args
    old = _folder_name(conn, args.old)
    new = _folder_name(conn, args.new).rstrip(DELIMITER)
    if new == "INBOX":
        raise ImapError("INBOX already exists", "ALREADYEXISTS")
    if not new or "*" in new or "%" in new or any(part == "" for part in new.split(DELIMITER)):
        raise ImapError("mailbox names must not contain '*', '%' or empty levels", "CANNOT")
    await conn.store.rename_folder(conn.mailbox_id, old, new)
    return "RENAME completed"


async def subscribe(conn: Connection, cmd: Command) -> str:
    """SUBSCRIBE / UNSUBSCRIBE (RFC 9051 §6.3.7, §6.3.8)."""
    args: MailboxArg = cmd.args
    await conn.store.set_subscribed(conn.mailbox_id, _folder_name(conn, args.mailbox), cmd.name == "SUBSCRIBE")
    return f"{cmd.name} completed"


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A LIST pattern as a regular expression: ``*`` any text, ``%`` any text without the delimiter
    (RFC 9051 §6.3.9); INBOX in any case is INBOX."""
    if pattern.upper().startswith("INBOX") and (len(pattern) == 5 or pattern[5] in (DELIMITER, "*", "%")):
        pattern = "INBOX" + pattern[5:]
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _status_items(conn: Connection, folder: api.FolderInfo, items: tuple[str, ...]) -> str:
    values = {
        "MESSAGES": folder.messages,
        "UIDNEXT": folder.uidnext,
        "UIDVALIDITY": folder.uidvalidity,
        "UNSEEN": folder.unseen,
        "DELETED": folder.deleted,
        "SIZE": folder.size,
        "RECENT": 0,
        "HIGHESTMODSEQ": folder.highestmodseq,
    }
    # In the order RFC 9051 §6.3.11 defines them (as its examples answer), whatever the order asked.
    return " ".join(f"{item} {values[item]}" for item in sorted(items, key=STATUS_ITEMS.index))


async def list_command(conn: Connection, cmd: Command) -> str:
    """LIST / LSUB (RFC 9051 §6.3.9, RFC 5258, RFC 5819, RFC 6154; RFC 3501 §6.3.9)."""
    args: ListArgs = cmd.args
    word = "LSUB" if args.lsub else "LIST"
    if not args.lsub and len(args.patterns) == 1 and args.patterns[0] == "" and not args.extended:
        # RFC 9051 §6.3.9: the hierarchy delimiter and the root of the reference.
        conn.untagged('LIST (\\Noselect) "/" ""')
        return "LIST completed"
    folders = await conn.store.list_folders(conn.mailbox_id)
    by_name = {f.name: f for f in folders}
    reference = conn.mailbox_in(args.reference) if args.reference else ""
    regexes = []
    for pattern in args.patterns:
        if pattern == "":
            continue
        try:
            decoded = conn.mailbox_in(pattern)
        except ImapError:
            decoded = pattern
        regexes.append(pattern_regex(reference + decoded))

    def matches(name: str) -> bool:
        return any(rx.fullmatch(name) for rx in regexes)

    selection = set(args.selection)
    returns = set(args.returns)
    subscribed_only = args.lsub or "SUBSCRIBED" in selection
    show_subscribed = not args.lsub and (subscribed_only or "SUBSCRIBED" in returns)
    recursive = "RECURSIVEMATCH" in selection

    names = set(by_name)
    children: dict[str, list[str]] = {}
    for name in names:
        parts = name.split(DELIMITER)
        for i in range(1, len(parts)):
            children.setdefault(DELIMITER.join(parts[:i]), []).append(name)

    entries: list[tuple[str, list[str], str]] = []  # (name, attributes, extended data)
    for name in sorted(names | set(children), key=_list_order):
        folder = by_name.get(name)
        attrs: list[str] = []
        extra = ""
        descendants = children.get(name, [])
        if folder is None:
            # A parent that exists only through its children: listed when the pattern stops above them.
            if subscribed_only or not matches(name) or any(matches(d) for d in descendants):
                continue
            attrs.append("\\NonExistent" if conn.rev2 or args.extended else "\\Noselect")
        else:
            if not matches(name):
                continue
            if "SPECIAL-USE" in selection and folder.special_use is None:
                continue
            if subscribed_only and not folder.subscribed:
                if not (recursive and any(by_name[d].subscribed for d in descendants)):
                    continue
                extra = ' ("CHILDINFO" ("SUBSCRIBED"))'  # RFC 5258 §3.5
            elif recursive and any(by_name[d].subscribed for d in descendants):
                extra = ' ("CHILDINFO" ("SUBSCRIBED"))'
            if show_subscribed and folder.subscribed:
                attrs.append("\\Subscribed")
        if not args.lsub:
            attrs.append("\\HasChildren" if descendants else "\\HasNoChildren")
        if folder is not None and folder.special_use is not None:
            attrs.append(folder.special_use.value)
        if args.lsub and folder is None:
            attrs = ["\\Noselect"]
        entries.append((name, attrs, extra))

    for name, attrs, extra in entries:
        line = f"{word} ({' '.join(attrs)}) \"/\" ".encode() + conn.mailbox_out(name) + extra.encode()
        conn.untagged(line)
        folder = by_name.get(name)
        if args.status_items and folder is not None:
            # RFC 5819 §2: a STATUS response after the LIST response of each selectable mailbox.
            conn.untagged(b"STATUS " + conn.mailbox_out(name) + b" ("
                          + _status_items(conn, folder, args.status_items).encode() + b")")
        await conn.maybe_flush()
    return f"{word} completed"


def _list_order(name: str) -> tuple[int, str]:
    return (0 if name == "INBOX" or name.startswith("INBOX/") else 1, name)


async def status(conn: Connection, cmd: Command) -> str:
    """STATUS (RFC 9051 §6.3.11), with SIZE (RFC 8438), DELETED (RFC 9051) and HIGHESTMODSEQ (RFC 7162 §3.1.6).
    RECENT is always 0 (\\Recent is not kept)."""
    args: Status = cmd.args
    folder = await conn.store.get_folder(conn.mailbox_id, _folder_name(conn, args.mailbox))
    conn.untagged(b"STATUS " + conn.mailbox_out(folder.name) + b" ("
                  + _status_items(conn, folder, args.items).encode() + b")")
    return "STATUS completed"
