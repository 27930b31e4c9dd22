"""The PostgreSQL fixtures: ``postgres_url`` (a throwaway cluster for the session, see
``harness.postgres``) and ``postgres_db`` (a database of its own per test)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from harness.postgres import Cluster, missing, server_binaries

#: Kept importable from here.
__all__ = ["Cluster", "postgres_db", "postgres_url", "server_binaries"]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL of a throwaway cluster's ``postgres`` database, for the session."""
    binaries = server_binaries()
    if binaries is None:
        missing("PostgreSQL's server (initdb, pg_ctl) is not installed")
    try:
        import psycopg  # noqa: F401, PLC0415 - only checked, SQLAlchemy imports it
    except ImportError:
        missing("psycopg is not installed (target-klaviyo's `postgres` extra)")
    assert binaries is not None
    cluster = Cluster(binaries)
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def postgres_db(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the session's cluster, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield sa.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
