"""mutt against carnet: reading, flagging, moving and deleting messages through IMAP, driven non-interactively.

mutt needs a terminal: it runs under ``script`` (a pseudo-terminal) with a ``push`` macro that ends in ``<quit>``.
It connects with STARTTLS (``ssl_force_tls``) and checks the certificate chain against carnet's CA bundle; the
host name check is off because the test connects to 127.0.0.1 while the certificate names ``carnet.test``.
The results are checked through the store API.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from pathlib import Path

from .imaphelp import ImapEnv, plain

SUBJECTS = ("alpha", "bravo", "charlie", "delta", "echo")


def _muttrc(env: ImapEnv, tmp_path: Path) -> Path:
    rc = tmp_path / "muttrc"
    rc.write_text(f"""\
set folder="imap://{env.address.replace('@', '%40')}@127.0.0.1:{env.port}/"
set spoolfile="+INBOX"
set imap_user="{env.address}"
set imap_pass="{env.password}"
set ssl_starttls=yes
set ssl_force_tls=yes
set ssl_use_tlsv1_2=yes
set ssl_ca_certificates_file="{env.ca_bundle}"
set ssl_verify_host=no
set certificate_file="{tmp_path / 'mutt-certificates'}"
set imap_passive=yes
set imap_check_subscribed=no
set header_cache=""
set message_cachedir=""
set record=""
set postponed="+Drafts"
set move=no
set delete=yes
set quit=yes
set confirmappend=no
set confirmcreate=no
set mark_old=no
set wait_key=no
set timeout=5
set sleep_time=0
set pager_stop=yes
set sort=date-sent
""")
    return rc


async def _mutt(rc: Path, keys: str, tmp_path: Path) -> str:
    command = f"mutt -n -F {shlex.quote(str(rc))} -e {shlex.quote(f'push {shlex.quote(keys)}')}"
    env = {**os.environ, "TERM": "vt100", "HOME": str(tmp_path), "COLUMNS": "120", "LINES": "40"}
    process = await asyncio.create_subprocess_exec(
        "script", "-qfec", command, "/dev/null", stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env, cwd=tmp_path)
    assert process.stdout is not None
    chunks: list[bytes] = []

    async def drain() -> None:
        while data := await process.stdout.read(65536):  # type: ignore[union-attr]
            chunks.append(data)

    try:
        await asyncio.wait_for(asyncio.gather(drain(), process.wait()), 20)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError("mutt did not finish:\n" + b"".join(chunks).decode(errors="replace")[-3000:]) from None
    text = b"".join(chunks).decode(errors="replace")
    assert process.returncode == 0, text[-3000:]
    return text


async def test_mutt_reads_flags_moves_and_deletes(imap: ImapEnv, tmp_path: Path) -> None:
    store = imap.store
    for i, subject in enumerate(SUBJECTS):
        await store.append(imap.mailbox_id, "INBOX", plain(i, subject=subject))
    await store.create_folder(imap.mailbox_id, "Projets")
    rc = _muttrc(imap, tmp_path)
    keys = (
        "<search>~s alpha<enter><display-message><exit>"
        "<search>~s bravo<enter><flag-message>"
        "<search>~s charlie<enter><save-message>=Projets<enter>"
        "<search>~s delta<enter><delete-message>"
        "<sync-mailbox><quit>"
    )
    await _mutt(rc, keys, tmp_path)

    inbox = await store.summaries((await imap.folder()).id, [s.uid for s in await imap.states()])
    by_subject = {s.subject: s for s in inbox}
    assert set(by_subject) == {"alpha", "bravo", "echo"}
    assert "\\Seen" in by_subject["alpha"].flags
    assert "\\Flagged" in by_subject["bravo"].flags and "\\Seen" not in by_subject["bravo"].flags
    assert by_subject["echo"].flags == frozenset()
    projets = await store.summaries((await imap.folder("Projets")).id,
                                    [s.uid for s in await imap.states("Projets")])
    assert [s.subject for s in projets] == ["charlie"]
    assert (await imap.folder()).deleted == 0

    # A second session: mutt lists the folders, opens Projets and marks everything read.
    await _mutt(rc, "<change-folder>=Projets<enter><tag-pattern>~A<enter><tag-prefix><clear-flag>N"
                    "<sync-mailbox><quit>", tmp_path)
    projets_states = await imap.states("Projets")
    assert all("\\Seen" in s.flags for s in projets_states)
