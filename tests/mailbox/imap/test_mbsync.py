"""mbsync (isync) against carnet: a few hundred messages synchronised both ways between a Maildir and the server.

The server's view is checked through the store API after each step. mbsync connects with STARTTLS to 127.0.0.1 and
checks the certificate chain against carnet's CA bundle; since the server's name (``carnet.test``) does not resolve
here, the CertificateFile also holds the server's own certificate, which isync trusts on an exact match (its host
name check is for certificates it only knows through a CA).
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

from .imaphelp import ImapEnv, plain, sample

pytestmark = []


def _config(env: ImapEnv, tmp_path: Path, mail: Path) -> Path:
    tls = env.settings.data_dir / "pki" / "tls" / "server.pem"
    certs = tmp_path / "certs.pem"
    certs.write_bytes(env.ca_bundle.read_bytes() + tls.read_bytes())
    secret = tmp_path / "secret"
    secret.write_text(env.password)
    rc = tmp_path / "mbsyncrc"
    rc.write_text(f"""\
IMAPAccount carnet
Host 127.0.0.1
Port {env.port}
User {env.address}
PassCmd "cat {secret}"
SSLType STARTTLS
CertificateFile {certs}
SystemCertificates no

IMAPStore remote
Account carnet

MaildirStore local
Path {mail}/
Inbox {mail}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Remove Both
Expunge Both
SyncState *
""")
    return rc


async def _mbsync(rc: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        "mbsync", "-c", str(rc), "-a", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    return text


def _messages(folder: Path) -> dict[Path, str]:
    """Message files of a Maildir folder and their flags (the letters after ``:2,``)."""
    out = {}
    for sub in ("cur", "new"):
        for path in (folder / sub).iterdir():
            out[path] = path.name.split(":2,", 1)[1] if ":2," in path.name else ""
    return out


def _subject(path: Path) -> bytes:
    """The Subject of a Maildir message (mbsync stores messages with LF line ends)."""
    return path.read_bytes().split(b"Subject: ", 1)[1].split(b"\n", 1)[0].rstrip(b"\r")


def _with_flag(path: Path, letter: str) -> Path:
    base, _, flags = path.name.partition(":2,")
    target = path.parent.parent / "cur" / f"{base}:2,{''.join(sorted(set(flags + letter)))}"
    path.rename(target)
    return target


async def test_mbsync_both_ways(imap: ImapEnv, tmp_path: Path) -> None:
    store = imap.store
    for i in range(300):
        flags = (["\\Seen"] if i % 5 == 0 else []) + (["\\Flagged"] if i % 10 == 0 else [])
        await store.append(imap.mailbox_id, "INBOX", sample(i), flags)
    await store.create_folder(imap.mailbox_id, "Projets")
    for i in range(20):
        await store.append(imap.mailbox_id, "Projets", plain(1000 + i, subject=f"Projet {i}"))
    mail = tmp_path / "mail"
    mail.mkdir()
    rc = _config(imap, tmp_path, mail)

    # 1. Pull everything.
    await _mbsync(rc)
    inbox = _messages(mail / "INBOX")
    assert len(inbox) == 300
    assert sum("F" in flags for flags in inbox.values()) == 30
    assert sum("S" in flags for flags in inbox.values()) == 60
    assert len(_messages(mail / "Projets")) == 20
    assert {p.name for p in mail.iterdir()} >= {"INBOX", "Projets", "Sent", "Drafts", "Trash", "Archive", "Junk"}
    raw_by_subject = {_subject(path): path.read_bytes() for path in inbox}
    server_summaries = await store.summaries((await imap.folder()).id, [1, 2, 3])
    for summary in server_summaries:
        local = re.sub(rb"(?m)^X-TUID: .*\n", b"", raw_by_subject[summary.subject.encode()])  # isync's own header
        assert local.replace(b"\n", b"\r\n") == await store.raw(summary.blob_id)

    # 2. Local changes: flags, deletions, a move to another folder, a new folder with new messages.
    unflagged = sorted(p for p, flags in inbox.items() if "F" not in flags)
    for path in unflagged[:10]:
        _with_flag(path, "F")
    unseen = sorted(p for p, flags in _messages(mail / "INBOX").items() if "S" not in flags)
    for path in unseen[:5]:
        _with_flag(path, "S")
    remaining = sorted(_messages(mail / "INBOX"))
    deleted = remaining[-7:]
    for path in deleted:
        path.unlink()
    moved_subjects = []
    for path in remaining[-10:-7]:
        moved_subjects.append(_subject(path).decode())
        name = path.name.split(",U=", 1)[0] + ":2,S"
        shutil.move(path, mail / "Projets" / "cur" / name)
    new_folder = mail / "Dossiers patients" / "Léa Durand"
    for sub in ("cur", "new", "tmp"):
        (new_folder / sub).mkdir(parents=True)
    for i in range(2):
        (new_folder / "new" / f"17000000{i}.local{i}.host").write_bytes(plain(2000 + i, subject=f"Nouveau {i}"))

    await _mbsync(rc)
    inbox_id = (await imap.folder()).id
    states = await store.snapshot(inbox_id)
    assert len(states) == 290
    assert sum("\\Flagged" in s.flags for s in states) == 30 + 10 - sum(
        1 for p in deleted + remaining[-10:-7] if "F" in p.name.split(":2,")[1])
    assert sum("\\Seen" in s.flags for s in states) >= 60
    projets = await store.summaries((await imap.folder("Projets")).id, [s.uid for s in await imap.states("Projets")])
    assert len(projets) == 23
    assert set(moved_subjects) <= {s.subject for s in projets}
    folders = {f.name for f in await store.list_folders(imap.mailbox_id)}
    assert "Dossiers patients/Léa Durand" in folders
    created = await imap.states("Dossiers patients/Léa Durand")
    assert len(created) == 2

    # 3. Changes on the server, then pull.
    for i in range(5):
        await store.append(imap.mailbox_id, "INBOX", plain(3000 + i, subject=f"Serveur {i}"))
    first_uids = [s.uid for s in states[:6]]
    await store.store_flags(inbox_id, first_uids[:2], "add", ["\\Answered", "$Forwarded"])
    await store.store_flags(inbox_id, first_uids[2:6], "add", ["\\Deleted"])
    await store.expunge(inbox_id, first_uids[2:6])
    await store.create_folder(imap.mailbox_id, "Archive/2024")
    await store.append(imap.mailbox_id, "Archive/2024", plain(4000, subject="Archivé"))

    await _mbsync(rc)
    inbox = _messages(mail / "INBOX")
    assert len(inbox) == 291
    assert sum("R" in flags for flags in inbox.values()) == 2
    subjects = {_subject(p) for p in inbox}
    assert {f"Serveur {i}".encode() for i in range(5)} <= subjects
    assert len(_messages(mail / "Archive" / "2024")) == 1
    # And a last run changes nothing on either side.
    await _mbsync(rc)
    assert len(await imap.states()) == 291 and len(_messages(mail / "INBOX")) == 291
    assert _messages(mail / "Dossiers patients" / "Léa Durand").keys()
