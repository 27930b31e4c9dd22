"""Lookups never build a URL longer than about 8 KB; database errors never show parameters."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from emulators.http import Request
from target_klaviyo.bounds import MAX_FILTER_CHARS, url_chunks
from tests.support.ledger import migrated_ledger
from tests.support.target import (
    KEY,
    RecordingKlaviyo,
    event,
    restock,
    run_target,
    singer,
)


def test_database_errors_do_not_show_their_parameters(tmp_path):
    ledger = migrated_ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}", run_id="run-secret-1")
    try:
        ledger.start_run()
        with pytest.raises(sa.exc.IntegrityError) as error:
            ledger.start_run()  # the same run id again
    finally:
        ledger.close()
    assert "run-secret-1" not in str(error.value)
    assert "parameters hidden" in str(error.value)


class UrlRecordingKlaviyo(RecordingKlaviyo):
    """Also keeps the length of each lookup's query string."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.query_lengths: list[int] = []

    def record(self, request: Request, status: int) -> None:
        super().record(request, status)
        if request.method == "GET":
            self.query_lengths.append(len(urlencode(request.query, doseq=True)))


def _long_email(i: int) -> str:
    return f"{i:03d}" + "a" * 60 + "@" + ".".join(["b" * 60, "c" * 60, "d" * 50]) + ".com"


@pytest.mark.slow
def test_lookups_are_split_so_no_url_is_too_long(config, ledger_path):
    klaviyo = UrlRecordingKlaviyo(api_key=KEY, rate_limits=False, job_delay=0.02)
    with klaviyo:
        skus = [f"{i:03d}" + "S" * 220 for i in range(40)]
        klaviyo.add_variants(skus, inventory=1)
        items = [event(f"e-{i}", _long_email(i)) for i in range(40)]
        items += [restock(f"r-{i}", sku, 1) for i, sku in enumerate(skus)]
        run = run_target(
            {**config, "api_url": klaviyo.url, "profile_check": "record"}, singer(items)
        )
        assert run.error is None, repr(run.error)
        assert len(klaviyo.query_lengths) > 2, "the lookups were split"
        assert max(klaviyo.query_lengths) < 8000
        assert all(v["inventory_quantity"] == 2 for v in klaviyo.variants())
        assert len(klaviyo.events()) == 40


def test_url_chunks_keep_within_the_budget_and_hand_back_what_cannot_fit():
    values = ["a" * 100] * 10 + ["b" * 5000] + ["c" * 10]
    chunks, too_long = url_chunks(values, size=100, budget=500)
    assert too_long == ["b" * 5000]
    assert [len(c) for c in chunks] == [4, 4, 3]
    assert [v for chunk in chunks for v in chunk] == ["a" * 100] * 10 + ["c" * 10]
    assert url_chunks(["x"] * 250, size=100)[0] == [["x"] * 100, ["x"] * 100, ["x"] * 50]
    assert MAX_FILTER_CHARS < 8000
