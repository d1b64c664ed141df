"""The migration 0005_webmail creates exactly the tables of carnet.webmail.models, on both backends."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from carnet.db import Database
from carnet.models import metadata


def _webmail_differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return [d for d in compare_metadata(context, metadata) if "web_" in repr(d)]


async def test_migrated_schema_matches_the_models(db: Database) -> None:
    async with db.engine.connect() as connection:
        assert await connection.run_sync(_webmail_differences) == []


async def test_expired_sessions_are_purged(db: Database) -> None:
    from datetime import date, timedelta

    from sqlalchemy import update

    from carnet.db import utcnow
    from carnet.directory.models import Mailbox, Patient
    from carnet.webmail import store
    from carnet.webmail.models import WebSession

    async with db.transaction() as session:
        patient = Patient(ins="285057505604222", ins_oid="1.2.250.1.213.1.4.10", birth_name="Durand",
                          first_names="Léa", birth_date=date(1985, 5, 17), sex="F", birthplace_code="75056",
                          identity_status="VALI", created_at=utcnow())
        session.add(patient)
        await session.flush()
        mailbox = Mailbox(address="lea@patient.carnet.test", kind="PAT", display_name="Léa Durand",
                          display_key="lea durand", patient_id=patient.id, red_list=False, certificate_serial="01",
                          created_at=utcnow())
        session.add(mailbox)
        await session.flush()
        mailbox_id = mailbox.id
    live = await store.create_session(db, mailbox_id, "127.0.0.1", pending_totp=False)
    old = await store.create_session(db, mailbox_id, "127.0.0.1", pending_totp=False)
    async with db.transaction() as session:
        await session.execute(update(WebSession).where(WebSession.token_hash == store._hash(old))
                              .values(expires_at=utcnow() - timedelta(seconds=1)))
    assert await store.load_session(db, old) is None
    assert await store.purge_expired(db) == 0  # loading an expired session already removed it
    async with db.transaction() as session:
        await session.execute(update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert await store.purge_expired(db) == 1
    assert await store.load_session(db, live) is None
