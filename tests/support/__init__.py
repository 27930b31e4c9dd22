"""Helpers shared by several test folders (not fixtures' conftests): PostgreSQL, ledgers."""
