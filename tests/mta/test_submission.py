"""Submission end to end with real clients: smtplib and aiosmtplib (STARTTLS + AUTH), swaks; the message is signed on
the author's behalf, delivered durably, read back through the store and over IMAP, and checked by OpenSSL."""

from __future__ import annotations

import asyncio
import smtplib
from pathlib import Path

import aiosmtplib
from mtahelp import PASSWORD, Platform, header, imap_fetch_all, openssl_verify, submit, text_message

from carnet.pki import authority
from carnet.pki.smime import SignerCredential, sign_message


async def test_smtplib_submission_is_signed_stored_and_verifiable(platform: Platform, tmp_path: Path) -> None:
    anne, bob = platform.people.anne, platform.people.bob
    refused = await asyncio.to_thread(
        submit, platform, anne.address, anne.address, [bob.address], text_message(anne.address, bob.address)
    )
    assert refused == {}
    [raw] = await platform.inbox(bob)
    value = header(raw, "Carnet-Signature")
    assert value is not None and value.startswith("valid; signer=")
    assert f"rpps={anne.national_id[1:]}" in value and "chain=ok" in value and "revocation=good" in value
    assert header(raw, "X-MSS-NIL") == "3"
    assert b"multipart/signed" in raw
    checked = openssl_verify(raw, platform.ca_file, tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert b"Verification successful" in checked.stderr
    over_imap = await asyncio.to_thread(imap_fetch_all, platform, bob.address)
    assert over_imap == [raw]


async def test_aiosmtplib_auth_login_and_client_signed_kept(platform: Platform, tmp_path: Path) -> None:
    anne, bob = platform.people.anne, platform.people.bob
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=platform.ports["submission"], start_tls=False, tls_context=platform.client_context()
    )
    await client.connect()
    await client.starttls(server_hostname=platform.settings.domain)
    await client.ehlo()
    await client.auth_login(anne.address, PASSWORD)
    response, _ = await client.sendmail(anne.address, [bob.address], text_message(anne.address, bob.address))
    assert response == {}
    # A message the client signed itself (as Thunderbird would with Anne's PKCS#12) is verified and kept as is.
    issued = await authority.load_credential(platform.db, platform.settings, anne.certificate_serial)
    signed = sign_message(
        text_message(
            anne.address,
            bob.address,
            subject="signed by the client",
            extra="Message-ID: <c1@x>\r\nDate: Mon, 5 Jan 2026 10:00:00 +0000\r\nX-MSS-NIL: 3\r\n",
        ),
        SignerCredential(issued.key, issued.certificate, issued.chain),
    )
    response, _ = await client.sendmail(anne.address, [bob.address], signed)
    assert response == {}
    await client.quit()
    first, second = await platform.inbox(bob)
    assert header(first, "Carnet-Signature").startswith("valid;")
    assert header(second, "Carnet-Signature").startswith("valid;")
    assert second.endswith(signed)  # byte for byte, below the trace and gateway fields carnet adds on top
    checked = openssl_verify(second, platform.ca_file, tmp_path)
    assert checked.returncode == 0, checked.stderr


async def test_swaks_submission_and_trusted_network(platform: Platform, tmp_path: Path) -> None:
    anne, bob, lab = platform.people.anne, platform.people.bob, platform.people.lab
    submission = await asyncio.create_subprocess_exec(
        "swaks",
        "--server",
        "127.0.0.1",
        "--port",
        str(platform.ports["submission"]),
        "--tls",
        "--tls-ca-path",
        str(platform.ca_file),
        "--tls-verify",
        "--tls-sni",
        platform.settings.domain,
        "--auth",
        "PLAIN",
        "--auth-user",
        anne.address,
        "--auth-password",
        PASSWORD,
        "--from",
        anne.address,
        "--to",
        bob.address,
        "--h-Subject",
        "swaks submission",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await submission.communicate()
    assert submission.returncode == 0, out.decode()
    trusted = await asyncio.create_subprocess_exec(
        "swaks",
        "--server",
        "127.0.0.1",
        "--port",
        str(platform.ports["trusted"]),
        "--from",
        lab.address,
        "--to",
        bob.address,
        "--h-Subject",
        "resultats",
        "--body",
        "Glycemie: 5.1 mmol/L",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await trusted.communicate()
    assert trusted.returncode == 0, out.decode()
    messages = await platform.inbox(bob)
    assert len(messages) == 2
    for raw in messages:
        assert header(raw, "Carnet-Signature").startswith("valid;")
        checked = openssl_verify(raw, platform.ca_file, tmp_path)
        assert checked.returncode == 0, checked.stderr
    assert f"address={lab.address}" in header(messages[1], "Carnet-Signature")


async def test_submission_refusals(platform: Platform) -> None:
    anne, bob = platform.people.anne, platform.people.bob

    def attempt() -> list[tuple[int, bytes]]:
        answers = []
        with smtplib.SMTP("127.0.0.1", platform.ports["submission"], timeout=30) as client:
            client.ehlo()
            answers.append(client.docmd("AUTH", "PLAIN AGFubmUAeA=="))  # before STARTTLS
            answers.append(client.docmd("MAIL", f"FROM:<{anne.address}>"))
            client._host = platform.settings.domain
            client.starttls(context=platform.client_context())
            client.ehlo()
            answers.append(client.docmd("MAIL", f"FROM:<{anne.address}>"))  # no AUTH
            try:
                client.login(anne.address, "wrong password!!")
            except smtplib.SMTPAuthenticationError as exc:
                answers.append((exc.smtp_code, exc.smtp_error))
            client.login(anne.address, PASSWORD)
            answers.append(client.docmd("MAIL", f"FROM:<{bob.address}>"))  # not hers
            answers.append(client.docmd("MAIL", f"FROM:<{anne.address}>"))
            answers.append(client.docmd("RCPT", "TO:<nobody@carnet.test>"))
            answers.append(client.docmd("RCPT", "TO:<someone@gmail.com>"))  # not in the trust space
            answers.append(client.docmd("RCPT", f"TO:<{bob.address}>"))
            client.rset()
            answers.append(client.docmd("MAIL", f"FROM:<{anne.address}>"))
            answers.append(client.docmd("RCPT", f"TO:<{bob.address}>"))
            client.rset()
            try:
                client.sendmail(anne.address, [bob.address], text_message(bob.address, bob.address))  # From: Bob
            except smtplib.SMTPDataError as exc:
                answers.append((exc.smtp_code, exc.smtp_error))
        return answers

    answers = await asyncio.to_thread(attempt)
    codes = [code for code, _ in answers]
    assert codes[0] == 530 and codes[1] == 530  # STARTTLS first
    assert codes[2] == 530 and b"5.7.0" in answers[2][1]  # AUTH first
    assert codes[3] == 535
    assert codes[4] == 550 and b"5.7.1" in answers[4][1]
    assert codes[5] == 250
    assert codes[6] == 550 and b"5.1.1" in answers[6][1]
    assert codes[7] == 550 and b"trust space" in answers[7][1]
    assert codes[8] == 250
    assert codes[-1] == 550 and b"may not send as" in answers[-1][1]
    assert await platform.inbox(bob) == []


async def test_trusted_network_refuses_foreign_sender(platform: Platform) -> None:
    bob = platform.people.bob

    def attempt() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", platform.ports["trusted"], timeout=30) as client:
            return client.docmd("MAIL", f"FROM:<{bob.address}>") if client.ehlo()[0] == 250 else (0, b"")

    code, text = await asyncio.to_thread(attempt)
    assert code == 550 and b"sends as" in text
