"""Helpers of the message-store tests."""

from __future__ import annotations

from datetime import date

from carnet.db import Database, utcnow
from carnet.directory.models import Mailbox, Patient


async def new_mailbox(db: Database, n: int) -> int:
    """A directory mailbox (patient kind) written directly: the store only needs its id."""
    async with db.transaction() as session:
        patient = Patient(ins=f"{n:015d}", ins_oid="1.2.250.1.213.1.4.10", birth_name="Durand", first_names="Léa",
                          birth_date=date(1985, 5, 17), sex="F", birthplace_code="75056", identity_status="VALI",
                          created_at=utcnow())
        session.add(patient)
        await session.flush()
        mailbox = Mailbox(address=f"patient{n}@carnet.test", kind="PAT", display_name="Léa Durand",
                          display_key="lea durand", patient_id=patient.id, red_list=False, certificate_serial="01",
                          created_at=utcnow())
        session.add(mailbox)
        await session.flush()
        return mailbox.id
