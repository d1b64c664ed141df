"""Webmail: sessions, per-user settings (language, TOTP) and the audit trail (carnet.webmail.models).

Revision ID: 0005_webmail
Revises: 0004_mta
Create Date: 2026-11-22 00:00:00

Written from the models; ``tests/webmail/test_webmail_schema.py`` asserts that the migrated schema and the models
agree on SQLite and PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from carnet.db import UTCDateTime

revision: str = "0005_webmail"
down_revision: str | None = "0004_mta"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("acting_for", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("pending_totp", sa.Boolean(), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"], ["dir_mailboxes.id"], name=op.f("fk_web_sessions_mailbox_id_dir_mailboxes")
        ),
        sa.ForeignKeyConstraint(
            ["acting_for"], ["dir_mailboxes.id"], name=op.f("fk_web_sessions_acting_for_dir_mailboxes")
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_web_sessions")),
    )
    op.create_index(op.f("ix_web_sessions_mailbox_id"), "web_sessions", ["mailbox_id"], unique=False)
    op.create_index(op.f("ix_web_sessions_expires_at"), "web_sessions", ["expires_at"], unique=False)
    op.create_table(
        "web_users",
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("totp_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("totp_enabled", sa.Boolean(), nullable=False),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"], ["dir_mailboxes.id"], name=op.f("fk_web_users_mailbox_id_dir_mailboxes")
        ),
        sa.PrimaryKeyConstraint("mailbox_id", name=op.f("pk_web_users")),
    )
    op.create_table(
        "web_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("space_id", sa.Integer(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=400), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["space_id"], ["dir_mailboxes.id"], name=op.f("fk_web_audit_space_id_dir_mailboxes")),
        sa.ForeignKeyConstraint(["actor_id"], ["dir_mailboxes.id"], name=op.f("fk_web_audit_actor_id_dir_mailboxes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_audit")),
    )
    op.create_index("ix_web_audit_space_id", "web_audit", ["space_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_web_audit_space_id", table_name="web_audit")
    op.drop_table("web_audit")
    op.drop_table("web_users")
    op.drop_index(op.f("ix_web_sessions_expires_at"), table_name="web_sessions")
    op.drop_index(op.f("ix_web_sessions_mailbox_id"), table_name="web_sessions")
    op.drop_table("web_sessions")
