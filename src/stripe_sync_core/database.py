"""PostgreSQL access: one async pool and one batched upsert path for every object table."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from .errors import Unavailable
from .masking import mask_database_url
from .registry import ObjectType
from .typed_columns import TypedColumns, load_typed_columns

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class DatabaseUnavailable(Unavailable, RuntimeError):
    """The database cannot be reached; nothing was written."""


@dataclass(frozen=True)
class UpsertRow:
    """One object to store: the whole Stripe object and when its state was observed."""

    obj: dict
    account_id: str
    synced_at: datetime
    parent_id: str | None = None


def _dump(obj: dict) -> str:
    try:
        text = orjson.dumps(obj).decode()  # compact and UTF-8, like json.dumps(separators, ensure_ascii=False)
    except (TypeError, orjson.JSONEncodeError):  # what orjson refuses (an integer over 64 bits...)
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return clean_json(text)


def parse_json(text: str | bytes) -> Any:
    """Parse JSON with orjson; the standard parser takes what orjson refuses (integers over 64 bits, NaN)
    or raises its `ValueError` saying why the text is not JSON."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


# A JSON NUL escape: one preceded by an even number of backslashes (`\\u0000` is text, not a NUL).
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def clean_json(text: str) -> str:
    """Drop NUL characters from a JSON text: PostgreSQL's jsonb rejects them, Stripe free text can hold them."""
    return _NUL_ESCAPE.sub(r"\1", text) if "\\u0000" in text else text


def upsert_sql(object_type: ObjectType, strict: bool = False, typed: TypedColumns | None = None) -> str:
    """One statement for a whole page: unnest parallel arrays, never replace a newer row.

    `strict` keeps a row of the same time too (for snapshots that may be older than it). `typed` names
    the typed columns the statement fills (typed_columns.py).
    """
    typed = typed or TypedColumns()
    table = f"stripe.{object_type.table}"
    parent = object_type.parent_column
    insert_columns = ("_raw_data, _account_id, _last_synced_at" + (f', "{parent}"' if parent else "")
                      + typed.names(object_type.table))
    select_columns = "j, a, s" + (", p" if parent else "") + typed.values(object_type.table, "j")
    # Binary parameters (%b): psycopg escapes a text array of large documents in Python, ~30x slower.
    arrays = "%(raw)b::text[], %(account)b::text[], %(synced)b::timestamptz[]" + (
        ", %(parent)b::text[]" if parent else "")
    aliases = "r, a, s" + (", p" if parent else "")
    update_parent = f', "{parent}" = COALESCE(EXCLUDED."{parent}", {table}."{parent}")' if parent else ""
    return (
        f"INSERT INTO {table} ({insert_columns}) "
        # OFFSET 0: each document is parsed once, not once per typed column computed from it.
        f"SELECT {select_columns} FROM (SELECT r::jsonb AS j, {aliases.partition(', ')[2]} "
        f"FROM unnest({arrays}) AS u({aliases}) OFFSET 0) AS v "
        "ON CONFLICT (id) DO UPDATE SET _raw_data = EXCLUDED._raw_data, "
        f"_account_id = EXCLUDED._account_id, _last_synced_at = EXCLUDED._last_synced_at{update_parent}"
        f"{typed.excluded(object_type.table)} "
        f"WHERE {table}._last_synced_at IS NULL OR {table}._last_synced_at {'<' if strict else '<='} "
        "EXCLUDED._last_synced_at "
        "RETURNING id"
    )


def _newest_per_id(rows: Iterable[UpsertRow]) -> list[UpsertRow]:
    # ON CONFLICT cannot touch one row twice in a statement: keep the newest state of each id.
    # Sorted by id: two transactions writing overlapping rows (a refunds chunk, and a charges chunk
    # with the refunds its charges embed) then lock them in the same order instead of deadlocking.
    newest: dict[str, UpsertRow] = {}
    for row in rows:
        object_id = row.obj.get("id")
        if not object_id:
            raise ValueError(f"cannot store a {row.obj.get('object', 'object')} without an id")
        kept = newest.get(object_id)
        if kept is None or row.synced_at >= kept.synced_at:
            newest[object_id] = row
    return [newest[object_id] for object_id in sorted(newest)]


CONNECTION_OPTIONS: dict[str, Any] = {"prepare_threshold": None}
"""Options of every connection the engine opens. No server-side prepared statements to begin with: behind
a pooler in transaction mode (PgBouncer, Supabase's pooler on port 6543) a statement prepared on one server
connection is missing on the next (`prepared statement "_pg3_0" does not exist`), or already there
(`DuplicatePreparedStatement`). The pool's connections prepare once they are known to be direct
(`prepare_if_direct`)."""

PREPARE_THRESHOLD: int | None = 5
"""Executions of one statement on one connection before psycopg prepares it (psycopg's default)."""

PREPARED_MAX = 16
"""Statements a connection keeps prepared, the least recently used deallocated first (psycopg keeps 100).
A webhook batch runs one statement per bundle of kinds it touches (or per kind alone), and the plan of one
writing seven tables holds about 4 MB of the server process's memory (one table: about 0.5 MB)."""


async def prepare_if_direct(conn: psycopg.AsyncConnection) -> None:
    """Let a connection prepare its repeated statements when it reaches PostgreSQL itself, not a pooler.

    Parsing and planning a statement anew costs PostgreSQL more than running it when the statement is
    large: a batch of mixed webhook events writes seven tables and fills some 200 typed columns, and
    without a prepared plan two thirds of PostgreSQL's CPU for it went to parsing and planning. A direct
    connection's key data (`BackendKeyData`, the cancel key) names its server process; a pooler hands
    its clients keys of its own (cancel requests reach the pooler, which forwards them to whichever
    server connection the client holds then), so the process that answers `pg_backend_pid()` is
    another. Anything but a match keeps the pooler-safe default.
    """
    cursor = await conn.execute("SELECT pg_backend_pid()")
    row = await cursor.fetchone()
    if row is not None and row[0] == conn.info.backend_pid:
        conn.prepare_threshold = PREPARE_THRESHOLD
        conn.prepared_max = PREPARED_MAX


class Database:
    """The engine's connection pool and the statements every part shares."""

    def __init__(self, url: str, *, max_size: int = 10, prepare: bool = True) -> None:
        """`prepare=False`: no connection ever prepares, even one that looks direct (a pooler that passes
        its clients a server's own cancel key would be taken for PostgreSQL itself)."""
        self.url = url
        self.pool = AsyncConnectionPool(url, min_size=1, max_size=max_size, open=False,
                                        kwargs={"autocommit": True, **CONNECTION_OPTIONS},
                                        configure=prepare_if_direct if prepare else None)
        self._typed: TypedColumns | None = None
        self._upserts: dict[tuple[str, bool], str] = {}
        """Upsert statements by (table, strict), built for the typed columns `_upserts_typed`."""
        self._upserts_typed: TypedColumns | None = None

    @property
    def display_url(self) -> str:
        return mask_database_url(self.url)

    async def open(self, timeout: float = 10.0) -> None:
        try:
            await self.pool.open(wait=True, timeout=timeout)
        except Exception as error:
            await self.pool.close()
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL at {self.display_url}: {error}"
            ) from None
        try:
            await self.typed_columns()
        except psycopg.Error:  # not migrated yet: learned on the first write
            pass

    async def typed_columns(self, conn: psycopg.AsyncConnection | None = None) -> TypedColumns:
        """The typed columns our statements fill; read once (again while the schema predates them)."""
        if self._typed:
            return self._typed
        if conn is not None:
            typed = await load_typed_columns(conn)
        else:
            async with self.pool.connection() as connection:
                typed = await load_typed_columns(connection)
        if typed:
            self._typed = typed
        return typed

    async def close(self) -> None:
        await self.pool.close()

    async def upsert(self, object_type: ObjectType, rows: Sequence[UpsertRow],
                     conn: psycopg.AsyncConnection | None = None, *, strict: bool = False) -> set[str]:
        """Store a batch of objects in one round trip; returns the ids actually written.

        An id missing from the result was skipped because the stored row is newer.
        """
        if not rows:
            return set()
        batch = _newest_per_id(rows)
        params: dict[str, list] = {
            "raw": [_dump(row.obj) for row in batch],
            "account": [row.account_id for row in batch],
            "synced": [row.synced_at for row in batch],
        }
        if object_type.parent_column:
            params["parent"] = [row.parent_id for row in batch]
        sql = self._upsert_statement(object_type, strict, await self.typed_columns(conn))
        if conn is not None:
            cursor = await conn.execute(sql, params)
            return {r[0] for r in await cursor.fetchall()}
        async with self.pool.connection() as connection:
            cursor = await connection.execute(sql, params)
            return {r[0] for r in await cursor.fetchall()}

    def _upsert_statement(self, object_type: ObjectType, strict: bool, typed: TypedColumns) -> str:
        """`upsert_sql`, built once per table rather than for every page (its typed columns' expressions are
        rewritten one by one)."""
        if typed is not self._upserts_typed:
            self._upserts, self._upserts_typed = {}, typed
        key = (object_type.table, strict)
        sql = self._upserts.get(key)
        if sql is None:
            sql = self._upserts[key] = upsert_sql(object_type, strict, typed)
        return sql

    async def ensure_accounts(self, account_ids: Iterable[str],
                              conn: psycopg.AsyncConnection | None = None) -> None:
        """Create a placeholder row for accounts seen for the first time (objects reference them)."""
        ids = sorted(set(account_ids))
        if not ids:
            return
        sql = (
            "INSERT INTO stripe.accounts (_raw_data, _account_id, _last_synced_at) "
            "SELECT jsonb_build_object('id', a, 'object', 'account'), a, %s FROM unnest(%s::text[]) AS a "
            "ON CONFLICT (id) DO NOTHING"
        )
        if conn is not None:
            await conn.execute(sql, (EPOCH, ids))
            return
        async with self.pool.connection() as connection:
            await connection.execute(sql, (EPOCH, ids))

    async def fetch_all(self, sql: str, params: Sequence | dict | None = None) -> list[dict]:
        async with self.pool.connection() as connection:
            cursor = connection.cursor(row_factory=dict_row)
            await cursor.execute(sql, params)
            return await cursor.fetchall()

    async def fetch_one(self, sql: str, params: Sequence | dict | None = None) -> dict | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def execute(self, sql: str, params: Sequence | dict | None = None) -> int:
        async with self.pool.connection() as connection:
            cursor = await connection.execute(sql, params)
            return cursor.rowcount
