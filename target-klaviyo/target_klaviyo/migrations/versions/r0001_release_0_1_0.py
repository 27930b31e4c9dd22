"""The ledger of target-klaviyo 0.1.0: deliveries, profile versions, restocks, list mirror, runs.

0.1.0 created these tables with ``metadata.create_all`` and kept no version. ``Ledger.migrate``
stamps such a ledger with this revision instead of running it; a ledger missing some of them (one
written before they all existed) gets only the missing ones here, so no row is ever touched.

Revision ID: 0001
Revises:
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _deliveries() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("record_key", sa.String(255), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(128)),
        sa.Column("detail", sa.Text),
        sa.Column("metric", sa.String(128)),
        sa.Column("source_id", sa.String(255)),
        sa.Column("profile_hash", sa.String(64)),
        sa.Column("source_time", sa.DateTime(timezone=True)),
        sa.Column("event_time", sa.DateTime(timezone=True)),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text),
        sa.Column("replayed_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_deliveries_run_id", "deliveries", ["run_id"])
    op.create_index("ix_deliveries_source_id", "deliveries", ["source_id"])
    op.create_index("ix_deliveries_profile_hash", "deliveries", ["profile_hash"])
    op.create_index("ix_deliveries_lookup", "deliveries", ["stream", "record_key", "outcome"])


def _profile_versions() -> None:
    op.create_table(
        "profile_versions",
        sa.Column("profile_hash", sa.String(64), primary_key=True),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def _restocks() -> None:
    op.create_table(
        "restocks",
        sa.Column("restock_key", sa.String(255), primary_key=True),
        sa.Column("variant_id", sa.String(255), nullable=False),
        sa.Column("inventory_delta", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("base_quantity", sa.Numeric),
        sa.Column("target_quantity", sa.Numeric),
        sa.Column("job_id", sa.String(128)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def _profile_lists() -> None:
    op.create_table(
        "profile_lists",
        sa.Column("profile_hash", sa.String(64), primary_key=True),
        sa.Column("property", sa.String(128), primary_key=True),
        sa.Column("value", sa.String(255), primary_key=True),
        sa.Column("masked_identity", sa.String(255)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def _runs() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(36), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text),
    )


TABLES: dict[str, Callable[[], None]] = {
    "deliveries": _deliveries,
    "profile_versions": _profile_versions,
    "restocks": _restocks,
    "profile_lists": _profile_lists,
    "runs": _runs,
}


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, create in TABLES.items():
        if name not in existing:
            create()


def downgrade() -> None:
    for name in reversed(list(TABLES)):
        op.drop_table(name)
