"""The typed columns of each object table, which the engine's statements fill from `_raw_data`.

PostgreSQL used to compute them as stored generated columns, which costs it the parsing and planning
of every expression on every statement that writes the table (per table and statement, not per row:
a quarter of its CPU on a batch of mixed webhook events). Since migration 0010 the expressions are
kept in `stripe._typed_columns` and every writer puts them in its own statement, whose plan PostgreSQL
caches. Every statement that writes `_raw_data` of an object table must fill them: `Database.upsert`,
`ObjectStore.store_deleted`, the webhook batch and the careful single write do. `id` and `deleted`
(and every column of `accounts`) stay generated, right whoever writes.

The map is read from the database: a column whose expression was dropped is filled by us; on a schema
before 0010 (or a column still generated) the map leaves it to PostgreSQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import psycopg

_RAW_DATA = re.compile(r"\b_raw_data\b")

LOAD_SQL = """
SELECT t.table_name, t.column_name, t.expression
FROM stripe._typed_columns t
JOIN pg_attribute a ON a.attrelid = to_regclass(format('stripe.%I', t.table_name)) AND a.attname = t.column_name
WHERE a.attgenerated = '' AND NOT a.attisdropped
ORDER BY t.table_name, t.position
"""


@dataclass(frozen=True)
class TypedColumns:
    """Per table, the (column, expression over `_raw_data`) pairs its writers compute."""

    by_table: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.by_table)

    def names(self, table: str) -> str:
        """`, "col", ...` for an INSERT's column list (empty when PostgreSQL computes them)."""
        return "".join(f', "{name}"' for name, _ in self.by_table.get(table, ()))

    def values(self, table: str, source: str) -> str:
        """`, expr, ...` computing each column from the jsonb SQL expression `source`."""
        return "".join(f", {_over(expression, source)}" for _, expression in self.by_table.get(table, ()))

    def excluded(self, table: str) -> str:
        """`, "col" = EXCLUDED."col", ...` for ON CONFLICT DO UPDATE replacing the whole object."""
        return "".join(f', "{name}" = EXCLUDED."{name}"' for name, _ in self.by_table.get(table, ()))

    def assignments(self, table: str, source: str) -> str:
        """`, "col" = expr, ...` recomputing each column from `source` (a merged object)."""
        return "".join(f', "{name}" = {_over(expression, source)}' for name, expression in self.by_table.get(table, ()))


def _over(expression: str, source: str) -> str:
    return _RAW_DATA.sub(lambda _: f"({source})", expression)


async def load_typed_columns(conn: psycopg.AsyncConnection) -> TypedColumns:
    """The columns our statements fill, read without raising (usable inside a caller's transaction)."""
    cursor = await conn.execute("SELECT to_regclass('stripe._typed_columns') IS NOT NULL")
    row = await cursor.fetchone()
    if not row or not row[0]:
        return TypedColumns()
    cursor = await conn.execute(LOAD_SQL)
    by_table: dict[str, list[tuple[str, str]]] = {}
    for table, column, expression in await cursor.fetchall():
        by_table.setdefault(table, []).append((column, expression))
    return TypedColumns({table: tuple(columns) for table, columns in by_table.items()})
