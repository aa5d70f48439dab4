"""telemetry store: devices, records, lifecycle, alerts, strips, reports, bad messages

Revision ID: 0001
Revises: (none)
Create Date: 2026-12-07 03:07:17.673281
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "alerts",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("fseq", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.Float(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("stored_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device", "fseq", name="uq_alerts_device_fseq"),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_stored_at"), ["stored_at"], unique=False)

    op.create_table(
        "bad_messages",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("device", sa.String(length=64), nullable=True),
        sa.Column("topic", sa.String(length=256), nullable=True),
        sa.Column("reason", sa.String(length=512), nullable=False),
        sa.Column("stored_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("bad_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bad_messages_stored_at"), ["stored_at"], unique=False)

    op.create_table(
        "devices",
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("fleet", sa.String(length=64), nullable=False),
        sa.Column("patient", sa.String(length=64), nullable=True),
        sa.Column("link", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("battery_pct", sa.Integer(), nullable=True),
        sa.Column("firmware_version", sa.Integer(), nullable=True),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("device"),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_patient"), ["patient"], unique=False)

    op.create_table(
        "lifecycle",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("fseq", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.Float(), nullable=True),
        sa.Column("site", sa.Integer(), nullable=False),
        sa.Column("kernel_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("src", sa.String(length=16), nullable=True),
        sa.Column("dst", sa.String(length=16), nullable=True),
        sa.Column("gate", sa.String(length=4), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("metric", sa.Float(), nullable=True),
        sa.Column("stored_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device", "fseq", name="uq_lifecycle_device_fseq"),
    )
    with op.batch_alter_table("lifecycle", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lifecycle_stored_at"), ["stored_at"], unique=False)

    op.create_table(
        "records",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("fseq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.Float(), nullable=True),
        sa.Column("sent_at", sa.Float(), nullable=True),
        sa.Column("arrival_at", sa.Float(), nullable=True),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("stored_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device", "fseq", name="uq_records_device_fseq"),
    )
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_records_stored_at"), ["stored_at"], unique=False)

    op.create_table(
        "reports",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("stored_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reports_device"), ["device"], unique=False)
        batch_op.create_index(batch_op.f("ix_reports_stored_at"), ["stored_at"], unique=False)

    op.create_table(
        "strips",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("fs", sa.Float(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.JSON(), nullable=False),
        sa.Column("stored_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device", "nonce", name="uq_strips_device_nonce"),
    )
    with op.batch_alter_table("strips", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_strips_stored_at"), ["stored_at"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("strips", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_strips_stored_at"))

    op.drop_table("strips")
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reports_stored_at"))
        batch_op.drop_index(batch_op.f("ix_reports_device"))

    op.drop_table("reports")
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_records_stored_at"))

    op.drop_table("records")
    with op.batch_alter_table("lifecycle", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lifecycle_stored_at"))

    op.drop_table("lifecycle")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_patient"))

    op.drop_table("devices")
    with op.batch_alter_table("bad_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bad_messages_stored_at"))

    op.drop_table("bad_messages")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_stored_at"))

    op.drop_table("alerts")
