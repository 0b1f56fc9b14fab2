"""The typed columns of each object table, which the engine's statements fill from `_raw_data`.

PostgreSQL used to compute them as stored generated columns, which costs it the parsing and planning
of every expression on every statement that writes the table (per table and statement, not per row:
a quarter of its CPU on a batch of mixed webhook events). Since migration 0010 the expressions are
kept in the catalog and every writer puts them in its own statement, whose plan PostgreSQL
caches; each column's comment keeps its expression (schema, not data: no truncation loses it). Every
statement that writes `_raw_data` of an object table must fill them: `Database.upsert`,
`ObjectStore.store_deleted`, the webhook batch and the careful single write do. `id` and `deleted`
(and every column of `accounts`) stay generated, right whoever writes.

The map is read from the catalog: a plain column with such a comment is filled by us; on a schema
before 0010 (or a column still generated) the map leaves it to PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg

_RAW_DATA = re.compile(r"\b_raw_data\b")

PREFIX = "typed from _raw_data: "
"""How a typed column's comment starts (migration 0010); the expression follows."""

LOAD_SQL = f"""
SELECT c.relname, a.attname, substr(d.description, {len(PREFIX) + 1})
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_description d ON d.objoid = a.attrelid AND d.classoid = 'pg_class'::regclass AND d.objsubid = a.attnum
WHERE c.relnamespace = 'stripe'::regnamespace AND c.relkind = 'r' AND a.attgenerated = '' AND NOT a.attisdropped
  AND starts_with(d.description, '{PREFIX}')
ORDER BY c.relname, a.attnum
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
    """The columns our statements fill (a catalog query that cannot fail: usable in a caller's transaction)."""
    cursor = await conn.execute(LOAD_SQL)
    return typed_columns_from(await cursor.fetchall())


def typed_columns_from(rows: Iterable[tuple[str, str, str]]) -> TypedColumns:
    """`TypedColumns` from the rows of `LOAD_SQL` (table, column, expression), in their order."""
    by_table: dict[str, list[tuple[str, str]]] = {}
    for table, column, expression in rows:
        by_table.setdefault(table, []).append((column, expression))
    return TypedColumns({table: tuple(columns) for table, columns in by_table.items()})
