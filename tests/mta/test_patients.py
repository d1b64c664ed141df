"""MSSanté patient rules: only professionals, organisations and apps write to patients; a patient answers only a
correspondent who wrote first, and not once the exchange was closed with X-MSS-MES: FIN."""

from __future__ import annotations

import asyncio
import smtplib

import pytest
from mtahelp import Platform, header, submit, text_message


async def send(platform: Platform, login: str, sender: str, to: str, extra: str = "") -> None:
    await asyncio.to_thread(submit, platform, login, sender, [to], text_message(sender, to, extra=extra))


async def test_patient_exchanges(platform: Platform) -> None:
    anne, bob, camille = platform.people.anne, platform.people.bob, platform.people.camille
    # A patient may not write first.
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        await send(platform, camille.ins, camille.address, anne.address)
    assert b"5.7.1" in refused.value.recipients[anne.address][1]
    # Anne writes: the exchange is open, Camille may answer Anne (not Bob).
    await send(platform, anne.address, anne.address, camille.address)
    [received] = await platform.inbox(camille)
    assert header(received, "Carnet-Signature").startswith("valid;")
    await send(platform, camille.ins, camille.address, anne.address)
    [answer] = await platform.inbox(anne)
    assert header(answer, "From") == f"<{camille.address}>"
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await send(platform, camille.ins, camille.address, bob.address)
    # Anne closes the exchange: Camille can no longer answer, until Anne writes again.
    await send(platform, anne.address, anne.address, camille.address, extra="X-MSS-MES: FIN\r\n")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        await send(platform, camille.ins, camille.address, anne.address)
    assert b"X-MSS-MES: FIN" in refused.value.recipients[anne.address][1]
    await send(platform, anne.address, anne.address, camille.address)
    await send(platform, camille.ins, camille.address, anne.address)
    assert len(await platform.inbox(anne)) == 2


async def test_patient_cannot_write_to_a_patient(platform: Platform) -> None:
    from datetime import date

    from mtahelp import PASSWORD, nir

    from carnet.directory import auth, mailboxes
    from carnet.directory.records import PatientInput

    other = await mailboxes.add_patient(
        platform.db,
        platform.settings,
        PatientInput(
            ins=nir(77),
            birth_name="Petit",
            first_names="Louis",
            birth_date=date(1990, 1, 2),
            sex="M",
            birthplace_code="75056",
        ),
    )
    await auth.set_password(platform.db, other.address, PASSWORD)
    camille = platform.people.camille
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        await send(platform, other.ins, other.address, camille.address)
    assert b"only receives mail from professionals" in refused.value.recipients[camille.address][1]
