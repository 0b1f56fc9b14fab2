"""Sigma's reporting tables as the emulator stores them: the table list (``data/sigma_tables.json``),
SQLite DDL, and values written the way Sigma writes them (timestamps ``YYYY-MM-DD HH:MM:SS.mmm``
in UTC, booleans ``true``/``false``, doubles as Trino prints them, NULL as an empty field)."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

# Sigma type -> SQLite column type. Timestamps are text in Sigma's own format, so they sort and
# compare as time and come back out unchanged; booleans are 0/1 (SQLite's TRUE/FALSE).
_SQLITE_TYPES = {"varchar": "TEXT", "bigint": "INTEGER", "integer": "INTEGER", "double": "REAL",
                 "boolean": "INTEGER", "timestamp": "TEXT", "date": "TEXT"}


@dataclass(frozen=True)
class SigmaTable:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, Sigma type) in Stripe's schema order
    primary_key: tuple[str, ...]
    column_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "column_names", tuple(c for c, _ in self.columns))

    def type_of(self, column: str) -> str | None:
        for c, t in self.columns:
            if c == column:
                return t
        return None

    def ddl(self) -> list[str]:
        cols = ", ".join(f'"{c}" {_SQLITE_TYPES.get(t, "TEXT")}' for c, t in self.columns)

        def index(suffix: str, columns: tuple[str, ...]) -> str:
            names = ", ".join(f'"{c}"' for c in columns)
            return f'CREATE INDEX "{self.name}__{suffix}" ON "{self.name}" ({names})'

        # Indexes for keyset pages: Stripe's key (not unique: invoice_line_items is keyed by
        # invoice_id alone), ``id`` where the key is something else, and (batch_timestamp, id or key)
        # for incremental reads ordered by landing time.
        out = [f'CREATE TABLE "{self.name}" ({cols})', index("key", self.primary_key)]
        names = {c for c, _ in self.columns}
        unique = ("id",) if "id" in names else self.primary_key
        if unique != self.primary_key:
            out.append(index("id", unique))
        if "batch_timestamp" in names:
            out.append(index("landed", ("batch_timestamp", *unique)))
        return out


@cache
def tables() -> dict[str, SigmaTable]:
    """The 187 tables, by name."""
    raw = json.loads(resources.files("stripe_sync_emulator").joinpath("data/sigma_tables.json").read_text())
    return {name: SigmaTable(name, tuple((c, t) for c, t in spec["columns"]), tuple(spec["primary_key"]))
            for name, spec in raw["tables"].items()}


# ---- values ----------------------------------------------------------------------------------

@cache
def _day_text(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def timestamp_text(epoch: float) -> str:
    """``2025-04-01 12:34:56.789`` (UTC, milliseconds), as Sigma prints a timestamp."""
    ms = int(round(epoch * 1000))
    secs, rem = divmod(ms, 1000)
    day, sod = divmod(secs, 86400)
    hh, r = divmod(sod, 3600)
    mm, ss = divmod(r, 60)
    return f"{_day_text(day)} {hh:02d}:{mm:02d}:{ss:02d}.{rem:03d}"


_TS_LITERAL = re.compile(
    r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"\s*(Z|UTC|[+-]\d{2}:?\d{2})?\s*$", re.IGNORECASE)


def parse_timestamp_literal(text: str) -> str:
    """A Trino ``timestamp '...'`` / ``date '...'`` literal in the stored form; ValueError if invalid."""
    m = _TS_LITERAL.match(text)
    if not m:
        raise ValueError(f"Value cannot be cast to timestamp: {text}")
    y, mo, d, hh, mi, ss, frac, zone = m.groups()
    base = dt.datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0), tzinfo=dt.UTC)
    if zone and zone.upper() not in ("Z", "UTC"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        base -= sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    ms = int((frac or "0").ljust(3, "0")[:3])
    return base.strftime("%Y-%m-%d %H:%M:%S") + f".{ms:03d}"


def trino_double(x: float) -> str:
    """A double as Trino (Java) prints it: ``100.0``, ``0.25``, ``1.0E-4``, ``1.2345678E7``."""
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0.0" if str(x).startswith("-") else "0.0"
    if 1e-3 <= abs(x) < 1e7:
        s = repr(float(x))
        return s if ("." in s or "e" in s) else s + ".0"
    sign, digits, exp = Decimal(repr(float(x))).as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    e10 = len(digits) - 1 + int(exp)
    return f"{'-' if sign else ''}{ds[0]}.{ds[1:] or '0'}E{e10}"


def to_sql(value: Any, sigma_type: str) -> Any:
    """A value from a Stripe object as stored in a column of ``sigma_type`` (None if it does not fit)."""
    if value is None:
        return None
    if sigma_type == "timestamp":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return timestamp_text(value)
    if sigma_type in ("bigint", "integer"):
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if sigma_type == "boolean":
        return int(value) if isinstance(value, bool) else None
    if sigma_type == "double":
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    # varchar (and anything else): text; lists and objects as compact JSON.
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def csv_text(value: Any, sigma_type: str | None) -> str:
    """A stored value as it appears in a result file (NULL: an empty field)."""
    if value is None:
        return ""
    if sigma_type == "boolean" and isinstance(value, int):
        return "true" if value else "false"
    if isinstance(value, float):
        return trino_double(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
