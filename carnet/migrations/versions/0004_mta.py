"""MTA: the outbound queue and the patients' correspondents (carnet.mta.models).

Revision ID: 0004_mta
Revises: 0003_mailbox
Create Date: 2026-01-04 00:00:00

Written from the models; ``tests/mta/test_schema.py`` asserts that the migrated schema and the models agree on SQLite
and PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from carnet.db import UTCDateTime

revision: str = "0004_mta"
down_revision: str | None = "0003_mailbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mta_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("author_mailbox_id", sa.Integer(), nullable=True),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("envid", sa.String(length=100), nullable=True),
        sa.Column("ret", sa.String(length=4), nullable=True),
        sa.Column("message_id", sa.String(length=998), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mta_messages")),
        sa.UniqueConstraint("key", name=op.f("uq_mta_messages_key")),
    )
    op.create_table(
        "mta_queue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("orcpt", sa.String(length=500), nullable=True),
        sa.Column("notify", sa.String(length=40), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("delay_notified", sa.Boolean(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("remote_mta", sa.String(length=300), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["mta_messages.id"],
            name=op.f("fk_mta_queue_message_id_mta_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mta_queue")),
        sa.UniqueConstraint("message_id", "recipient", name="uq_mta_queue_message_recipient"),
    )
    op.create_index("ix_mta_queue_due", "mta_queue", ["state", "next_attempt_at"], unique=False)
    op.create_index(op.f("ix_mta_queue_message_id"), "mta_queue", ["message_id"], unique=False)
    op.create_table(
        "mta_correspondents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_mailbox_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_mailbox_id"],
            ["dir_mailboxes.id"],
            name=op.f("fk_mta_correspondents_patient_mailbox_id_dir_mailboxes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mta_correspondents")),
        sa.UniqueConstraint("patient_mailbox_id", "address", name="uq_mta_correspondents_pair"),
    )
    op.create_index(
        op.f("ix_mta_correspondents_patient_mailbox_id"), "mta_correspondents", ["patient_mailbox_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_mta_correspondents_patient_mailbox_id"), table_name="mta_correspondents")
    op.drop_table("mta_correspondents")
    op.drop_index(op.f("ix_mta_queue_message_id"), table_name="mta_queue")
    op.drop_index("ix_mta_queue_due", table_name="mta_queue")
    op.drop_table("mta_queue")
    op.drop_table("mta_messages")
