"""Keyset paging over Swap's ``last_RMA_updated_date``, which page numbers alone get wrong.

Swap orders returns by ``date_updated`` then ``return_id``, and a return updated while a client
pages moves to the end of that order: every row behind it shifts back one place, so a client asking
for page N+1 skips the row that slid onto page N. Keyset paging asks instead for rows updated on
or after the last ``date_updated`` it received, so a shift cannot hide a row. ``page`` is used only
to walk through rows that share one timestamp, and rows already emitted with the same
(``date_updated``, ``return_id``) are skipped.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, NamedTuple

from singer_sdk.pagination import BaseAPIPaginator


class PageToken(NamedTuple):
    """Where the next request starts: rows updated on or after ``since``, ``page`` among them."""

    since: str | None
    page: int


def parse_timestamp(value: str) -> datetime:
    """Swap's ISO 8601 timestamps; a naive one (a bare start_date) is taken as UTC."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class KeysetPaginator(BaseAPIPaginator[PageToken]):
    """Computes the next request from the rows of the page just read.

    The stream hands every decoded page to :meth:`accept`, which returns the rows not yet emitted
    and prepares the next token; the SDK then calls :meth:`advance`, which picks it up. Only the
    keys of rows at the newest timestamp are remembered, so memory stays flat however long the sync.
    """

    def __init__(self, since: str | None) -> None:
        super().__init__(PageToken(since, 1))
        self._next: PageToken | None = None
        self._newest: datetime | None = None
        self._seen_at_newest: set[str] = set()

    def accept(
        self,
        rows: list[dict[str, Any]],
        *,
        has_next_page: bool,
        last_updated: str | None = None,
        items: int | None = None,
    ) -> list[dict[str, Any]]:
        """Return the rows of this page not emitted before, and work out the next request.

        ``items`` counts every return the page held and ``last_updated`` is the last readable
        ``date_updated`` among them, set-aside returns included: a page whose last returns were
        set aside (or a page of nothing but) must still move the keyset on, not end the sync.
        """
        fresh = []
        for row in rows:
            updated = parse_timestamp(row["date_updated"])
            return_id = row["return_id"]
            if self._newest is not None and updated < self._newest:
                continue  # emitted already: the lookback or a shared timestamp brought it back
            if updated == self._newest:
                if return_id in self._seen_at_newest:
                    continue
            else:
                self._newest = updated
                self._seen_at_newest = set()
            self._seen_at_newest.add(return_id)
            fresh.append(row)
        if last_updated is None and rows:
            last_updated = rows[-1]["date_updated"]
        count = len(rows) if items is None else items
        self._next = self._next_token(last_updated, count, has_next_page=has_next_page)
        return fresh

    def _next_token(self, last: str | None, items: int, *, has_next_page: bool) -> PageToken | None:
        if not has_next_page or not items:
            return None
        current = self.current_value
        if last is None or (
            current.since is not None and parse_timestamp(last) == parse_timestamp(current.since)
        ):
            # The whole page shares the timestamp we asked from (or has none readable): step
            # through that group by page.
            return PageToken(current.since, current.page + 1)
        return PageToken(last, 1)

    def get_next(self, response: Any) -> PageToken | None:
        return self._next

    def continue_if_empty(self, response: Any) -> bool:
        """A page made only of rows emitted already is not the end while Swap has more."""
        return self._next is not None
