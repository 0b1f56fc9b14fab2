"""The Sigma tables the engine knows: the frozen list the migration created them from.

The list lives with the migration scripts (`alembic/sigma/tables_<revision>.json`, shipped in the wheel
as `stripe_sync_core/_alembic/sigma/`); `CURRENT_REVISION` names the one the schema has. Reading it
imports nothing heavy (no Alembic).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInput

CURRENT_REVISION = "0006"
SIGMA = "sigma"
"""`backfill sigma`: every Sigma table."""
SIGMA_PREFIX = "sigma."
"""A Sigma table's object name in runs and chunks: `sigma.<table>` (its PostgreSQL table too)."""


class UnknownSigmaTable(InvalidInput, KeyError):
    """A `sigma.<name>` that is not one of Stripe's Sigma tables."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class SigmaColumn:
    name: str
    """Sigma's name (the CSV header)."""
    sigma_type: str
    pg_type: str
    column: str
    """The PostgreSQL column (Sigma's name unless the 63-byte limit renamed it)."""


@dataclass(frozen=True)
class SigmaTable:
    table: str
    """Sigma's name (the one queries use)."""
    pg_table: str
    """The table in schema `sigma` (Sigma's name unless longer than PostgreSQL's 63 bytes)."""
    columns: tuple[SigmaColumn, ...]
    key: tuple[str, ...]
    surrogate: bool
    """True: the key is `_key` (the key columns joined), Stripe's flagged key being untrustworthy."""
    key_reason: str | None
    cursor: tuple[str, ...]
    """Keyset columns (unique, never null), in order; empty: the table is read in one query."""
    cursor_types: tuple[str, ...]
    time_column: str | None
    """Incremental runs re-read from this column's high-water mark less a window; None: refreshed whole."""

    @property
    def object(self) -> str:
        return SIGMA_PREFIX + self.table

    def column(self, name: str) -> SigmaColumn:
        return next(c for c in self.columns if c.name == name)


def _list_path() -> Path:
    here = Path(__file__).resolve().parents[1]
    name = Path("sigma") / f"tables_{CURRENT_REVISION}.json"
    for candidate in (here / "_alembic" / name, here.parents[1] / "alembic" / name):  # wheel, checkout
        if candidate.is_file():
            return candidate
    raise ImportError(f"stripe_sync_core: the Sigma table list {name} is missing next to {here}")


@functools.cache
def _tables() -> dict[str, SigmaTable]:
    frozen = json.loads(_list_path().read_text())
    tables: dict[str, SigmaTable] = {}
    for t in frozen["tables"]:
        columns = tuple(SigmaColumn(c[0], c[1], c[2], c[3] if len(c) > 3 else c[0]) for c in t["columns"])
        tables[t["table"]] = SigmaTable(
            table=t["table"], pg_table=t["pg_table"], columns=columns, key=tuple(t["key"]["columns"]),
            surrogate=t["key"]["kind"] == "surrogate", key_reason=t["key"]["reason"], cursor=tuple(t["cursor"]),
            cursor_types=tuple(t["cursor_types"]), time_column=t["time_column"])
    return tables


def sigma_objects() -> list[str]:
    """Every Sigma table's object name (`sigma.charges`, ...), in table order."""
    return [t.object for t in _tables().values()]


def is_sigma_object(name: str) -> bool:
    return name == SIGMA or name.startswith(SIGMA_PREFIX)


def sigma_table(name: str) -> SigmaTable:
    """The table of `sigma.<table>` (or the bare table name)."""
    table = name[len(SIGMA_PREFIX):] if name.startswith(SIGMA_PREFIX) else name
    found = _tables().get(table)
    if found is None:
        raise UnknownSigmaTable(f"unknown Sigma table {name!r}: `backfill sigma` lists every one "
                                f"({len(_tables())} tables, e.g. sigma.charges, sigma.invoice_line_items)")
    return found
