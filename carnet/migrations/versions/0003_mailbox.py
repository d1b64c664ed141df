"""Message store: accounts, folders, blobs and their analyses, messages, tombstones (carnet.mailbox.models).

Revision ID: 0003_mailbox
Revises: 0002_directory
Create Date: 2026-01-03 00:00:00

Generated from the models with Alembic's autogenerate, then reviewed; ``tests/mailbox/test_schema.py`` asserts
that the migrated schema and the models agree on SQLite and PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from carnet.db import UTCDateTime

revision: str = "0003_mailbox"
down_revision: str | None = "0002_directory"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "mbx_blobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("refcount", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mbx_blobs")),
    )
    op.create_table(
        "mbx_analyses",
        sa.Column("blob_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("bodystructure", sa.LargeBinary(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("from_name", sa.Text(), nullable=False),
        sa.Column("from_address", sa.Text(), nullable=False),
        sa.Column("sent_date", UTCDateTime(), nullable=True),
        sa.Column("sent_day", sa.Date(), nullable=True),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("has_attachments", sa.Boolean(), nullable=False),
        sa.Column("parts", sa.JSON(), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["blob_id"], ["mbx_blobs.id"], name=op.f("fk_mbx_analyses_blob_id_mbx_blobs")),
        sa.PrimaryKeyConstraint("blob_id", name=op.f("pk_mbx_analyses")),
    )
    op.create_table(
        "mbx_header_fields",
        sa.Column("blob_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["blob_id"], ["mbx_blobs.id"], name=op.f("fk_mbx_header_fields_blob_id_mbx_blobs")),
        sa.PrimaryKeyConstraint("blob_id", "position", name=op.f("pk_mbx_header_fields")),
    )
    op.create_table(
        "mbx_accounts",
        sa.Column("mailbox_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("quota_limit", sa.BigInteger(), nullable=True),
        sa.Column("next_uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"], ["dir_mailboxes.id"], name=op.f("fk_mbx_accounts_mailbox_id_dir_mailboxes")
        ),
        sa.PrimaryKeyConstraint("mailbox_id", name=op.f("pk_mbx_accounts")),
    )
    op.create_table(
        "mbx_delivery_keys",
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"], ["mbx_accounts.mailbox_id"], name=op.f("fk_mbx_delivery_keys_mailbox_id_mbx_accounts")
        ),
        sa.PrimaryKeyConstraint("mailbox_id", "key", name=op.f("pk_mbx_delivery_keys")),
    )
    op.create_table(
        "mbx_folders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=1000), nullable=False),
        sa.Column("special_use", sa.String(length=16), nullable=True),
        sa.Column("subscribed", sa.Boolean(), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uidnext", sa.BigInteger(), nullable=False),
        sa.Column("highestmodseq", sa.BigInteger(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("unseen", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"], ["mbx_accounts.mailbox_id"], name=op.f("fk_mbx_folders_mailbox_id_mbx_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mbx_folders")),
        sa.UniqueConstraint("mailbox_id", "name", name="uq_mbx_folders_mailbox_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "mbx_expunged",
        sa.Column("folder_id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("modseq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["folder_id"], ["mbx_folders.id"], name=op.f("fk_mbx_expunged_folder_id_mbx_folders")),
        sa.PrimaryKeyConstraint("folder_id", "uid", name=op.f("pk_mbx_expunged")),
    )
    op.create_index("ix_mbx_expunged_folder_modseq", "mbx_expunged", ["folder_id", "modseq"], unique=False)
    op.create_table(
        "mbx_messages",
        sa.Column("id", _ROW_ID, nullable=False),
        sa.Column("folder_id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("modseq", sa.BigInteger(), nullable=False),
        sa.Column("seen", sa.Boolean(), nullable=False),
        sa.Column("answered", sa.Boolean(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("draft", sa.Boolean(), nullable=False),
        sa.Column("keywords", sa.Text(), nullable=False),
        sa.Column("internal_date", UTCDateTime(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("blob_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["blob_id"], ["mbx_blobs.id"], name=op.f("fk_mbx_messages_blob_id_mbx_blobs")),
        sa.ForeignKeyConstraint(["folder_id"], ["mbx_folders.id"], name=op.f("fk_mbx_messages_folder_id_mbx_folders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mbx_messages")),
        sa.UniqueConstraint("folder_id", "uid", name="uq_mbx_messages_folder_uid"),
    )
    op.create_index(op.f("ix_mbx_messages_blob_id"), "mbx_messages", ["blob_id"], unique=False)
    op.create_index("ix_mbx_messages_folder_modseq", "mbx_messages", ["folder_id", "modseq"], unique=False)
    op.create_index(
        "ix_mbx_messages_unseen",
        "mbx_messages",
        ["folder_id", "uid"],
        unique=False,
        sqlite_where=sa.text("seen = 0"),
        postgresql_where=sa.text("seen = false"),
    )


def downgrade() -> None:
    op.drop_index("ix_mbx_messages_unseen", table_name="mbx_messages")
    op.drop_index("ix_mbx_messages_folder_modseq", table_name="mbx_messages")
    op.drop_index(op.f("ix_mbx_messages_blob_id"), table_name="mbx_messages")
    op.drop_table("mbx_messages")
    op.drop_index("ix_mbx_expunged_folder_modseq", table_name="mbx_expunged")
    op.drop_table("mbx_expunged")
    op.drop_table("mbx_folders")
    op.drop_table("mbx_delivery_keys")
    op.drop_table("mbx_accounts")
    op.drop_table("mbx_header_fields")
    op.drop_table("mbx_analyses")
    op.drop_table("mbx_blobs")
