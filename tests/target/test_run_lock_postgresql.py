"""Two runs of target-klaviyo on one PostgreSQL ledger never deliver at the same time.

The lock is PostgreSQL's advisory lock, per schema; this test needs a PostgreSQL cluster
(tests/support/postgres.py), so it is the project's. On SQLite: the plugin's own
target-klaviyo/tests/test_run_lock.py.
"""

from __future__ import annotations

import sqlalchemy as sa

from target_klaviyo.ledger import Ledger


def test_the_run_lock_on_postgresql_is_an_advisory_lock_per_schema(postgres_db: str) -> None:
    first, second = Ledger(postgres_db), Ledger(postgres_db)
    try:
        assert first.lock_run(1)
        assert not second.lock_run(0.5), "a second run on the same ledger waits, then gives up"
        first.release_run()
        assert second.lock_run(1), "released: the next run takes it at once"
    finally:
        first.close()
        second.close()
    # A brand's ledger in its own schema (decisions.md §6) never waits for another brand's run.
    engine = sa.create_engine(postgres_db)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA brand_b"))
    engine.dispose()
    brand_b = sa.make_url(postgres_db).update_query_dict({"options": "-csearch_path=brand_b"})
    brand_a, other = Ledger(postgres_db), Ledger(brand_b.render_as_string(hide_password=False))
    try:
        other.migrate()
        assert brand_a.lock_run(1)
        assert other.lock_run(0.5)
        with other.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_schema()")).scalar() == "brand_b"
            assert "deliveries" in sa.inspect(conn).get_table_names(schema="brand_b")
    finally:
        brand_a.close()
        other.close()
