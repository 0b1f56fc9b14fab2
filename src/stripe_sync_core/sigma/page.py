"""A Sigma result page: the CSV parsed (standard library `csv`), its cursor and its high-water mark.

Every CSV value is text; an empty field is NULL. The values keep Sigma's text in `_raw_data` and are
typed by PostgreSQL as they land (`writer.py`), per the table list: timestamps are UTC.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from .query import BadCursorValue, epoch_of, normalize_timestamp, ordering
from .tables import SigmaTable


@dataclass
class Page:
    rows: list[dict[str, str | None]]
    cursor: list[str] | None
    """The order columns' values of the last row (where the next page starts); None when empty."""
    newest: int | None
    """The time column's highest value on the page (epoch seconds)."""


def parse_csv(body: bytes | str) -> list[dict[str, str | None]]:
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header = next(reader, None)
    if not header:
        return []
    width = len(header)
    rows = []
    for line, record in enumerate(reader, start=2):
        if not record:
            continue  # a blank line
        if len(record) != width:
            raise BadCursorValue(f"Sigma CSV record {line} has {len(record)} fields, the header {width}")
        rows.append({name: value if value != "" else None for name, value in zip(header, record, strict=True)})
    return rows


def read_page(table: SigmaTable, body: bytes | str, *, incremental: bool) -> Page:
    rows = parse_csv(body)
    cursor = None
    if rows and table.cursor:
        last = rows[-1]
        cursor = []
        for column, kind in ordering(table, incremental):
            value = last.get(column)
            if value is None or not value.strip():
                raise BadCursorValue(f"Sigma row of {table.table} without its cursor column {column}: {last}")
            cursor.append(normalize_timestamp(value) if kind == "timestamp" else value.strip())
    newest = None
    if rows and table.time_column:
        # Sigma writes every timestamp of a column in one fixed-width format: text order is time order.
        values = [v for v in (r.get(table.time_column) for r in rows) if v]
        if values:
            newest = epoch_of(normalize_timestamp(max(values)))
    return Page(rows, cursor, newest)
