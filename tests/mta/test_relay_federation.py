"""Two carnet instances (a.test, b.test) in one trust space exchange signed, encrypted mail over mutual TLS; a third
(c.test) outside it is refused; a peer that is down gets its mail on return; one that never returns produces a
delayed then a failure DSN. Instance A runs on the parametrised backend's test database, B on another database of
the same backend, C on SQLite."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from datetime import timedelta
from pathlib import Path

import pytest
from instances import extra_database, instance_settings
from mtahelp import (
    Platform,
    fixed_listeners,
    header,
    openssl_verify,
    running_platform,
    submit,
    text_message,
    trust,
)

FAST = {
    "retry_schedule": [timedelta(seconds=0.5)],
    "queue_poll_interval": 0.2,
    "queue_lifetime": timedelta(seconds=6),
    "delay_dsn_after": timedelta(seconds=2),
    "smtp_timeout": 10.0,
}


async def test_two_operators_exchange_mail_and_a_stranger_is_refused(db_url: str, tmp_path: Path) -> None:
    a_settings = instance_settings(tmp_path, "a.test", db_url)
    async with (
        extra_database(db_url, tmp_path, "b") as b_url,
        extra_database(f"sqlite:///{tmp_path}/c.db", tmp_path, "c") as c_url,
    ):
        b_settings = instance_settings(tmp_path, "b.test", b_url)
        c_settings = instance_settings(tmp_path, "c.test", c_url)
        async with (
            running_platform(a_settings, http_tls=True, populate_with=1, **FAST) as a,
            running_platform(b_settings, http_tls=True, populate_with=11, **FAST) as b,
            running_platform(c_settings, http_tls=True, populate_with=21, **FAST) as c,
        ):
            await trust(a, b)
            await trust(b, a)
            anne, bob = a.people.anne, b.people.bob
            # A → B: signed by A on Anne's behalf, encrypted to Bob's certificate, relayed over mutual TLS.
            message = text_message(anne.address, bob.address, subject="avis")
            assert await asyncio.to_thread(submit, a, anne.address, anne.address, [bob.address], message) == {}
            [raw] = await b.wait_inbox(bob, 1)
            signature = header(raw, "Carnet-Signature")
            assert signature.startswith('valid; signer="Anne Martin"'), signature
            assert "encrypted=aes256_gcm" in signature and "revocation=good" in signature
            checked = openssl_verify(raw, a.ca_file, tmp_path)
            assert checked.returncode == 0, checked.stderr
            # B → A, with an MDN request: Anne's platform answers with a signed "processed" MDN.
            reply = text_message(
                bob.address, anne.address, subject="Re: avis", extra=f"Disposition-Notification-To: <{bob.address}>\r\n"
            )
            assert await asyncio.to_thread(submit, b, bob.address, bob.address, [anne.address], reply) == {}
            [received] = await a.wait_inbox(anne, 1)
            assert header(received, "Carnet-Signature").startswith('valid; signer="Bob Durand"')
            messages = await b.wait_inbox(bob, 2)
            assert len(messages) == 2, "no MDN came back"
            mdn = messages[1]
            assert b"report-type=disposition-notification" in mdn
            assert b"Disposition: automatic-action/MDN-sent-automatically; processed" in mdn
            assert header(mdn, "Carnet-Signature").startswith("valid;")
            assert header(mdn, "Return-Path") == "<>"
            await relay_refusals(a, b)
            # C is not in the trust space: A refuses its client certificate, and A's users cannot write to C.
            await stranger_is_refused(a, c)
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                await asyncio.to_thread(
                    submit,
                    a,
                    anne.address,
                    anne.address,
                    [c.people.bob.address],
                    text_message(anne.address, c.people.bob.address),
                )
            # B goes down: the message waits in A's queue and is delivered when B is back.
            b_ports = dict(b.ports)
            b.running.stop.set()
            await asyncio.sleep(0.5)
            late = text_message(anne.address, bob.address, subject="while you were away")
            assert await asyncio.to_thread(submit, a, anne.address, anne.address, [bob.address], late) == {}
            await asyncio.sleep(1.2)  # a few failed attempts
        async with (
            running_platform(
                a_settings, people=a.people, listen=fixed_listeners(a.ports), http_tls=True, **FAST
            ) as a_again,
            running_platform(
                b_settings, people=b.people, listen=fixed_listeners(b_ports), http_tls=True, **FAST
            ) as b_again,
        ):
            messages = await b_again.wait_inbox(bob, 3)
            assert header(messages[-1], "Subject") == "while you were away"
            # B goes away for good: a delayed DSN, then a failure DSN once the queue lifetime is over.
            b_again.running.stop.set()
            await asyncio.sleep(0.5)
            lost = text_message(anne.address, bob.address, subject="never delivered")
            assert await asyncio.to_thread(submit, a_again, anne.address, anne.address, [bob.address], lost) == {}
            for _ in range(300):
                reports = [r for r in await a_again.inbox(anne) if b'"never delivered"' in r]
                if len(reports) >= 2:
                    break
                await asyncio.sleep(0.1)
            assert len(reports) == 2, [header(r, "Subject") for r in await a_again.inbox(anne)]
            delayed, failed = reports
            assert b"Action: delayed" in delayed and b"Action: failed" in failed
            assert f"Final-Recipient: rfc822; {bob.address}".encode() in failed
            assert header(failed, "Carnet-Signature").startswith("valid;")
            assert header(failed, "From") == f"Mail Delivery System <postmaster@{a_settings.domain}>"
            checked = openssl_verify(failed, a_again.ca_file, tmp_path)
            assert checked.returncode == 0, checked.stderr


async def relay_refusals(a: Platform, b: Platform) -> None:
    """B, a trusted peer, may relay only its own users' signed mail, only to A's addresses."""
    from carnet.mta.delivery import client_certificate

    cert, key = await client_certificate(b.db, b.settings)
    context = ssl.create_default_context(cafile=str(a.ca_file))
    context.load_cert_chain(cert, key)
    reader, writer = await asyncio.open_connection("127.0.0.1", a.ports["relay"])

    async def reply() -> bytes:
        while (line := await asyncio.wait_for(reader.readline(), 20))[3:4] == b"-":
            pass
        return line

    async def command(line: str) -> bytes:
        writer.write(line.encode() + b"\r\n")
        return await reply()

    await reply()
    assert (await command("EHLO b.test")).startswith(b"250")
    assert (await command("MAIL FROM:<someone@b.test>")).startswith(b"530")  # STARTTLS first
    assert (await command("STARTTLS")).startswith(b"220")
    await writer.start_tls(context, server_hostname=a.settings.domain)
    assert (await command("EHLO b.test")).startswith(b"250")
    assert (await command(f"MAIL FROM:<{a.people.anne.address}>")).startswith(b"550 5.7.1")  # not B's to use
    assert (await command(f"MAIL FROM:<{b.people.bob.address}>")).startswith(b"250")
    assert (await command("RCPT TO:<victim@example.org>")).startswith(b"550 5.7.1")  # no relaying through A
    assert (await command(f"RCPT TO:<{a.people.anne.address}>")).startswith(b"250")
    assert (await command("DATA")).startswith(b"354")
    writer.write(text_message(b.people.bob.address, a.people.anne.address, subject="unsigned") + b".\r\n")
    answer = await reply()
    assert answer.startswith(b"550 5.7.1 S/MIME check unsigned"), answer
    writer.close()


async def stranger_is_refused(a: Platform, c: Platform) -> None:
    """C presents its own operator's client certificate to A's relay: the handshake fails."""
    from carnet.mta.delivery import client_certificate

    cert, key = await client_certificate(c.db, c.settings)
    context = ssl.create_default_context(cafile=str(a.ca_file))
    context.load_cert_chain(cert, key)
    reader, writer = await asyncio.open_connection("127.0.0.1", a.ports["relay"])
    assert (await reader.readline()).startswith(b"220")
    writer.write(b"EHLO c.test\r\n")
    while not (line := await reader.readline()).startswith(b"250 "):
        assert line.startswith(b"250-")
    writer.write(b"STARTTLS\r\n")
    assert (await reader.readline()).startswith(b"220")
    refused = False
    try:
        await writer.start_tls(context, server_hostname=a.settings.domain)
        writer.write(b"EHLO c.test\r\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
        refused = line == b"" or not line.startswith(b"250")
    except (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError):
        refused = True
    writer.close()
    assert refused
    # Without any client certificate: TLS works, MAIL is refused.
    reader, writer = await asyncio.open_connection("127.0.0.1", a.ports["relay"])
    await reader.readline()
    writer.write(b"EHLO anonymous.test\r\n")
    while not (await reader.readline()).startswith(b"250 "):
        pass
    writer.write(b"STARTTLS\r\n")
    await reader.readline()
    await writer.start_tls(ssl.create_default_context(cafile=str(a.ca_file)), server_hostname=a.settings.domain)
    writer.write(b"EHLO anonymous.test\r\nMAIL FROM:<x@c.test>\r\n")
    while not (await reader.readline()).startswith(b"250 "):
        pass
    answer = await reader.readline()
    assert answer.startswith(b"530 5.7.0"), answer
    writer.close()
