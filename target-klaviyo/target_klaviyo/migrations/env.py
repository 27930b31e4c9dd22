"""Alembic's entry point: runs the revisions on the connection ``Ledger.migrate`` hands over.

Only the online mode exists: the target migrates its own ledger at start-up, under its run lock,
on a connection it opened. Batch mode lets SQLite (which cannot alter a column) copy and replace
a table where a revision changes one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from target_klaviyo.ledger import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, sa.Connection):  # pragma: no cover - a developer's mistake
    msg = "target-klaviyo's migrations run through Ledger.migrate(), which passes a connection"
    raise RuntimeError(msg)
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
