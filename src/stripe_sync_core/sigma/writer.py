"""Landing a Sigma page: one statement per page, typed by PostgreSQL from the rows' JSON.

The page goes as one JSON array; each typed column is cast from the row's text (timestamps read as
UTC), `_raw_data` keeps the row as Sigma sent it. Upserted on the table's key, never replacing a row
observed later (`_last_synced_at`).
"""

from __future__ import annotations

import functools
from datetime import datetime

import orjson
import psycopg

from .tables import SigmaColumn, SigmaTable

NULL_KEY_PART = "\u2205"
"""How a null key value is written in a surrogate `_key` (an empty string is null in Sigma's CSV)."""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _text(name: str) -> str:
    return "r->>'" + name.replace("'", "''") + "'"


def _cast(column: SigmaColumn) -> str:
    value = _text(column.name)
    if column.pg_type == "text":
        return value
    if column.pg_type == "timestamptz":
        return f"(({value})::timestamp AT TIME ZONE 'UTC')"
    if column.pg_type == "date":
        return f"(({value})::timestamp)::date"
    return f"({value})::{column.pg_type}"


@functools.cache
def upsert_sql(table: SigmaTable) -> str:
    names = ["_account_id"]
    values = ["%(account)s"]
    if table.surrogate:
        names.append("_key")
        parts = ", ".join(f"coalesce({_text(c)}, '{NULL_KEY_PART}')" for c in table.key)
        values.append(f"concat_ws(E'\\x1f', {parts})")
        conflict = ["_account_id", "_key"]
    else:
        conflict = ["_account_id", *(table.column(c).column for c in table.key)]
    for column in table.columns:
        names.append(column.column)
        values.append(_cast(column))
    names += ["_raw_data", "_last_synced_at"]
    values += ["r", "%(at)s"]
    updated = [n for n in names if n not in conflict]
    # A surrogate key may repeat within a page (Stripe's own key does not): the last row wins.
    source = "jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS e(r, n)"
    select = f"SELECT {', '.join(values)} FROM {source}"
    if table.surrogate:
        select = (f"SELECT DISTINCT ON ({values[1]}) {', '.join(values)} FROM {source} "
                  f"ORDER BY {values[1]}, n DESC")
    return (f"INSERT INTO sigma.{_ident(table.pg_table)} AS t ({', '.join(map(_ident, names))}) {select} "
            f"ON CONFLICT ({', '.join(map(_ident, conflict))}) DO UPDATE SET "
            + ", ".join(f"{_ident(n)} = excluded.{_ident(n)}" for n in updated)
            + " WHERE t._last_synced_at <= excluded._last_synced_at")


async def send_page(conn: psycopg.AsyncConnection, table: SigmaTable, rows: list[dict], account: str,
                    observed_at: datetime, *, whole: bool = False) -> None:
    """Upsert the page's rows; `whole` (the page is the entire table) also removes the account's rows
    the table no longer holds, in the same transaction."""
    if rows:
        await conn.execute(upsert_sql(table), {"account": account, "at": observed_at,  # type: ignore[arg-type]
                                               "rows": orjson.dumps(rows).decode()})
    if whole:
        await conn.execute(f"DELETE FROM sigma.{_ident(table.pg_table)} "  # type: ignore[arg-type]
                           "WHERE _account_id = %s AND _last_synced_at < %s", (account, observed_at))
