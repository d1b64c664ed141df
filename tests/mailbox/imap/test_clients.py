"""Every command through real client libraries: Python's ``imaplib`` and ``aioimaplib``, as IMAP4rev1 clients and
as IMAP4rev2 clients (ENABLE IMAP4rev2), over STARTTLS and over implicit TLS. The server's view is checked through
the store where it matters.

imaplib notes: its UTF8=ACCEPT mode puts ``UTF8 (`` inside the APPEND literal (a client bug), so the rev2 sessions
enable IMAP4rev2 only and switch imaplib's encoding to UTF-8 for mailbox names; it has no IDLE, which is sent
through its low-level send/readline.
"""

from __future__ import annotations

import asyncio
import imaplib
import re
from datetime import UTC, datetime

import pytest

from carnet.mailbox.imap import utf7

from .imaphelp import ImapEnv, aio_client, alternative, plain, with_attachment


def ok(result: tuple[str, list]) -> list:  # type: ignore[type-arg]
    typ, data = result
    assert typ == "OK", result
    return data


def _name(name: str, rev2: bool) -> str:
    """A mailbox name argument as the client must send it: UTF-8 (rev2) or modified UTF-7 (rev1), quoted."""
    return '"' + (name if rev2 else utf7.encode(name)) + '"'


def imaplib_session(env: ImapEnv, tls: str, rev2: bool) -> None:
    c = env.client(tls=tls)
    caps = set(ok(c.capability())[0].decode().split())
    assert {"IMAP4rev1", "IMAP4rev2", "IDLE", "MOVE", "UIDPLUS", "CONDSTORE", "QRESYNC", "ESEARCH", "SEARCHRES",
            "LIST-EXTENDED", "LIST-STATUS", "SPECIAL-USE", "NAMESPACE", "UNSELECT", "QUOTA", "BINARY", "ID",
            "ENABLE", "UTF8=ACCEPT", "LITERAL+", "STATUS=SIZE"} <= caps
    assert "LOGINDISABLED" not in caps and "STARTTLS" not in caps

    # ID (RFC 2971) and ENABLE (RFC 5161)
    ok(c.xatom("ID", '("name" "imaplib" "version" "3.11")'))
    assert c.untagged_responses.pop("ID")[0].startswith(b'("name" "carnet"')
    if rev2:
        ok(c.enable("IMAP4rev2"))
        assert c.untagged_responses.pop("ENABLED") == [b"IMAP4rev2"]
        c._encoding = "utf-8"
    else:
        ok(c.enable("CONDSTORE"))
        assert c.untagged_responses.pop("ENABLED") == [b"CONDSTORE"]
    assert ok(c.namespace()) == [b'(("" "/")) NIL NIL']

    # CREATE, LIST, LSUB, SUBSCRIBE, RENAME, DELETE, STATUS
    ok(c.create(_name("Résumés/2024", rev2)))
    ok(c.create(_name("Projets", rev2) + " (USE (\\Archive))"))
    listing = ok(c.list('""', "*"))
    wire = ('"Résumés' if rev2 else "R&AOk-sum&AOk-s")  # 8-bit names are quoted, others are atoms
    end = '"' if rev2 else ""
    assert f'(\\HasChildren) "/" {wire}{end}'.encode() in listing
    assert f'(\\HasNoChildren) "/" {wire}/2024{end}'.encode() in listing
    assert b'(\\HasNoChildren \\Archive) "/" Projets' in listing
    assert ok(c.list('""', "%")).count(f'(\\HasChildren) "/" {wire}{end}'.encode()) == 1
    ok(c.unsubscribe(_name("Résumés", rev2)))  # the store subscribes the folders it creates
    ok(c.unsubscribe(_name("Résumés/2024", rev2)))
    assert ok(c.lsub('""', "R*")) == [None]
    ok(c.subscribe(_name("Résumés/2024", rev2)))
    assert ok(c.lsub('""', "R*")) == [f'() "/" {wire}/2024{end}'.encode()]
    extended = ok(c.list('(SPECIAL-USE) ""', '"*" RETURN (STATUS (MESSAGES UNSEEN SIZE))'))
    assert extended[0] == b'(\\HasNoChildren \\Archive) "/" Archive'
    assert c.untagged_responses.pop("STATUS")[0] == b"Archive (MESSAGES 0 UNSEEN 0 SIZE 0)"
    ok(c.rename(_name("Résumés/2024", rev2), _name("Résumés/2025", rev2)))
    ok(c.delete(_name("Résumés/2025", rev2)))
    typ, data = c.delete("INBOX")
    assert typ == "NO"
    typ, data = c.select("Nonexistent")
    assert typ == "NO" and b"[NONEXISTENT]" in data[0]
    assert ok(c.status("INBOX", "(MESSAGES UIDNEXT UNSEEN DELETED SIZE HIGHESTMODSEQ)"))[0].startswith(
        b"INBOX (MESSAGES 0 UIDNEXT 1 UNSEEN 0 DELETED 0 SIZE 0 HIGHESTMODSEQ ")

    # APPEND (RFC 4315 APPENDUID); the internal date and flags are kept
    when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    results = [ok(c.append("INBOX", "(\\Flagged $Urgent)", when, plain(1, subject="premier")))[0],
               ok(c.append("INBOX", None, None, alternative(2)))[0],
               ok(c.append("INBOX", "(\\Seen)", None, with_attachment(3)))[0]]
    uidvalidity = int(re.search(rb"APPENDUID (\d+) 1\]", results[0]).group(1))  # type: ignore[union-attr]
    assert results[2].startswith(b"[APPENDUID %d 3]" % uidvalidity)
    typ, data = c.append("Nope", None, None, plain(9))
    assert typ == "NO" and data[0].startswith(b"[TRYCREATE]")

    # EXAMINE is read-only; SELECT read-write with the rev1 or rev2 answers
    assert ok(c.select("INBOX", readonly=True)) == [b"3"]
    typ, data = c.store("1", "+FLAGS", "(\\Deleted)")
    assert typ == "NO" and b"[READ-ONLY]" in data[0]
    assert ok(c.select("INBOX")) == [b"3"]
    assert c.untagged_responses.pop("UIDVALIDITY") == [str(uidvalidity).encode()]
    assert c.untagged_responses.pop("UIDNEXT") == [b"4"]
    assert c.untagged_responses.pop("HIGHESTMODSEQ")
    if rev2:
        assert "RECENT" not in c.untagged_responses and "UNSEEN" not in c.untagged_responses
        assert c.untagged_responses.pop("LIST") == [b'() "/" INBOX']
        assert c.untagged_responses.pop("CLOSED") == [b""] if "CLOSED" in c.untagged_responses else True
    else:
        assert c.untagged_responses.pop("RECENT") == [b"0"]
        assert c.untagged_responses.pop("UNSEEN") == [b"1"]

    # FETCH: summary items, sections, BINARY, MODSEQ; BODY[] sets \Seen and reports FLAGS
    data = ok(c.fetch("1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE)"))
    assert data[0].startswith(b'1 (UID 1 FLAGS (\\Flagged $Urgent) RFC822.SIZE %d INTERNALDATE "06-May-2024 '
                              b'07:08:09 +0000")' % len(plain(1, subject="premier")))
    envelope = ok(c.fetch("1", "ENVELOPE"))[0]
    assert b'"premier" (("Paul Petit" NIL "paul.petit" "carnet.test"))' in envelope
    structure = ok(c.uid("FETCH", "3", "(BODYSTRUCTURE)"))[0]
    assert b'"APPLICATION" "PDF" ("NAME" "resultat-3.pdf") NIL NIL "BASE64"' in structure
    assert b'"MIXED" ("BOUNDARY" "m3")' in structure
    peek = ok(c.fetch("2", "(BODY.PEEK[1] BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    assert peek[0] == (b"2 (BODY[1] {22}", b"Resultats du patient 2")  # the CRLF before a boundary is not the part's
    assert peek[1][1] == "Subject: Résultats 2\r\n\r\n".encode()
    binary = ok(c.fetch("3", "(BINARY.PEEK[2] BINARY.SIZE[2] BINARY.PEEK[1]<0.8>)"))
    assert binary[0][1].startswith(b"%PDF-1.4") and b"BINARY.SIZE[2] 48" in binary[1][0]
    assert binary[1][1] == b"Ci-joint"
    read = ok(c.fetch("2", "(BODY[TEXT])"))
    assert b" FLAGS (\\Seen)" in read[-1]
    assert ok(c.fetch("1", "(MODSEQ)"))[0].startswith(b"1 (MODSEQ (")
    assert ok(c.fetch("1", "(RFC822.HEADER)"))[0][1].startswith(b"From: Paul Petit")
    full = ok(c.uid("FETCH", "1", "(BODY.PEEK[])"))
    assert full[0][1] == plain(1, subject="premier")
    with pytest.raises(imaplib.IMAP4.error, match="beyond the 3 messages"):
        c.fetch("9", "FLAGS")

    # SEARCH (rev1 answers SEARCH, rev2 ESEARCH), ESEARCH RETURN, CHARSET, UID SEARCH
    c.literal = "résultats".encode()  # imaplib sends it as a literal after the last argument
    typ, data = c.search("UTF-8", "SUBJECT")
    if rev2:
        assert data == [None]
        assert c.untagged_responses.pop("ESEARCH")[0].endswith(b") ALL 2")
    else:
        assert data == [b"2"]
    assert ok(c.uid("SEARCH", "RETURN (MIN MAX COUNT ALL) UNSEEN")) in ([None], [b""])
    assert c.untagged_responses.pop("ESEARCH")[0].endswith(b" UID MIN 1 MAX 1 COUNT 1 ALL 1")
    typ, data = c.search("KOI8-R", "ALL")
    assert typ == "NO" and b"BADCHARSET" in data[0]
    ok(c.uid("SEARCH", "RETURN (SAVE) FROM labo"))
    assert ok(c.fetch("$", "(UID)"))[0] == b"3 (UID 3)"

    # STORE: +FLAGS, -FLAGS.SILENT, UNCHANGEDSINCE (MODIFIED)
    stored = ok(c.store("1:2", "+FLAGS", "(\\Answered)"))
    assert stored[0].startswith(b"1 (UID 1 FLAGS (\\Answered \\Flagged $Urgent) MODSEQ (")  # CONDSTORE is enabled
    ok(c.store("1", "-FLAGS.SILENT", "($Urgent)"))
    states = ok(c.uid("FETCH", "1", "(FLAGS MODSEQ)"))[0]
    modseq = int(re.search(rb"MODSEQ \((\d+)\)", states).group(1))  # type: ignore[union-attr]
    typ, data = c._simple_command("UID", "STORE", "1", f"(UNCHANGEDSINCE {modseq - 1}) +FLAGS", "(\\Draft)")
    assert typ == "OK" and data[-1].startswith(b"[MODIFIED 1]")

    # COPY (COPYUID), MOVE (COPYUID then EXPUNGE), EXPUNGE, UID EXPUNGE
    assert ok(c.copy("1:2", "Projets"))[-1].startswith(b"[COPYUID ")
    typ, data = c.copy("1", "Nope")
    assert typ == "NO" and data[0].startswith(b"[TRYCREATE]")
    moved = ok(c._simple_command("MOVE", "3", "Trash"))
    assert moved[-1] == b"MOVE completed"
    assert c.untagged_responses.pop("EXPUNGE") == [b"3"]
    ok(c.store("1", "+FLAGS.SILENT", "(\\Deleted)"))
    ok(c.store("2", "+FLAGS.SILENT", "(\\Deleted)"))
    ok(c.uid("EXPUNGE", "2"))
    assert c.untagged_responses.pop("EXPUNGE") == [b"2"]
    assert ok(c.expunge()) == [b"1"]

    # QUOTA (RFC 9208)
    typ, data = c.getquotaroot("INBOX")
    assert typ == "OK" and data[0] == [b'INBOX ""'] and data[1][0].startswith(b'"" (STORAGE ')
    assert ok(c.getquota('""'))[0].startswith(b'"" (STORAGE ')

    # IDLE (RFC 2177), NOOP, CHECK, UNSELECT, CLOSE, LOGOUT
    tag = c._new_tag()
    c.send(tag + b" IDLE\r\n")
    assert c.readline().startswith(b"+ ")
    c.send(b"DONE\r\n")
    assert c.readline() == tag + b" OK IDLE terminated\r\n"
    ok(c.noop())
    ok(c.check())
    ok(c.unselect())
    ok(c.select(_name("Projets", rev2)))
    ok(c.close())
    assert c.logout()[0] == "BYE"


@pytest.mark.parametrize(("tls", "rev2"), [("starttls", False), ("implicit", True), ("starttls", True),
                                           ("implicit", False)])
async def test_imaplib(imap: ImapEnv, tls: str, rev2: bool) -> None:
    await asyncio.to_thread(imaplib_session, imap, tls, rev2)
    projets = await imap.states("Projets")
    assert len(projets) == 2 and all("\\Answered" in s.flags for s in projets)
    assert len(await imap.states("Trash")) == 1
    assert await imap.states() == []


async def test_starttls_is_required_before_authentication(imap: ImapEnv) -> None:
    def session() -> None:
        c = imap.client(tls="none", login=False)
        assert {"STARTTLS", "LOGINDISABLED"} <= set(c.capabilities)
        assert not any(cap.startswith("AUTH=") for cap in c.capabilities)
        with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
            c.login(imap.address, imap.password)
        c.starttls(imap.context())
        assert "AUTH=PLAIN" in c.capabilities and "LOGINDISABLED" not in c.capabilities
        c.authenticate("PLAIN", lambda _challenge: f"\0{imap.address}\0{imap.password}".encode())
        assert c.state == "AUTH"
        c.logout()

    await asyncio.to_thread(session)


async def aioimaplib_session(env: ImapEnv, tls: str, rev2: bool) -> None:
    c = await aio_client(env, tls=tls)
    assert c.has_capability("IMAP4rev2") and c.has_capability("IDLE")
    if rev2:
        response = await c.enable("IMAP4rev2")
        assert response.result == "OK" and response.lines[0] == b"ENABLED IMAP4rev2"
    assert (await c.id(name="aioimaplib")).result == "OK"
    assert (await c.namespace()).lines[0] == b'(("" "/")) NIL NIL'
    assert (await c.create("Dossiers")).result == "OK"
    assert (await c.subscribe("Dossiers")).result == "OK"
    assert b'(\\Subscribed \\HasNoChildren) "/" Dossiers' in (
        await c.list('(SUBSCRIBED) ""', "*")).lines
    assert (await c.rename("Dossiers", '"Dossiers 2024"')).result == "OK"
    status = await c.status('"Dossiers 2024"', "(MESSAGES UIDVALIDITY)")
    assert status.lines[0].startswith(b'"Dossiers 2024" (MESSAGES 0 UIDVALIDITY ')
    for i in range(3):
        response = await c.append(plain(i, subject=f"aio {i}"), mailbox="INBOX", flags="(\\Seen)" if i else None)
        assert response.result == "OK" and b"[APPENDUID " in response.lines[-1]
    selected = await c.select("INBOX")
    assert selected.result == "OK" and b"3 EXISTS" in selected.lines
    assert (b'LIST () "/" INBOX' in selected.lines) == rev2
    fetched = await c.fetch("1:3", "(UID FLAGS ENVELOPE)")
    assert fetched.result == "OK" and fetched.lines[0].startswith(b"1 FETCH (UID 1 FLAGS () ENVELOPE (")
    body = await c.uid("fetch", "2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert body.lines[1] == b"Subject: aio 1\r\n\r\n"
    searched = await c.search("SUBJECT", '"aio 2"')
    if rev2:
        assert searched.result == "OK"  # aioimaplib does not keep ESEARCH lines (imaplib's test checks them)
    else:
        assert searched.lines[0] == b"3"  # aioimaplib strips "SEARCH"
    assert (await c.store("1", "+FLAGS", "(\\Flagged)")).lines[0] == b"1 FETCH (FLAGS (\\Flagged))"
    assert (await c.copy("1", '"Dossiers 2024"')).result == "OK"
    moved = await c.move("2", '"Dossiers 2024"')
    assert moved.result == "OK" and b"2 EXPUNGE" in moved.lines
    assert (await c.uid("store", "3", "+FLAGS.SILENT (\\Deleted)")).result == "OK"
    expunged = await c.expunge()
    assert expunged.result == "OK" and expunged.lines[0] == b"2 EXPUNGE"
    quota = await c.getquotaroot("INBOX")
    assert quota.result == "OK" and quota.lines[0].startswith(b'"" (STORAGE 1 ')  # aioimaplib keeps the QUOTA

    # IDLE: another client appends; this one sees EXISTS without asking.
    idle = await c.idle_start(timeout=10)
    other = await aio_client(env, tls="implicit")
    assert (await other.append(plain(9, subject="pendant IDLE"), mailbox="INBOX")).result == "OK"
    pushed = await c.wait_server_push(timeout=10)
    assert b"2 EXISTS" in pushed
    c.idle_done()
    assert (await asyncio.wait_for(idle, 10)).result == "OK"
    await other.logout()
    assert (await c.check()).result == "OK"
    assert (await c.noop()).result == "OK"
    assert (await c.examine("INBOX")).result == "OK"
    assert (await c.close()).result == "OK"
    assert (await c.delete('"Dossiers 2024"')).result == "OK"
    await c.logout()


@pytest.mark.parametrize(("tls", "rev2"), [("implicit", False), ("starttls", True)])
async def test_aioimaplib(imap: ImapEnv, tls: str, rev2: bool) -> None:
    await aioimaplib_session(imap, tls, rev2)
    folders = {f.name for f in await imap.store.list_folders(imap.mailbox_id)}
    assert "Dossiers 2024" not in folders
    inbox = await imap.states()
    assert [("\\Flagged" in s.flags) for s in inbox] == [True, False]
