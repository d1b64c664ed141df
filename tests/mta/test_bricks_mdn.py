"""The router's other routes: a brick (the test brick answers with a signed acknowledgement, inside the accepting
transaction), and automatic "processed" MDNs for local deliveries (never in answer to an MDN or a DSN)."""

from __future__ import annotations

import asyncio

from mtahelp import Platform, header, openssl_verify, submit, text_message

from carnet.directory import mailboxes
from carnet.directory.records import AppInput
from carnet.mta.bricks import EchoBrick, default_registry, register_brick


async def test_brick_receives_verified_mail_and_answers_signed(platform: Platform, tmp_path) -> None:  # type: ignore[no-untyped-def]
    anne = platform.people.anne
    publisher = "1" + (await mailboxes.lookup_mailbox(platform.db, platform.people.lab.address)).national_id[1:]
    app = await mailboxes.add_app(platform.db, platform.settings, AppInput("Agenda", publisher, "dev@example.org"))
    brick = EchoBrick(app.address)
    register_brick(app.address, brick)
    try:
        await asyncio.to_thread(
            submit,
            platform,
            anne.address,
            anne.address,
            [app.address],
            text_message(anne.address, app.address, subject="RDV"),
        )
        [message] = brick.received
        assert message.signature["status"] == "valid" and message.from_address == anne.address
        [ack] = await platform.inbox(anne)
        assert header(ack, "From") == f"<{app.address}>"
        assert header(ack, "Carnet-Signature").startswith('valid; signer="Agenda"')
        checked = openssl_verify(ack, platform.ca_file, tmp_path)
        assert checked.returncode == 0, checked.stderr
    finally:
        default_registry.unregister(app.address)


async def test_local_mdn_is_sent_once_and_never_answers_a_report(platform: Platform) -> None:
    anne, bob = platform.people.anne, platform.people.bob
    asking = text_message(
        anne.address, bob.address, subject="lu ?", extra=f"Disposition-Notification-To: <{anne.address}>\r\n"
    )
    await asyncio.to_thread(submit, platform, anne.address, anne.address, [bob.address], asking)
    [mdn] = await platform.inbox(anne)
    assert b"report-type=disposition-notification" in mdn
    assert f"Final-Recipient: rfc822; {bob.address}".encode() in mdn
    assert header(mdn, "Carnet-Signature").startswith('valid; signer="Bob Durand"')
    assert header(mdn, "Return-Path") == "<>"
    # Anne's MDN went to Anne: Bob's copy of the question is there, and nothing answered the MDN itself.
    assert len(await platform.inbox(bob)) == 1
    # A report that asks for an MDN gets none.
    report = (
        f"From: <{anne.address}>\r\nTo: <{bob.address}>\r\nSubject: report\r\n"
        f"Disposition-Notification-To: <{anne.address}>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
        "--r\r\nContent-Type: text/plain\r\n\r\nx\r\n--r\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; x\r\n\r\nFinal-Recipient: rfc822; y@z\r\nAction: failed\r\nStatus: 5.0.0\r\n"
        "\r\n--r--\r\n"
    ).encode()
    await asyncio.to_thread(submit, platform, anne.address, anne.address, [bob.address], report)
    await asyncio.sleep(0.3)
    assert len(await platform.inbox(anne)) == 1
    assert len(await platform.inbox(bob)) == 2
