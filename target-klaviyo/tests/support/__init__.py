"""Helpers shared by target-klaviyo's test files (fixtures are in ``tests/conftest.py``)."""
