"""Development harness shared by the tests and the benchmarks (never shipped, never in production).

``harness.webhooks`` runs the swap-webhooks receiver (in a thread or as its own process) against a
fake run command (``fake_run.py``) or an isolated Meltano project. ``bench/`` imports it rather
than anything under ``tests/``; the tests reach it through ``tests/webhooks/support.py``.
"""
