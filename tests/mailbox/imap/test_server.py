"""Listeners and the connection state machine (RFC 9051 §3, §6.1, §6.2.1): greetings, STARTTLS discarding
pipelined commands, implicit TLS, states, LOGOUT, shutdown."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from carnet.mailbox.imap import response, utf7

from .imaphelp import ImapEnv, RawClient, tagged, untagged


async def test_greetings_and_capabilities(imap: ImapEnv) -> None:
    plain = await RawClient.connect(imap, implicit=False, login=False)
    assert plain.greeting == (b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE STARTTLS "
                              b"LOGINDISABLED] carnet IMAP4rev2 server ready\r\n")
    await plain.close()
    tls = await RawClient.connect(imap, login=False)
    assert tls.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE AUTH=PLAIN]")
    lines = await tls.command(f'l LOGIN "{imap.address}" "{imap.password}"')
    assert tagged(lines).startswith(b"l OK [CAPABILITY IMAP4rev1 IMAP4rev2 ") and b" MOVE " in tagged(lines)
    await tls.close()


async def test_starttls_discards_pipelined_commands(imap: ImapEnv) -> None:
    """RFC 9051 §6.2.1: what the client sent after STARTTLS and before the handshake is not executed."""
    client = await RawClient.connect(imap, implicit=False, login=False)
    client.send(f'a STARTTLS\r\nb LOGIN "{imap.address}" "{imap.password}"\r\n')
    assert (await client.readline()).startswith(b"a OK")
    await client.writer.start_tls(imap.context(), server_hostname=imap.domain)
    lines = await client.command("c CAPABILITY")
    assert len(lines) == 2 and lines[0].startswith(b"* CAPABILITY ") and b"AUTH=PLAIN" in lines[0]
    assert tagged(await client.command("d SELECT INBOX")).startswith(b"d BAD")  # b's LOGIN never happened
    assert tagged(await client.command("e STARTTLS")).startswith(b"e BAD")  # TLS is already on
    await client.close()


async def test_tls_is_checked_against_the_instance_certificate(imap: ImapEnv) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.open_connection("127.0.0.1", imap.tls_port, ssl=ssl.create_default_context(),
                                      server_hostname=imap.domain)
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.open_connection("127.0.0.1", imap.tls_port, ssl=imap.context(), server_hostname="other.test")


async def test_states_logout_and_unselect(imap: ImapEnv) -> None:
    client = await RawClient.connect(imap, login=False)
    for command in ("a SELECT INBOX", "b FETCH 1 FLAGS", "c ENABLE CONDSTORE", "d APPEND INBOX {1+}\r\nx"):
        assert b" BAD " in tagged(await client.command(command))
    await client.command(f'l LOGIN "{imap.address}" "{imap.password}"')
    assert b" BAD " in tagged(await client.command(f'm LOGIN "{imap.address}" "{imap.password}"'))
    assert b" BAD " in tagged(await client.command("n CLOSE"))
    await client.command("s SELECT INBOX")
    assert tagged(await client.command("u UNSELECT")).startswith(b"u OK")
    assert b" BAD " in tagged(await client.command("v EXPUNGE"))
    lines = await client.command("z LOGOUT")
    assert lines[0].startswith(b"* BYE ") and tagged(lines).startswith(b"z OK")
    assert await client.reader.read() == b""
    await client.close()


async def test_server_close_says_bye_and_frees_ports(imap: ImapEnv) -> None:
    clients = [await RawClient.connect(imap) for _ in range(3)]
    await clients[0].command("s SELECT INBOX")
    imap.server.close()
    for client in clients:
        assert (await client.readline()).startswith(b"* BYE [UNAVAILABLE] Server shutting down")
        await client.close()
    await imap.server.wait_closed()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", imap.port)


def test_response_serialisation() -> None:
    assert response.astring("INBOX") == b"INBOX"
    assert response.astring("nil") == b'"nil"'
    assert response.astring('a "b"\\') == b'"a \\"b\\"\\\\"'
    assert response.string("two\r\nlines") == b"{10}\r\ntwo\r\nlines"
    assert response.string("é", utf8=False) == b"{2}\r\n\xc3\xa9"
    assert response.mailbox_name("Entwürfe", utf8=False) == b"Entw&APw-rfe"
    assert response.mailbox_name("Entwürfe", utf8=True) == '"Entwürfe"'.encode()
    assert response.number_set([1, 2, 3, 5, 7, 8]) == "1:3,5,7:8"
    assert response.flag_list({"$Junk", "\\Seen", "\\Answered"}) == b"(\\Answered \\Seen $Junk)"
    assert utf7.encode("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"  # RFC 3501 §5.1.3
    for bad in ("&", "&Jjo", "&AGE-", "&U,BTFw-&ZeVnLIqe-", "é"):
        with pytest.raises(utf7.UTF7Error):
            utf7.decode(bad)
    assert untagged([b"* 1 EXISTS\r\n", b"a OK\r\n"]) == [b"* 1 EXISTS\r\n"]
