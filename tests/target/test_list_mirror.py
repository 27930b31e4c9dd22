"""No repeated list appends: each re-sync of a return still open must not append its RMA again.

Klaviyo does not document that ``append`` skips a value already present, so the emulator here
keeps duplicates and removes one occurrence per ``unappend`` (``list_duplicates``), the reading
under which a repeated append would leave a customer suppressed for ever. The target sends an
append only for a value its ledger's mirror does not hold as appended, and an unappend only for
one it holds (or knows nothing of).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from emulators.swap import SwapEmulator, catalog_skus
from swap_transforms.engine import MappingEngine
from swap_transforms.source_check import load_sources
from target_klaviyo.ledger import profile_hash
from tests.support.shared import SWAP_NOW
from tests.support.target import (
    KEY,
    Item,
    RecordingKlaviyo,
    event,
    ledger_rows,
    properties_of,
    run_target,
    singer,
    state,
    update,
)

OPEN = "swap_open_returns"
DEFAULT_MAPPING = Path(__file__).resolve().parents[2] / "transforms" / "swap_to_klaviyo.yml"
ANA, BOB, CARA = "ana@example.com", "bob@example.com", "cara@example.com"


@pytest.fixture
def klaviyo() -> Iterator[RecordingKlaviyo]:
    with RecordingKlaviyo(
        api_key=KEY, rate_limits=False, job_delay=0.02, list_duplicates=True
    ) as emulator:
        yield emulator


def sync(number: int, returns: dict[str, tuple[str, str, bool]]) -> str:
    """What the mapper emits for the returns changed since the last sync, as the default mapping
    does: the return's event (stable id) and a profile update appending its RMA while it is
    open, unappending it once it is done. ``returns`` is ``rma: (email, status, with_event)``.
    """
    items: list[Item] = []
    for rma, (email, status, with_event) in returns.items():
        as_of = f"2026-03-0{number}T10:{len(items):02d}:00+00:00"
        if with_event:
            items.append(event(f"swap:{rma}:{status}", email, metric=f"Return {status}"))
        is_open = status not in ("Closed", "Cancelled")
        items.append(
            update(
                f"{rma}:{number}",
                email,
                as_of=as_of,
                properties={"swap_last_return_status": status},
                append={OPEN: [rma]} if is_open else None,
                unappend=None if is_open else {OPEN: [rma]},
            )
        )
    items.append(state({"sync": number}))
    return singer(items)


#: Three syncs of returns moving along their lifecycle; each sync re-sends every changed return.
SYNCS: list[dict[str, tuple[str, str, bool]]] = [
    {  # RMA-1 and RMA-2 open for ana, RMA-3 for bob
        "RMA-1": (ANA, "Requested", True),
        "RMA-2": (ANA, "Requested", False),
        "RMA-3": (BOB, "Requested", True),
    },
    {  # RMA-1 and RMA-3 move on (still open), RMA-2 closes, RMA-4 opens for cara
        "RMA-1": (ANA, "Received", False),
        "RMA-2": (ANA, "Closed", True),
        "RMA-3": (BOB, "Received", True),
        "RMA-4": (CARA, "Requested", False),
    },
    {  # RMA-1 still open, RMA-2 re-synced closed, RMA-3 cancelled, RMA-4 moves on
        "RMA-2": (ANA, "Closed", False),
        "RMA-1": (ANA, "Inspected", True),
        "RMA-3": (BOB, "Cancelled", False),
        "RMA-4": (CARA, "Received", True),
    },
]


def list_operations(body: Any) -> Iterator[tuple[str, str, Any]]:
    """Every ``(operation, property, value)`` in a request body's ``patch_properties``."""
    if isinstance(body, dict):
        for key, value in body.items():
            if key == "patch_properties":
                for op in ("append", "unappend"):
                    for prop, values in (value.get(op) or {}).items():
                        for item in values if isinstance(values, list) else [values]:
                            yield op, prop, item
            else:
                yield from list_operations(value)
    elif isinstance(body, list):
        for item in body:
            yield from list_operations(item)


def sent_operations(klaviyo: RecordingKlaviyo) -> Counter[tuple[str, str, Any]]:
    return Counter(
        op for seen in klaviyo.posts() if seen.status < 300 for op in list_operations(seen.json())
    )


def test_the_emulator_keeps_a_value_appended_twice(klaviyo, config, tmp_path):
    """The hazard itself: without the mirror (a second, new ledger), a second entry."""
    text = singer([update("u-1", ANA, as_of="2026-03-01T10:00:00+00:00", append={OPEN: ["R"]})])
    assert run_target(config, text).error is None
    other = f"sqlite:///{tmp_path / 'another-ledger.sqlite'}"
    assert run_target({**config, "ledger_url": other}, text).error is None
    assert properties_of(klaviyo, ANA)[OPEN] == ["R", "R"]


def test_three_syncs_with_lifecycle_changes_leave_no_repeated_entry(klaviyo, config, ledger_path):
    for number, returns in enumerate(SYNCS, start=1):
        run = run_target(config, sync(number, returns))
        assert run.error is None, repr(run.error)
        assert run.states == [{"sync": number}]
        for profile in klaviyo.profiles():
            values = (profile["properties"] or {}).get(OPEN, [])
            email = profile.get("email")
            assert len(values) == len(set(values)), f"sync {number}: {email} holds {values}"
    assert properties_of(klaviyo, ANA)[OPEN] == ["RMA-1"]
    assert properties_of(klaviyo, BOB)[OPEN] == [], "a cancelled return is really unappended"
    assert properties_of(klaviyo, CARA)[OPEN] == ["RMA-4"]
    sent = sent_operations(klaviyo)
    assert sent == {
        ("append", OPEN, "RMA-1"): 1,
        ("append", OPEN, "RMA-2"): 1,
        ("append", OPEN, "RMA-3"): 1,
        ("append", OPEN, "RMA-4"): 1,
        ("unappend", OPEN, "RMA-2"): 1,  # not again when re-synced closed
        ("unappend", OPEN, "RMA-3"): 1,
    }
    # The mirror keeps the unappended values as such; the other properties still went out.
    mirror = {
        (r["profile_hash"], r["value"]): r["state"]
        for r in ledger_rows(ledger_path, "profile_lists")
    }
    ana, bob, cara = (profile_hash({"email": e}) for e in (ANA, BOB, CARA))
    assert mirror == {
        (ana, "RMA-1"): "appended",
        (ana, "RMA-2"): "unappended",
        (bob, "RMA-3"): "unappended",
        (cara, "RMA-4"): "appended",
    }
    assert properties_of(klaviyo, BOB)["swap_last_return_status"] == "Cancelled"
    assert properties_of(klaviyo, ANA)["swap_last_return_status"] == "Inspected"


def test_an_unappend_of_a_value_the_mirror_does_not_know_is_sent(klaviyo, config):
    """A value appended before the ledger kept unappended rows (or by hand) is still removed."""
    klaviyo.add_profile(ANA, properties={OPEN: ["RMA-0", "RMA-0"]})
    text = singer(
        [update("u-1", ANA, as_of="2026-03-01T10:00:00+00:00", unappend={OPEN: ["RMA-0"]})]
    )
    assert run_target(config, text).error is None
    assert sent_operations(klaviyo) == {("unappend", OPEN, "RMA-0"): 1}
    assert properties_of(klaviyo, ANA)[OPEN] == ["RMA-0"], "the emulator removes one occurrence"


def mapped(engine: Any, returns: list[dict[str, Any]], sync_number: int) -> str:
    """The default mapping's output for these Swap returns, as one sync's Singer input."""
    items: list[Item] = []
    for record in returns:
        source = json.loads(json.dumps(record), parse_float=Decimal)
        for stream, output in engine.map_record("returns", source):
            items.append((stream, json.loads(json.dumps(output, default=str))))
    items.append(state({"sync": sync_number}))
    return singer(items)


@pytest.mark.slow
def test_three_full_resyncs_of_the_default_mapping_repeat_no_entry(klaviyo, config, ledger_path):
    """The acceptance case: Swap's returns move along their lifecycle between three syncs, each
    re-reading every return through the default mapping; Klaviyo keeps duplicates."""
    engine = MappingEngine.from_files([str(DEFAULT_MAPPING)], sources=load_sources())
    klaviyo.add_variants(catalog_skus(), inventory=0)
    with SwapEmulator(
        returns=60, seed=5, now=SWAP_NOW, api_key="k", store_id="s", rate_limit_per_minute=None
    ) as swap:
        for number in (1, 2, 3):
            if number > 1:
                assert swap.advance(fraction=0.5), "some returns move on between syncs"
            run = run_target(config, mapped(engine, list(swap.all_returns()), number))
            assert run.error is None, repr(run.error)
    profiles = [p for p in klaviyo.profiles() if (p["properties"] or {}).get(OPEN) is not None]
    repeated = {p["id"]: v for p in profiles if len(v := p["properties"][OPEN]) > len(set(v))}
    assert repeated == {}
    sent = sent_operations(klaviyo)
    appends = Counter(
        value for (op, _, value), n in sent.items() if op == "append" for _ in range(n)
    )
    assert appends, "open returns were appended"
    assert max(appends.values()) == 1, "each RMA appended once over three syncs"
    # Klaviyo flags exactly what the ledger's mirror holds as appended; closed returns are gone.
    flagged = {v for p in profiles for v in p["properties"][OPEN]}
    mirror = ledger_rows(ledger_path, "profile_lists")
    assert flagged == {r["value"] for r in mirror if r["state"] == "appended"}
    unappended = {r["value"] for r in mirror if r["state"] == "unappended"}
    assert unappended, "some returns closed over the three syncs"
    assert not flagged & unappended
