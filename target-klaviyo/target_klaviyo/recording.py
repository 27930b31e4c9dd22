"""How a delivery component says what became of records: callables, not the run-wide objects.

A component (events, profiles, restocks, the intake) records outcomes through ``Record`` and
counts parts of records it left out through ``LeftOut``. A run hands it ``Delivery.record`` (the
run's summary and the ledger together) and ``Summary.add_left_out``; a test hands it a list's
``extend``. So a component is built, and tested, with only what it uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from target_klaviyo.ledger import Outcome

#: Records outcomes (in the run's summary and the ledger, in a run).
Record: TypeAlias = Callable[[list[Outcome]], None]
#: Counts parts of records left out while the rest went on: ``(what, count)``.
LeftOut: TypeAlias = Callable[[str, int], None]
