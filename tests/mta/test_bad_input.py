"""Hostile and broken input: SMTP smuggling, STARTTLS command injection, forged gateway headers, limits, relaying."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

import pytest
from mtahelp import Platform, header, submit, text_message


class Wire:
    """A raw SMTP client: bytes out, replies in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Wire:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        wire = cls(reader, writer)
        await wire.reply()
        return wire

    async def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 20)
            if not line:
                return 0, "closed"
            lines.append(line.decode())
            if line[3:4] != b"-":
                return int(line[:3]), "".join(lines)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def command(self, line: str) -> tuple[int, str]:
        await self.send(line.encode() + b"\r\n")
        return await self.reply()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()


SMUGGLING = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\r\n.\n", b"\n..\n"]


@pytest.mark.parametrize("ending", SMUGGLING, ids=[repr(e) for e in SMUGGLING])
async def test_bare_line_endings_never_make_a_second_message(platform: Platform, ending: bytes) -> None:
    lab, bob = platform.people.lab, platform.people.bob
    wire = await Wire.open(platform.ports["trusted"])
    assert (await wire.command("EHLO lab.test"))[0] == 250
    assert (await wire.command(f"MAIL FROM:<{lab.address}>"))[0] == 250
    assert (await wire.command(f"RCPT TO:<{bob.address}>"))[0] == 250
    assert (await wire.command("DATA"))[0] == 354
    smuggled = (
        f"From: <{lab.address}>\r\nTo: <{bob.address}>\r\nSubject: first\r\n\r\nfirst body".encode()
        + ending
        + f"MAIL FROM:<{lab.address}>\r\nRCPT TO:<{bob.address}>\r\nDATA\r\nFrom: <{lab.address}>\r\n"
        f"Subject: smuggled\r\n\r\nsmuggled\r\n.\r\n".encode()
    )
    await wire.send(smuggled)
    code, text = await wire.reply()
    replies = [(code, text)]
    while code != 0:  # whatever follows: every reply until the server hangs up
        code, text = await wire.reply()
        replies.append((code, text))
    await wire.close()
    assert replies[0][0] == 521 and "bare CR or LF" in replies[0][1], replies
    assert await platform.inbox(bob) == []


async def test_commands_pipelined_before_starttls_are_discarded(platform: Platform) -> None:
    wire = await Wire.open(platform.ports["submission"])
    assert (await wire.command("EHLO attacker.test"))[0] == 250
    await wire.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<evil@attacker.test>\r\n")
    code, _ = await wire.reply()
    assert code == 220
    context = platform.client_context()
    await wire.writer.start_tls(context, server_hostname=platform.settings.domain)
    # The injected RSET/MAIL were plaintext: the first answer after TLS must be to our EHLO, not to them.
    code, text = await wire.command("EHLO honest.test")
    assert code == 250 and "AUTH PLAIN LOGIN" in text
    code, text = await wire.command("NOOP")
    assert code == 250
    await wire.close()


async def test_forged_carnet_signature_is_stripped(platform: Platform) -> None:
    anne, bob = platform.people.anne, platform.people.bob
    forged = text_message(
        anne.address,
        bob.address,
        extra='Carnet-Signature: valid; signer="Pr Forged"\r\ncarnet-signature: valid; signer="Other"\r\n',
    )
    await asyncio.to_thread(submit, platform, anne.address, anne.address, [bob.address], forged)
    [raw] = await platform.inbox(bob)
    assert raw.count(b"arnet-Signature") == 1
    assert b"Forged" not in raw and b"Other" not in raw
    assert header(raw, "Carnet-Signature").startswith('valid; signer="Anne Martin"')


async def test_limits_and_relaying(platform: Platform) -> None:
    lab, bob = platform.people.lab, platform.people.bob
    limits = platform.settings.mta.limits
    wire = await Wire.open(platform.ports["trusted"])
    assert (await wire.command("EHLO lab.test"))[0] == 250
    # SIZE announced too large
    code, text = await wire.command(f"MAIL FROM:<{lab.address}> SIZE={limits.max_message_size + 1}")
    assert code == 552 and "5.3.4" in text
    assert (await wire.command(f"MAIL FROM:<{lab.address}>"))[0] == 250
    # Relaying to a domain outside the trust space, from a trusted network too
    code, text = await wire.command("RCPT TO:<victim@example.org>")
    assert code == 550 and "5.7.1" in text
    assert (await wire.command(f"RCPT TO:<{bob.address}>"))[0] == 250
    # Nesting deeper than allowed
    depth = limits.max_mime_depth + 2
    body = b""
    for level in range(depth, 0, -1):
        inner = body or b"Content-Type: text/plain\r\n\r\ndeep\r\n"
        body = (
            f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n--b{level}\r\n'.encode()
            + inner
            + f"\r\n--b{level}--\r\n".encode()
        )
    message = f"From: <{lab.address}>\r\nTo: <{bob.address}>\r\nSubject: deep\r\nMIME-Version: 1.0\r\n".encode() + body
    assert (await wire.command("DATA"))[0] == 354
    await wire.send(message + b".\r\n")
    code, text = await wire.reply()
    assert code == 554 and "5.6.0" in text and "nested" in text
    # A header block over the limit
    assert (await wire.command(f"MAIL FROM:<{lab.address}>"))[0] == 250
    assert (await wire.command(f"RCPT TO:<{bob.address}>"))[0] == 250
    assert (await wire.command("DATA"))[0] == 354
    big_header = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"x" * 900) for i in range(limits.max_header_size // 900 + 2))
    await wire.send(f"From: <{lab.address}>\r\n".encode() + big_header + b"\r\nbody\r\n.\r\n")
    code, text = await wire.reply()
    assert code == 552 and "header" in text
    # Too many recipients
    assert (await wire.command(f"MAIL FROM:<{lab.address}>"))[0] == 250
    await wire.command("RSET")
    await wire.close()
    assert await platform.inbox(bob) == []


async def test_oversized_message_is_refused(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from mtahelp import running_platform

    from carnet.config import MtaLimits

    async with running_platform(settings, limits=MtaLimits(max_message_size=64 * 1024)) as platform:
        lab, bob = platform.people.lab, platform.people.bob
        wire = await Wire.open(platform.ports["trusted"])
        await wire.command("EHLO lab.test")
        await wire.command(f"MAIL FROM:<{lab.address}>")
        await wire.command(f"RCPT TO:<{bob.address}>")
        assert (await wire.command("DATA"))[0] == 354
        line = b"y" * 998 + b"\r\n"
        await wire.send(f"From: <{lab.address}>\r\n\r\n".encode() + line * 200 + b".\r\n")
        code, text = await wire.reply()
        assert code == 552 and "5.3.4" in text
        await wire.close()
        # BDAT (CHUNKING) over the limit is refused too, the session goes on
        wire = await Wire.open(platform.ports["trusted"])
        await wire.command("EHLO lab.test")
        await wire.command(f"MAIL FROM:<{lab.address}>")
        await wire.command(f"RCPT TO:<{bob.address}>")
        chunk = b"z" * 40_000
        await wire.send(b"BDAT %d\r\n" % len(chunk) + chunk)
        assert (await wire.reply())[0] == 250
        await wire.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        code, text = await wire.reply()
        assert code == 552
        # and a proper BDAT message goes through
        await wire.command(f"MAIL FROM:<{lab.address}>")
        await wire.command(f"RCPT TO:<{bob.address}>")
        message = text_message(lab.address, bob.address, subject="chunked")
        await wire.send(b"BDAT %d\r\n" % 10 + message[:10])
        assert (await wire.reply())[0] == 250
        await wire.send(b"BDAT %d LAST\r\n" % (len(message) - 10) + message[10:])
        code, text = await wire.reply()
        assert code == 250, text
        await wire.close()
        [raw] = await platform.inbox(bob)
        assert header(raw, "Subject") == "chunked"


async def test_malformed_header_is_refused_permanently(platform: Platform) -> None:
    lab, bob = platform.people.lab, platform.people.bob
    wire = await Wire.open(platform.ports["trusted"])
    await wire.command("EHLO lab.test")
    await wire.command(f"MAIL FROM:<{lab.address}>")
    await wire.command(f"RCPT TO:<{bob.address}>")
    assert (await wire.command("DATA"))[0] == 354
    await wire.send(f"From: <{lab.address}>\r\nthis line is no header field\r\n\r\nbody\r\n.\r\n".encode())
    code, text = await wire.reply()
    assert code == 554 and "5.6.0" in text
    await wire.close()
