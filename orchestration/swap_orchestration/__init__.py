"""Dagster code location for the brands of ``brands.yml`` (``definitions.py``)."""
