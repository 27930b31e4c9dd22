r"""Reads a page of Swap returns so that one unreadable return costs only itself, never the page.

Python's JSON parser refuses a whole document for one bad value: a number of more than 4,300
digits, or nesting deeper than the recursion limit. Swap sends 100 returns per page, so a single
bad return would keep 99 good ones from ever being delivered, run after run. The happy path is
one ``json.loads`` of the page; only when it fails is the page cut into its returns (a scan of
the text that follows strings and brackets) and each return parsed alone, so the bad one is set
aside with the field and the problem named, never the value.

A parsed page is also checked for lone surrogates (half of a UTF-16 pair, such as a broken emoji:
``"\ud83d"`` is valid JSON but cannot be encoded as UTF-8, so writing the record would crash).
In free text (names, reasons, comments, addresses) they are repaired to U+FFFD and counted; in
ids, keys, e-mails and anything not known to be free text the return is set aside, because a
"repaired" id or e-mail would silently name something else.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import simplejson  # type: ignore[import-untyped]  # no stubs; used for loads only

#: Fields whose text is prose a person typed or a name: a lone surrogate there is repaired.
FREE_TEXT_FIELDS = frozenset(
    {
        "customer_name",
        "product_name",
        "variant_name",
        "main_reason_text",
        "sub_reason_text",
        "comments",
        "comment",
        "notes",
        "note",
        "intake_reason",
        "type_string",
        "processed_by",
        "name",
        "first_name",
        "last_name",
        "company",
        "address1",
        "address2",
        "city",
        "province",
        "country",
    }
)

#: A ``\\uD800``-``\\uDFFF`` escape: a page holding one not paired up needs its strings walked.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
SURROGATE = re.compile("[\ud800-\udfff]")
#: The tokens that structure JSON text: strings (skipped whole), brackets, colons and commas.
TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}:,]', re.DOTALL)
REPLACEMENT = "\ufffd"
OPENERS = frozenset("[{")
CLOSERS = frozenset("]}")
CLOSERS_OF_ITEM = frozenset(",]")


class PageError(ValueError):
    """The page itself (not one return on it) cannot be read: paging cannot go on.

    ``field`` names where (``pagination.total_items``, or ``(page)`` for the whole document)
    and ``problem`` what, never the value: the run's error must say what to look at in Swap's
    answer without copying a customer's data into a log.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field '{field}': {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class SetAside:
    """A return that cannot be delivered: where it went wrong and what, never the value."""

    source_key: str | None
    updated_at: str | None
    field: str
    problem: str
    fingerprint: str

    @property
    def detail(self) -> str:
        return f"field '{self.field}': {self.problem}"


@dataclass
class Page:
    """A page read: its envelope (pagination), the readable returns, those set aside."""

    body: dict[str, Any]
    rows: list[Any]
    set_aside: list[SetAside] = field(default_factory=list)
    repaired: dict[str, int] = field(default_factory=dict)
    #: Returns on the page (set aside or not), and the last readable ``date_updated`` among them,
    #: in the API's order: what keyset paging moves on from.
    items: int = 0
    last_updated: str | None = None


def read_page(content: bytes, list_key: str = "returns") -> Page:
    """Parse a page; unreadable returns are set aside and lone surrogates dealt with."""
    text, escaped = _decode(content)
    try:
        body = simplejson.loads(text)  # as requests' response.json() did: the fastest here
    except (ValueError, RecursionError):
        page = _read_return_by_return(text, list_key)
    else:
        if not isinstance(body, dict):
            raise PageError("(page)", f"expected a JSON object, got {type(body).__name__}")
        rows = body.get(list_key) or []
        page = Page(body, rows if isinstance(rows, list) else [])
        page.items = len(page.rows)
        page.last_updated = _last_updated(row.get("date_updated") for row in _dicts(page.rows))
    if escaped or _has_lone_surrogate_escape(text):
        _deal_with_surrogates(page)
    return page


def _has_lone_surrogate_escape(text: str) -> bool:
    """Whether a high-half escape lacks its low half right after it, or a low half its high.

    Pairs (an emoji written as two escapes) are common in names; a regex with a look-behind
    would cost more than parsing the page, so escapes are found first and paired here.
    """
    pending_high = -1  # where the last unpaired high half ended
    for match in SURROGATE_ESCAPE.finditer(text):
        low = match.group()[3] in "cdefCDEF"
        if low and pending_high != match.start():
            return True
        if pending_high >= 0 and not low:
            return True
        pending_high = -1 if low else match.end()
    return pending_high >= 0


def _decode(content: bytes) -> tuple[str, bool]:
    r"""UTF-8 text, and whether bytes that are not UTF-8 had to be kept as lone surrogates.

    ``surrogateescape`` keeps each undecodable byte as a lone surrogate, which the surrogate
    check then repairs in free text or sets aside elsewhere, as it does for ``\ud83d``.
    """
    try:
        return content.decode("utf-8"), False
    except UnicodeDecodeError:
        return content.decode("utf-8", "surrogateescape"), True


# -- one return at a time, when the page as a whole does not parse -----------------------------


def _read_return_by_return(text: str, list_key: str) -> Page:
    bounds = _list_bounds(text, list_key)
    if bounds is None:
        problem = f"not valid JSON, and its '{list_key}' list cannot be found"
        raise PageError("(page)", problem)
    start, end, items = bounds
    outside = text[:start] + "[]" + text[end + 1 :]
    try:
        body = json.loads(outside)
    except (ValueError, RecursionError) as exc:
        raise PageError(*_locate(outside, exc)) from None
    page = Page(body, [], items=len(items))
    times = []
    for item in items:
        try:
            row = json.loads(item)
        except (ValueError, RecursionError) as exc:
            aside = _unreadable(item, exc)
            page.set_aside.append(aside)
            times.append(aside.updated_at)
        else:
            page.rows.append(row)
            times.append(row.get("date_updated") if isinstance(row, dict) else None)
    page.last_updated = _last_updated(reversed(times))
    return page


def has_next_page(body: dict[str, Any]) -> bool:
    """The page's ``pagination.has_next_page``, which must be a boolean.

    Anything else (no block, a number, a string such as ``"false"``) leaves the tap unable to
    tell the last page from one more: guessing either way could end a sync early or page on
    for ever, so the page is refused by name instead.
    """
    pagination = body.get("pagination")
    if not isinstance(pagination, dict):
        got = "missing" if pagination is None else f"a {_json_type(pagination)}"
        raise PageError("pagination", f"expected an object, got {got}")
    value = pagination.get("has_next_page")
    if not isinstance(value, bool):
        got = "missing" if value is None else f"a {_json_type(value)}"
        raise PageError("pagination.has_next_page", f"expected true or false, got {got}")
    return value


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type: what an error may say about it, never the value."""
    for kind, name in (
        (bool, "boolean"),
        ((int, float), "number"),
        (str, "string"),
        (list, "list"),
    ):
        if isinstance(value, kind):
            return name
    return "object"


def _locate(text: str, error: BaseException) -> tuple[str, str]:
    """The dotted path of the member of an object's text the parser refused, and the problem.

    Descends through nested objects (``pagination`` → ``total_items``) as long as the failing
    member is itself an object, so the error names the field, not just its block.
    """
    path: list[str] = []
    while True:
        members = list(_members(text))
        failing = _failing_member(text, members, error)
        if failing is None:
            return _dotted(path), _value_problem(text, members, error)[1]
        key, start, end, deepest = failing
        path.append(key or "(member)")
        value = text[start:end].strip()
        if value.startswith("{"):
            text = value
        elif isinstance(error, RecursionError):
            return _dotted(path), f"nested about {deepest} levels deep"
        else:
            return _dotted(path), _value_problem(text, members, error)[1]


def _failing_member(
    text: str, members: list[tuple[str | None, int, int, int]], error: BaseException
) -> tuple[str | None, int, int, int] | None:
    """The member nested deepest when nesting failed the parse, else the first that fails alone."""
    if isinstance(error, RecursionError):
        return max(members, key=lambda member: member[3], default=None)
    for key, start, end, deepest in members:
        try:
            json.loads(text[start:end])
        except (ValueError, RecursionError):
            return key, start, end, deepest
    return None


def _dotted(path: list[str]) -> str:
    return ".".join(path) or "(page)"


def _dicts(rows: list[Any]) -> Iterator[dict[str, Any]]:
    """The rows that are objects, last first."""
    return (row for row in reversed(rows) if isinstance(row, dict))


def _last_updated(times_last_first: Iterable[Any]) -> str | None:
    """The last of these ``date_updated`` values (given last first) that is a readable timestamp."""
    for value in times_last_first:
        if isinstance(value, str) and not SURROGATE.search(value) and _is_timestamp(value):
            return value
    return None


def _is_timestamp(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _list_bounds(text: str, list_key: str) -> tuple[int, int, list[str]] | None:
    """Where the top-level ``list_key`` array opens and closes, and the text of each item."""
    depth, key, start, last = 0, None, -1, -1
    items: list[str] = []
    for match in TOKEN.finditer(text):
        piece = match.group()
        if start >= 0 and depth == 2 and piece in CLOSERS_OF_ITEM:
            items.append(text[last + 1 : match.start()])
            last = match.start()
            if piece == "]":
                return start, match.start(), [item for item in items if item.strip()]
            continue
        if piece in OPENERS:
            depth += 1
            if depth == 2 and piece == "[" and key == list_key and start < 0:
                start = last = match.start()
        elif piece in CLOSERS:
            depth -= 1
        elif piece == ",":
            if depth == 1:
                key = None
        elif depth == 1 and key is None:
            key = _string(piece)
    return None


def _members(item: str) -> Iterator[tuple[str | None, int, int, int]]:
    """Each top-level member of an object's text: key, value span and how deep the value goes."""
    depth, key, start, deepest = 0, None, 0, 0
    for match in TOKEN.finditer(item):
        piece = match.group()
        if piece in OPENERS:
            depth += 1
            deepest = max(deepest, depth - 1)
        elif piece in CLOSERS or (piece == "," and depth == 1):
            if depth == 1 and start:
                yield key, start, match.start(), deepest
                key, start, deepest = None, 0, 0
            if piece != ",":
                depth -= 1
        elif piece == ":" and depth == 1:
            start = match.end()
        elif depth == 1 and key is None and piece.startswith('"'):
            key = _string(piece)


def _unreadable(item: str, error: BaseException) -> SetAside:
    members = list(_members(item))
    values = {key: item[start:end] for key, start, end, _ in members}
    if isinstance(error, RecursionError):
        key, _, _, deepest = max(members, key=lambda member: member[3], default=(None, 0, 0, 0))
        field_name, problem = key or "(record)", f"nested about {deepest} levels deep"
    else:
        field_name, problem = _value_problem(item, members, error)
    return SetAside(
        source_key=_readable_text(values.get("return_id")),
        updated_at=_readable_text(values.get("date_updated")),
        field=field_name,
        problem=problem,
        fingerprint=hashlib.sha256(item.encode("utf-8", "surrogatepass")).hexdigest()[:32],
    )


def _value_problem(
    item: str, members: list[tuple[str | None, int, int, int]], error: BaseException
) -> tuple[str, str]:
    """Which member holds the value the parser refused, and why (a number too long, bad JSON)."""
    if "integer string conversion" in str(error):
        for key, start, end, _ in members:
            try:
                json.loads(item[start:end])
            except ValueError as exc:
                if "integer string conversion" in str(exc):
                    digits = max(len(run) for run in re.findall(r"\d+", item[start:end]))
                    return key or "(record)", f"a number of {digits} digits, out of range"
            except RecursionError:
                continue
        return "(record)", "a number out of range"
    return "(record)", f"not valid JSON ({type(error).__name__})"


def _string(piece: str) -> str | None:
    if not piece.startswith('"'):
        return None
    try:
        value = json.loads(piece)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _readable_text(text: str | None) -> str | None:
    """A member's text as a string value, if it is one that can be written as UTF-8."""
    value = _string(text.strip()) if text is not None else None
    if value is None or SURROGATE.search(value):
        return None
    return value


# -- lone surrogates ---------------------------------------------------------------------------


def _deal_with_surrogates(page: Page) -> None:
    kept = []
    for row in page.rows:
        repaired, bad = _repair_free_text(row)
        if bad is not None:
            page.set_aside.append(_lone_surrogate(row, bad))
            continue
        for name in repaired:
            page.repaired[name] = page.repaired.get(name, 0) + 1
        kept.append(row)
    page.rows = kept


def _repair_free_text(row: Any) -> tuple[list[str], str | None]:
    """Repair lone surrogates in free text in place; the first other field holding one, if any.

    Returns the names of the fields repaired and the path of the first string (or key) that is
    not free text. Iterative: a parsed page may nest close to the recursion limit.
    """
    repaired: list[str] = []
    stack: list[tuple[str, Any]] = [("", row)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            entries: Iterable[tuple[Any, Any]] = value.items()
        elif isinstance(value, list):
            entries = enumerate(value)
        else:
            continue
        for key, item in list(entries):
            if isinstance(key, str) and SURROGATE.search(key):
                return repaired, f"{path}.(a key)" if path else "(a key)"
            where = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)
            if isinstance(item, str):
                if SURROGATE.search(item):
                    if _leaf(where) not in FREE_TEXT_FIELDS:
                        return repaired, where
                    value[key] = SURROGATE.sub(REPLACEMENT, item)
                    repaired.append(_leaf(where))
            elif isinstance(item, (dict, list)):
                stack.append((where, item))
    return repaired, None


def _leaf(path: str) -> str:
    """The field name a path ends in (``return_shipments[0].items[1].comments`` → comments)."""
    return re.sub(r"(\[\d+\])+$", "", path).rsplit(".", 1)[-1]


def _lone_surrogate(row: Any, path: str) -> SetAside:
    return_id = row.get("return_id") if isinstance(row, dict) else None
    updated = row.get("date_updated") if isinstance(row, dict) else None
    return SetAside(
        source_key=return_id
        if isinstance(return_id, str) and not SURROGATE.search(return_id)
        else None,
        updated_at=updated if isinstance(updated, str) and not SURROGATE.search(updated) else None,
        field=path,
        problem="holds a lone surrogate (half of a UTF-16 pair), which cannot be written as UTF-8",
        fingerprint=fingerprint(row),
    )


def fingerprint(row: Any) -> str:
    """A digest of a parsed row, the same on every run: an id for a row without a usable key."""
    try:
        text = json.dumps(row, sort_keys=True)  # ASCII escapes: encodable whatever it holds
    except (TypeError, ValueError, RecursionError):
        text = repr(type(row))
    return hashlib.sha256(text.encode()).hexdigest()[:32]
