"""Run outcomes and unappended list values.

- ``runs.status`` widens to 32 characters (outcomes such as ``set_aside_over_threshold``), and
  ``runs.error`` holds the error that ended a run (its type and a message without customer data).
- ``profile_lists.state`` is ``appended`` or ``unappended``: the list mirror keeps a value once it
  was unappended, so the target knows not to unappend it again and not to append twice. Rows of
  0.1.0 (which deleted unappended values) read as ``appended`` through the server default.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.alter_column(
            "status", existing_type=sa.String(16), type_=sa.String(32), existing_nullable=False
        )
        batch.add_column(sa.Column("error", sa.Text, nullable=True))
    with op.batch_alter_table("profile_lists") as batch:
        batch.add_column(
            sa.Column("state", sa.String(16), nullable=False, server_default="appended")
        )


def downgrade() -> None:
    """Back to 0.1.0's schema: it reads every mirror row as appended, so unappended ones go."""
    runs = sa.table("runs", sa.column("status", sa.String))
    op.execute(runs.update().values(status=sa.func.substr(runs.c.status, 1, 16)))
    lists = sa.table("profile_lists", sa.column("state", sa.String))
    op.execute(lists.delete().where(lists.c.state != "appended"))
    with op.batch_alter_table("profile_lists") as batch:
        batch.drop_column("state")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("error")
        batch.alter_column(
            "status", existing_type=sa.String(32), type_=sa.String(16), existing_nullable=False
        )
