"""Keyset queries over a Sigma table, and the cursor they resume from.

One query per page: `SELECT * FROM <table> [WHERE ...] ORDER BY <cursor> LIMIT <page size>`. The
predicate is the lexicographic "row after the cursor" expansion, `(c1 > v1) OR (c1 = v1 AND c2 > v2) ...`
(Trino's row comparison spelled out). A full pass orders by the table's cursor (its unique key); an
incremental pass starts at the time column's high-water mark less a window and orders by
(time column, cursor), so rows added or changed since (their time column moves) are read again,
whatever their key.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from ..errors import InvalidInput
from .tables import SigmaTable

_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")
_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


class BadCursorValue(InvalidInput, ValueError):
    """A cursor column's value Sigma sent cannot be compared (empty, or not of its type)."""


def normalize_timestamp(raw: str) -> str:
    """Sigma's timestamp text (`2025-04-01 12:34:56.789`, zone-less means UTC) as `YYYY-MM-DD HH:MM:SS.mmm` UTC."""
    try:
        value = datetime.fromisoformat(raw.strip().replace(" UTC", "+00:00"))
    except ValueError:
        raise BadCursorValue(f"not a Sigma timestamp: {raw!r}") from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime(_TIMESTAMP_FORMAT)[:23]


def epoch_of(timestamp: str) -> int:
    """Whole seconds of a normalized timestamp (the chunk's high-water mark)."""
    return int(datetime.strptime(timestamp, _TIMESTAMP_FORMAT).replace(tzinfo=UTC).timestamp())


def timestamp_of(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime(_TIMESTAMP_FORMAT)[:23]


def literal(value: str, kind: str) -> str:
    """A Trino literal of a cursor value: timestamp '...', a bare number, or a quoted string."""
    if kind == "timestamp":
        return f"timestamp '{normalize_timestamp(value)}'"
    if kind == "number":
        value = value.strip()
        if not _NUMBER.match(value):
            raise BadCursorValue(f"not a number: {value!r}")
        return value
    return "'" + value.replace("'", "''") + "'"


def ordering(table: SigmaTable, incremental: bool) -> list[tuple[str, str]]:
    """(column, cursor type) the pages are ordered and resumed by."""
    columns = list(zip(table.cursor, table.cursor_types, strict=True))
    if incremental and table.time_column:
        columns = [(table.time_column, "timestamp")] + [c for c in columns if c[0] != table.time_column]
    return columns


def page_query(table: SigmaTable, *, after: list[str] | None, since: int | None, page_size: int) -> str:
    """The query of the page after `after` (None: the first page); `since` (epoch seconds) starts an
    incremental pass at that time. A table without a cursor is read whole, in one query."""
    sql = f"SELECT * FROM {table.table}"
    if not table.cursor:
        return sql
    order = ordering(table, since is not None)
    conditions = []
    if since is not None and table.time_column:
        conditions.append(f"{table.time_column} >= timestamp '{timestamp_of(since)}'")
    if after is not None:
        if len(after) != len(order):
            raise BadCursorValue(f"cursor {after!r} does not fit {table.table}'s order ({len(order)} columns)")
        terms = []
        for i, (column, kind) in enumerate(order):
            equal = [f"{c} = {literal(v, k)}" for (c, k), v in zip(order[:i], after[:i], strict=True)]
            terms.append("(" + " AND ".join([*equal, f"{column} > {literal(after[i], kind)}"]) + ")")
        conditions.append("(" + " OR ".join(terms) + ")")
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    return sql + " ORDER BY " + ", ".join(c for c, _ in order) + f" ASC LIMIT {page_size}"


def encode_cursor(values: list[str]) -> str:
    return json.dumps(values, separators=(",", ":"))


def decode_cursor(text: str | None) -> list[str] | None:
    if text is None:
        return None
    values = json.loads(text)
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise BadCursorValue(f"not a Sigma cursor: {text!r}")
    return values
