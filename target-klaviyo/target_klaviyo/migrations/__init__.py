"""The delivery ledger's schema history: Alembic revisions, applied by ``Ledger.migrate``.

The configuration is built in code (:func:`target_klaviyo.ledger.alembic_config`), so an
installed target needs no ``alembic.ini``. A developer adding a revision writes it by hand in
``versions/`` (``rNNNN_<what>.py``, ``revision = "NNNN"``) and changes ``ledger.py``'s tables to
match: a test compares the migrated schema with them.
"""
