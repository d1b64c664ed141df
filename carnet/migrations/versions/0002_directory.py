"""Directory: identities, mailboxes, credentials, the trust space (carnet.directory.models).

Revision ID: 0002_directory
Revises: 0001_pki
Create Date: 2026-01-02 00:00:00

Generated from the models with Alembic's autogenerate, then reviewed; ``tests/directory/test_schema.py`` asserts
that the migrated schema and the models agree on SQLite and PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from carnet.db import UTCDateTime

revision: str = "0002_directory"
down_revision: str | None = "0001_pki"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Each mailbox is owned by exactly the identity its kind calls for (models.Mailbox "one_owner").
_ONE_OWNER = (
    "(kind = 'PER' AND professional_id IS NOT NULL AND organisation_id IS NULL AND patient_id IS NULL"
    " AND app_id IS NULL)"
    " OR (kind IN ('ORG', 'CAB') AND organisation_id IS NOT NULL AND professional_id IS NULL"
    " AND patient_id IS NULL AND app_id IS NULL)"
    " OR (kind = 'APP' AND app_id IS NOT NULL AND professional_id IS NULL AND organisation_id IS NULL"
    " AND patient_id IS NULL)"
    " OR (kind = 'PAT' AND patient_id IS NOT NULL AND professional_id IS NULL AND organisation_id IS NULL"
    " AND app_id IS NULL)"
)


def upgrade() -> None:
    op.create_table(
        "dir_operators",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("ca_bundle_pem", sa.Text(), nullable=False),
        sa.Column("relay_endpoints", sa.JSON(), nullable=False),
        sa.Column("directory_url", sa.String(length=500), nullable=True),
        sa.Column("legacy_crypto", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("added_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dir_operators")),
        sa.UniqueConstraint("domain", name=op.f("uq_dir_operators_domain")),
    )
    op.create_table(
        "dir_organisations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("id_type", sa.String(length=8), nullable=False),
        sa.Column("id_value", sa.String(length=14), nullable=False),
        sa.Column("national_id", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_key", sa.String(length=200), nullable=False),
        sa.Column("street", sa.String(length=200), nullable=True),
        sa.Column("postal_code", sa.String(length=10), nullable=True),
        sa.Column("city", sa.String(length=100), nullable=True),
        sa.Column("city_key", sa.String(length=100), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dir_organisations")),
        sa.UniqueConstraint("national_id", name=op.f("uq_dir_organisations_national_id")),
    )
    op.create_index(op.f("ix_dir_organisations_city_key"), "dir_organisations", ["city_key"], unique=False)
    op.create_index(op.f("ix_dir_organisations_name_key"), "dir_organisations", ["name_key"], unique=False)
    op.create_table(
        "dir_patients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ins", sa.String(length=15), nullable=False),
        sa.Column("ins_oid", sa.String(length=32), nullable=False),
        sa.Column("birth_name", sa.String(length=100), nullable=False),
        sa.Column("first_names", sa.String(length=200), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("sex", sa.String(length=1), nullable=False),
        sa.Column("birthplace_code", sa.String(length=5), nullable=False),
        sa.Column("identity_status", sa.String(length=8), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dir_patients")),
        sa.UniqueConstraint("ins", name=op.f("uq_dir_patients_ins")),
    )
    op.create_table(
        "dir_professionals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("id_type", sa.String(length=8), nullable=False),
        sa.Column("id_value", sa.String(length=11), nullable=False),
        sa.Column("national_id", sa.String(length=16), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("last_name", sa.String(length=100), nullable=False),
        sa.Column("name_key", sa.String(length=201), nullable=False),
        sa.Column("profession_code", sa.String(length=8), nullable=False),
        sa.Column("specialty_code", sa.String(length=16), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dir_professionals")),
        sa.UniqueConstraint("national_id", name=op.f("uq_dir_professionals_national_id")),
    )
    op.create_index(op.f("ix_dir_professionals_name_key"), "dir_professionals", ["name_key"], unique=False)
    op.create_index(
        op.f("ix_dir_professionals_profession_code"), "dir_professionals", ["profession_code"], unique=False
    )
    op.create_index(op.f("ix_dir_professionals_specialty_code"), "dir_professionals", ["specialty_code"], unique=False)
    op.create_table(
        "dir_remote_certificates",
        sa.Column("address", sa.String(length=254), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("certificates_pem", sa.Text(), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("fetched_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_dir_remote_certificates")),
    )
    op.create_index(op.f("ix_dir_remote_certificates_domain"), "dir_remote_certificates", ["domain"], unique=False)
    op.create_table(
        "dir_throttle",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", UTCDateTime(), nullable=False),
        sa.Column("blocked_until", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_dir_throttle")),
    )
    op.create_table(
        "dir_affiliations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("professional_id", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["dir_organisations.id"],
            name=op.f("fk_dir_affiliations_organisation_id_dir_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["professional_id"],
            ["dir_professionals.id"],
            name=op.f("fk_dir_affiliations_professional_id_dir_professionals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dir_affiliations")),
        sa.UniqueConstraint("professional_id", "organisation_id", name="uq_dir_affiliations_pair"),
    )
    op.create_index(op.f("ix_dir_affiliations_organisation_id"), "dir_affiliations", ["organisation_id"], unique=False)
    op.create_index(op.f("ix_dir_affiliations_professional_id"), "dir_affiliations", ["professional_id"], unique=False)
    op.create_table(
        "dir_apps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("publisher_id", sa.Integer(), nullable=False),
        sa.Column("contact", sa.String(length=254), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["publisher_id"], ["dir_organisations.id"], name=op.f("fk_dir_apps_publisher_id_dir_organisations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dir_apps")),
        sa.UniqueConstraint("name", name=op.f("uq_dir_apps_name")),
    )
    op.create_index(op.f("ix_dir_apps_publisher_id"), "dir_apps", ["publisher_id"], unique=False)
    op.create_table(
        "dir_representatives",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("representative_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("patient_id <> representative_id", name=op.f("ck_dir_representatives_not_self")),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["dir_patients.id"], name=op.f("fk_dir_representatives_patient_id_dir_patients")
        ),
        sa.ForeignKeyConstraint(
            ["representative_id"],
            ["dir_patients.id"],
            name=op.f("fk_dir_representatives_representative_id_dir_patients"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dir_representatives")),
        sa.UniqueConstraint("patient_id", "representative_id", name="uq_dir_representatives_pair"),
    )
    op.create_index(op.f("ix_dir_representatives_patient_id"), "dir_representatives", ["patient_id"], unique=False)
    op.create_index(
        op.f("ix_dir_representatives_representative_id"), "dir_representatives", ["representative_id"], unique=False
    )
    op.create_table(
        "dir_mailboxes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=254), nullable=False),
        sa.Column("kind", sa.String(length=3), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("display_key", sa.String(length=200), nullable=False),
        sa.Column("service", sa.String(length=100), nullable=True),
        sa.Column("professional_id", sa.Integer(), nullable=True),
        sa.Column("organisation_id", sa.Integer(), nullable=True),
        sa.Column("patient_id", sa.Integer(), nullable=True),
        sa.Column("app_id", sa.Integer(), nullable=True),
        sa.Column("red_list", sa.Boolean(), nullable=False),
        sa.Column("certificate_serial", sa.String(length=40), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("password_changed_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("disabled_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            _ONE_OWNER,
            name=op.f("ck_dir_mailboxes_one_owner"),
        ),
        sa.ForeignKeyConstraint(["app_id"], ["dir_apps.id"], name=op.f("fk_dir_mailboxes_app_id_dir_apps")),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["dir_organisations.id"],
            name=op.f("fk_dir_mailboxes_organisation_id_dir_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["dir_patients.id"], name=op.f("fk_dir_mailboxes_patient_id_dir_patients")
        ),
        sa.ForeignKeyConstraint(
            ["professional_id"],
            ["dir_professionals.id"],
            name=op.f("fk_dir_mailboxes_professional_id_dir_professionals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dir_mailboxes")),
        sa.UniqueConstraint("address", name=op.f("uq_dir_mailboxes_address")),
    )
    op.create_index(op.f("ix_dir_mailboxes_app_id"), "dir_mailboxes", ["app_id"], unique=False)
    op.create_index(op.f("ix_dir_mailboxes_display_key"), "dir_mailboxes", ["display_key"], unique=False)
    op.create_index("ix_dir_mailboxes_kind_listed", "dir_mailboxes", ["kind", "red_list", "disabled_at"], unique=False)
    op.create_index(op.f("ix_dir_mailboxes_organisation_id"), "dir_mailboxes", ["organisation_id"], unique=False)
    op.create_index(op.f("ix_dir_mailboxes_patient_id"), "dir_mailboxes", ["patient_id"], unique=False)
    op.create_index(op.f("ix_dir_mailboxes_professional_id"), "dir_mailboxes", ["professional_id"], unique=False)
    op.create_table(
        "dir_app_passwords",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("lookup", sa.String(length=8), nullable=False),
        sa.Column("hash", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["mailbox_id"], ["dir_mailboxes.id"], name=op.f("fk_dir_app_passwords_mailbox_id_dir_mailboxes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dir_app_passwords")),
    )
    op.create_index(op.f("ix_dir_app_passwords_mailbox_id"), "dir_app_passwords", ["mailbox_id"], unique=False)
    op.create_table(
        "dir_send_as",
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("professional_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"], ["dir_mailboxes.id"], name=op.f("fk_dir_send_as_mailbox_id_dir_mailboxes")
        ),
        sa.ForeignKeyConstraint(
            ["professional_id"], ["dir_professionals.id"], name=op.f("fk_dir_send_as_professional_id_dir_professionals")
        ),
        sa.PrimaryKeyConstraint("mailbox_id", "professional_id", name=op.f("pk_dir_send_as")),
    )
    op.create_index(op.f("ix_dir_send_as_professional_id"), "dir_send_as", ["professional_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_dir_send_as_professional_id"), table_name="dir_send_as")
    op.drop_table("dir_send_as")
    op.drop_index(op.f("ix_dir_app_passwords_mailbox_id"), table_name="dir_app_passwords")
    op.drop_table("dir_app_passwords")
    op.drop_index(op.f("ix_dir_mailboxes_professional_id"), table_name="dir_mailboxes")
    op.drop_index(op.f("ix_dir_mailboxes_patient_id"), table_name="dir_mailboxes")
    op.drop_index(op.f("ix_dir_mailboxes_organisation_id"), table_name="dir_mailboxes")
    op.drop_index("ix_dir_mailboxes_kind_listed", table_name="dir_mailboxes")
    op.drop_index(op.f("ix_dir_mailboxes_display_key"), table_name="dir_mailboxes")
    op.drop_index(op.f("ix_dir_mailboxes_app_id"), table_name="dir_mailboxes")
    op.drop_table("dir_mailboxes")
    op.drop_index(op.f("ix_dir_representatives_representative_id"), table_name="dir_representatives")
    op.drop_index(op.f("ix_dir_representatives_patient_id"), table_name="dir_representatives")
    op.drop_table("dir_representatives")
    op.drop_index(op.f("ix_dir_apps_publisher_id"), table_name="dir_apps")
    op.drop_table("dir_apps")
    op.drop_index(op.f("ix_dir_affiliations_professional_id"), table_name="dir_affiliations")
    op.drop_index(op.f("ix_dir_affiliations_organisation_id"), table_name="dir_affiliations")
    op.drop_table("dir_affiliations")
    op.drop_table("dir_throttle")
    op.drop_index(op.f("ix_dir_remote_certificates_domain"), table_name="dir_remote_certificates")
    op.drop_table("dir_remote_certificates")
    op.drop_index(op.f("ix_dir_professionals_specialty_code"), table_name="dir_professionals")
    op.drop_index(op.f("ix_dir_professionals_profession_code"), table_name="dir_professionals")
    op.drop_index(op.f("ix_dir_professionals_name_key"), table_name="dir_professionals")
    op.drop_table("dir_professionals")
    op.drop_table("dir_patients")
    op.drop_index(op.f("ix_dir_organisations_name_key"), table_name="dir_organisations")
    op.drop_index(op.f("ix_dir_organisations_city_key"), table_name="dir_organisations")
    op.drop_table("dir_organisations")
    op.drop_table("dir_operators")
