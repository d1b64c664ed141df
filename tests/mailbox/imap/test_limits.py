"""Limits and bad input: line, literal and command sizes, connections per address and per account, inactivity
timers, consecutive bad commands, authentication throttling, garbage. The server stays healthy and a refused
command writes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from carnet.config import Settings
from carnet.db import Database
from carnet.directory import auth as directory_auth
from carnet.mailbox.imap import ImapLimits

from .imaphelp import ImapEnv, RawClient, plain, start_env, tagged, untagged

LIMITS = ImapLimits(
    max_line=2000,
    max_command=8000,
    max_command_unauthenticated=1000,
    max_append=50_000,
    max_connections_per_address=6,
    max_connections_per_account=3,
    unauthenticated_timeout=1.0,
    autologout=2.0,
    max_bad_commands=5,
)


@pytest.fixture
async def small(db: Database, settings: Settings) -> AsyncIterator[ImapEnv]:
    async with start_env(db, settings, limits=LIMITS) as env:
        yield env


async def _still_serves(env: ImapEnv) -> None:
    client = await RawClient.connect(env)
    assert tagged(await client.command("z NOOP")).startswith(b"z OK")
    await client.close()


async def test_line_and_literal_sizes(small: ImapEnv) -> None:
    client = await RawClient.connect(small)
    # A synchronising literal above the command limit: refused before it is sent, the connection goes on.
    lines = await client.command("a1 SEARCH SUBJECT {9000}", tag="a1")
    assert lines == [b"a1 BAD [TOOBIG] literal of 9000 octets exceeds the limit of 8000 octets\r\n"]
    assert tagged(await client.command("a2 NOOP")).startswith(b"a2 OK")
    # APPEND above APPENDLIMIT: NO [TOOBIG] before the literal, nothing stored.
    lines = await client.command("a3 APPEND INBOX {60000}", tag="a3")
    assert lines[-1].startswith(b"a3 NO [TOOBIG]")
    message = plain(1)
    lines = await client.command(b"a4 APPEND INBOX {%d}\r\n" % len(message) + message)
    assert lines[0].startswith(b"+ ") and tagged(lines).startswith(b"a4 OK [APPENDUID ")
    assert len(await small.states()) == 1
    # A line longer than the limit: the connection is closed with BYE (its end cannot be trusted).
    client.send(b"a5 NOOP " + b"x" * 3000 + b"\r\n")
    assert (await client.readline()).startswith(b"* BYE [TOOBIG]")
    await client.close()
    # A non-synchronising literal above the limit is already on its way: BYE too.
    client = await RawClient.connect(small)
    client.send(b"b1 APPEND INBOX {60000+}\r\n" + b"x" * 100)
    assert (await client.readline()).startswith(b"* BYE [TOOBIG]")
    await client.close()
    # Before authentication, commands are small.
    client = await RawClient.connect(small, login=False)
    client.send(b"c1 LOGIN {2000+}\r\n")
    assert (await client.readline()).startswith(b"* BYE [TOOBIG]")
    await client.close()
    await _still_serves(small)
    assert len(await small.states()) == 1


async def test_connections_per_address_and_per_account(small: ImapEnv) -> None:
    logged = [await RawClient.connect(small) for _ in range(3)]
    extra = await RawClient.connect(small, login=False)
    lines = await extra.command(f'l LOGIN "{small.address}" "{small.password}"')
    assert tagged(lines).startswith(b"l NO [LIMIT]")
    anonymous = [await RawClient.connect(small, login=False) for _ in range(2)]
    # The sixth connection from this address is refused at once.
    refused = await RawClient.connect(small, login=False)
    assert refused.greeting.startswith(b"* BYE [UNAVAILABLE]")
    await refused.close()
    await logged[0].command("o LOGOUT")
    await logged[0].close()
    await asyncio.sleep(0.2)
    lines = await extra.command(f'm LOGIN "{small.address}" "{small.password}"')
    assert tagged(lines).startswith(b"m OK")
    for client in [*logged[1:], extra, *anonymous]:
        await client.close()


async def test_inactivity_timers(small: ImapEnv) -> None:
    unauthenticated = await RawClient.connect(small, login=False)
    authenticated = await RawClient.connect(small)
    assert (await unauthenticated.readline(5)).startswith(b"* BYE Autologout")
    await authenticated.command("n NOOP")
    assert (await authenticated.readline(5)).startswith(b"* BYE Autologout")
    for client in (unauthenticated, authenticated):
        await client.close()
    assert ImapLimits().autologout >= 30 * 60  # RFC 9051 §5.4
    assert ImapLimits().unauthenticated_timeout <= 120


async def test_bad_commands_get_reasons_and_then_bye(small: ImapEnv) -> None:
    client = await RawClient.connect(small)
    garbage = [b"\x00\x01\x02", b"a FETCH 1:* (((", b'b LOGIN "x', b"c SEARCH NOT", b"d UID LIST"]
    for i, line in enumerate(garbage[:4]):
        lines = await client.command(line, tag=line.split(b" ", 1)[0].decode() if i else "*")
        assert b" BAD " in tagged(lines) and len(tagged(lines)) > 12
    assert tagged(await client.command("ok NOOP")).startswith(b"ok OK")  # a good command resets the count
    for line in garbage:
        client.send(line + b"\r\n")
    lines = [await client.readline() for _ in range(6)]
    assert all(b"BAD" in line for line in lines[:5]) and lines[5].startswith(b"* BYE Too many invalid commands")
    await client.close()
    await _still_serves(small)


async def test_refused_commands_write_nothing(imap: ImapEnv) -> None:
    await imap.fill(2)
    client = await RawClient.connect(imap)
    message = plain(3)
    lines = await client.command(b"a APPEND INBOX (\\Bogus) {%d+}\r\n" % len(message) + message)
    assert tagged(lines).startswith(b"a BAD unknown system flag")
    lines = await client.command(b"b APPEND INBOX (bad\x7fkeyword) {%d+}\r\n" % len(message) + message)
    assert b" BAD " in tagged(lines) or b" NO " in tagged(lines)
    await client.command("s SELECT INBOX")
    before = await imap.states()
    lines = await client.command("c STORE 1:2 +FLAGS (\\Seen \\Bogus)")
    assert tagged(lines).startswith(b"c BAD")
    lines = await client.command("d COPY 1:2 Nowhere")
    assert tagged(lines).startswith(b"d NO [TRYCREATE]")
    lines = await client.command("e STORE 1:9 +FLAGS (\\Seen)")
    assert tagged(lines).startswith(b"e BAD")
    assert await imap.states() == before and len(before) == 2
    folders = {f.name for f in await imap.store.list_folders(imap.mailbox_id)}
    assert "Nowhere" not in folders
    await client.close()


async def test_big_sequence_sets_and_deep_searches(imap: ImapEnv) -> None:
    await imap.fill(3)
    client = await RawClient.connect(imap)
    await client.command("s SELECT INBOX")
    lines = await client.command("a UID FETCH 1:4294967295 (UID)")
    assert len(untagged(lines)) == 3
    lines = await client.command("b FETCH 4294967296 (UID)")
    assert tagged(lines).startswith(b"b BAD")
    lines = await client.command("c SEARCH " + "NOT " * 100 + "ALL")
    assert tagged(lines).startswith(b"c BAD nesting deeper than")
    many = ",".join(str(n) for n in range(1, 20000, 2))
    lines = await client.command(f"d UID SEARCH UID {many}")
    assert untagged(lines) == [b"* SEARCH 1 3\r\n"]
    await client.close()


async def test_authentication_failures_and_throttling(imap: ImapEnv) -> None:
    client = await RawClient.connect(imap, login=False)
    for attempt in range(directory_auth.ACCOUNT_LIMIT):
        lines = await client.command(f'f{attempt} LOGIN "{imap.address}" "wrong password {attempt}"')
        assert tagged(lines).startswith(f"f{attempt} NO [AUTHENTICATIONFAILED]".encode())
    lines = await client.command(f'g LOGIN "{imap.address}" "{imap.password}"')
    assert tagged(lines).startswith(b"g NO [UNAVAILABLE] too many failed logins; try again in ")
    lines = await client.command("h AUTHENTICATE PLAIN " + _plain(imap.address, imap.password))
    assert tagged(lines).startswith(b"h NO [UNAVAILABLE]")
    # AUTHENTICATE without an initial response, cancelled with "*" (RFC 9051 §6.2.2).
    client.send("i AUTHENTICATE PLAIN\r\n")
    assert await client.readline() == b"+ \r\n"
    client.send("*\r\n")
    assert tagged(await client.until_tagged("i")).startswith(b"i BAD authentication cancelled")
    lines = await client.command("j AUTHENTICATE CRAM-MD5")
    assert tagged(lines).startswith(b"j NO")
    await client.close()


def _plain(user: str, password: str) -> str:
    import base64

    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


async def test_authenticate_plain_with_continuation(imap: ImapEnv) -> None:
    client = await RawClient.connect(imap, login=False)
    client.send("a AUTHENTICATE PLAIN\r\n")
    assert await client.readline() == b"+ \r\n"
    client.send(_plain(imap.address, imap.password) + "\r\n")
    lines = await client.until_tagged("a")
    assert tagged(lines).startswith(b"a OK [CAPABILITY IMAP4rev1 IMAP4rev2 ")
    assert tagged(await client.command("b SELECT INBOX")).startswith(b"b OK [READ-WRITE]")
    await client.close()
    # Another identity than the one authenticated is refused (RFC 4616 §2 authzid).
    import base64

    other = base64.b64encode(f"someone@carnet.test\0{imap.address}\0{imap.password}".encode()).decode()
    client = await RawClient.connect(imap, login=False)
    assert tagged(await client.command(f"c AUTHENTICATE PLAIN {other}")).startswith(b"c NO [AUTHORIZATIONFAILED]")
    await client.close()
