"""PKI: authorities, issued certificates and their addresses, CRLs (carnet.pki.models).

Revision ID: 0001_pki
Revises:
Create Date: 2026-11-22 00:00:00

Hand-written from the models (and checked against autogenerate: ``tests/pki/test_authority.py`` asserts that the
migrated schema and the models agree on SQLite and PostgreSQL).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from carnet.db import UTCDateTime

revision: str = "0001_pki"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pki_authorities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("subject", sa.String(length=512), nullable=False),
        sa.Column("certificate", sa.LargeBinary(), nullable=False),
        sa.Column("sealed_key", sa.LargeBinary(), nullable=False),
        sa.Column("fingerprint_sha256", sa.String(length=64), nullable=False),
        sa.Column("next_crl_number", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["pki_authorities.id"], name=op.f("fk_pki_authorities_parent_id_pki_authorities")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pki_authorities")),
        sa.UniqueConstraint("fingerprint_sha256", name=op.f("uq_pki_authorities_fingerprint_sha256")),
        sa.UniqueConstraint("name", name=op.f("uq_pki_authorities_name")),
    )
    op.create_table(
        "pki_certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.String(length=40), nullable=False),
        sa.Column("authority_id", sa.Integer(), nullable=False),
        sa.Column("profile", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=512), nullable=False),
        sa.Column("common_name", sa.String(length=128), nullable=False),
        sa.Column("emails", sa.JSON(), nullable=False),
        sa.Column("dns_names", sa.JSON(), nullable=False),
        sa.Column("national_id", sa.String(length=64), nullable=True),
        sa.Column("key_type", sa.String(length=16), nullable=False),
        sa.Column("certificate", sa.LargeBinary(), nullable=False),
        sa.Column("sealed_key", sa.LargeBinary(), nullable=True),
        sa.Column("fingerprint_sha256", sa.String(length=64), nullable=False),
        sa.Column("not_before", UTCDateTime(), nullable=False),
        sa.Column("not_after", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("revocation_reason", sa.String(length=32), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["authority_id"], ["pki_authorities.id"], name=op.f("fk_pki_certificates_authority_id_pki_authorities")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pki_certificates")),
        sa.UniqueConstraint("fingerprint_sha256", name=op.f("uq_pki_certificates_fingerprint_sha256")),
        sa.UniqueConstraint("serial", name=op.f("uq_pki_certificates_serial")),
    )
    op.create_index(
        "ix_pki_certificates_authority_id_revoked_at", "pki_certificates", ["authority_id", "revoked_at"], unique=False
    )
    op.create_index(op.f("ix_pki_certificates_national_id"), "pki_certificates", ["national_id"], unique=False)
    op.create_table(
        "pki_certificate_emails",
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["pki_certificates.id"],
            name=op.f("fk_pki_certificate_emails_certificate_id_pki_certificates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("certificate_id", "email", name=op.f("pk_pki_certificate_emails")),
    )
    op.create_index(op.f("ix_pki_certificate_emails_email"), "pki_certificate_emails", ["email"], unique=False)
    op.create_table(
        "pki_crls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("authority_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("this_update", UTCDateTime(), nullable=False),
        sa.Column("next_update", UTCDateTime(), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["authority_id"], ["pki_authorities.id"], name=op.f("fk_pki_crls_authority_id_pki_authorities")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pki_crls")),
        sa.UniqueConstraint("authority_id", "number", name="uq_pki_crls_authority_id_number"),
    )


def downgrade() -> None:
    op.drop_table("pki_crls")
    op.drop_index(op.f("ix_pki_certificate_emails_email"), table_name="pki_certificate_emails")
    op.drop_table("pki_certificate_emails")
    op.drop_index(op.f("ix_pki_certificates_national_id"), table_name="pki_certificates")
    op.drop_index("ix_pki_certificates_authority_id_revoked_at", table_name="pki_certificates")
    op.drop_table("pki_certificates")
    op.drop_table("pki_authorities")
