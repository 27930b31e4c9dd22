"""Profile versions far in the future clamped to the migration's time.

Before the contract bounded ``as_of`` (at most a day after the run), a profile update dated, say,
year 9999 reached Klaviyo and its ``as_of`` became that profile's newest version: every later
update was older, so it was ledgered ``accepted`` and its properties were dropped, for ever. This
revision sets every ``profile_versions.as_of`` later than a day after the migration to the
migration's time, so the profile's next update applies again. What Klaviyo holds is unchanged;
only the ordering the ledger keeps forgets the impossible date. (On PostgreSQL such a time could
not even be read back by Python: the update runs in the database, reading nothing.)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

#: How far ahead of the migration an ``as_of`` may be and still stand (the contract's bound).
FUTURE_LEEWAY = timedelta(days=1)


def upgrade() -> None:
    now = datetime.now(timezone.utc)
    versions = sa.table(
        "profile_versions",
        sa.column("as_of", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    op.execute(
        versions.update()
        .where(versions.c.as_of > now + FUTURE_LEEWAY)
        .values(as_of=now, updated_at=now)
    )


def downgrade() -> None:
    """Nothing to undo: the schema is 0002's, and the clamped times are not kept anywhere."""
