"""Writing Stripe objects: one path for webhooks, backfill and single-object sync.

It stores a batch of objects of one type, then the children they embed (subscription items, charge
refunds, checkout line items), completing truncated nested lists when `auto_expand_lists` is set, and
records deletions by the registry's policy. A write never replaces a row observed later than itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from .config import SyncConfig
from .database import Database, UpsertRow, _dump
from .listing import list_all, split_path
from .registry import REGISTRY, NestedList, ObjectType, object_path
from .stripe_api import StripeApi


@dataclass
class StoreResult:
    written: set[str] = field(default_factory=set)
    skipped: set[str] = field(default_factory=set)
    children_written: int = 0

    @property
    def count(self) -> int:
        return len(self.written)


class ObjectStore:
    """Stores objects of any registry type into their tables."""

    def __init__(self, db: Database, config: SyncConfig, api: StripeApi | None = None, *,
                 account_header: Callable[[str], str | None] = lambda account_id: None) -> None:
        self.db = db
        self.config = config
        self.api = api
        self._account_header = account_header
        """The `Stripe-Account` header for an account: None for the key's own."""

    async def store(self, object_type: ObjectType, objects: Sequence[dict], account_id: str,
                    synced_at: datetime, *, parent_id: str | None = None,
                    parent_ids: Sequence[str | None] | None = None,
                    conn: psycopg.AsyncConnection | None = None, account_exists: bool = False) -> StoreResult:
        """Upsert a batch (one round trip for the objects, one per child table).

        `parent_ids`, parallel to `objects`, names each object's parent where they differ.
        `account_exists` skips creating a placeholder row for `account_id` (the caller knows it is there).
        """
        result = StoreResult()
        if not objects:
            return result
        parents = list(parent_ids) if parent_ids is not None else [parent_id] * len(objects)
        kept = [i for i, o in enumerate(objects) if o.get("id")]
        objects, parents = [objects[i] for i in kept], [parents[i] for i in kept]
        if self.config.auto_expand_lists and self.api is not None:
            objects = [await self._expand_nested(object_type, o, account_id) for o in objects]
        if not account_exists:
            await self.db.ensure_accounts([account_id], conn=conn)
        rows = [UpsertRow(o, account_id, synced_at, p) for o, p in zip(objects, parents, strict=True)]
        result.written = await self.db.upsert(object_type, rows, conn=conn)
        result.skipped = {o["id"] for o in objects} - result.written
        for nested in object_type.nested_lists:
            if nested.child_table:
                result.children_written += await self._store_children(
                    nested, [o for o in objects if o["id"] in result.written], account_id, synced_at, conn)
        return result

    async def store_deleted(self, object_type: ObjectType, objects: Sequence[dict], account_id: str,
                            synced_at: datetime, *, conn: psycopg.AsyncConnection | None = None) -> set[str]:
        """Record deletions: flag (keep every stored field, add `deleted: true`) or remove the row."""
        ids = [o["id"] for o in objects if o.get("id")]
        if not ids:
            return set()
        table = f"stripe.{object_type.table}"
        newer_guard = f"({table}._last_synced_at IS NULL OR {table}._last_synced_at <= %(synced)s)"
        if object_type.deletion == "remove":
            sql = f"DELETE FROM {table} WHERE id = ANY(%(ids)s) AND {newer_guard} RETURNING id"
            params: dict = {"ids": ids, "synced": synced_at}
        else:
            await self.db.ensure_accounts([account_id], conn=conn)
            typed, name = await self.db.typed_columns(conn), object_type.table
            sql = (
                f"INSERT INTO {table} (_raw_data, _account_id, _last_synced_at{typed.names(name)}) "
                f"SELECT j, %(account)s, %(synced)s{typed.values(name, 'j')} "
                "FROM (SELECT r::jsonb AS j FROM unnest(%(raw)s::text[]) AS r OFFSET 0) AS v "
                f"ON CONFLICT (id) DO UPDATE SET _raw_data = {table}._raw_data || EXCLUDED._raw_data, "
                f"_last_synced_at = EXCLUDED._last_synced_at"
                f"{typed.assignments(name, f'{table}._raw_data || EXCLUDED._raw_data')} WHERE {newer_guard} RETURNING id"
            )
            params = {"raw": [_dump({**o, "deleted": True}) for o in objects if o.get("id")],
                      "account": account_id, "synced": synced_at}
        if conn is not None:
            cursor = await conn.execute(sql, params)
            return {r[0] for r in await cursor.fetchall()}
        async with self.db.pool.connection() as connection:
            cursor = await connection.execute(sql, params)
            return {r[0] for r in await cursor.fetchall()}

    async def _expand_nested(self, object_type: ObjectType, obj: dict, account_id: str) -> dict:
        """Replace truncated embedded lists by the complete list, following every page."""
        for nested in object_type.nested_lists:
            embedded = obj.get(nested.field)
            if not isinstance(embedded, dict) or not embedded.get("has_more"):
                continue
            assert self.api is not None
            path, params = split_path(object_path(nested.path, id=obj["id"]))
            items = await list_all(self.api, path, params, account=self._account_header(account_id))
            obj = {**obj, nested.field: {**embedded, "data": items, "has_more": False}}
        return obj

    async def _store_children(self, nested: NestedList, parents: list[dict], account_id: str,
                              synced_at: datetime, conn: psycopg.AsyncConnection | None) -> int:
        """The children embedded in `parents`, in one upsert, then the retirement of removed ones."""
        child_type = REGISTRY[nested.child_table or ""]
        rows: list[UpsertRow] = []
        complete: list[tuple[dict, list[dict]]] = []
        for parent in parents:
            embedded = parent.get(nested.field)
            if not isinstance(embedded, dict):
                continue
            children = [c for c in embedded.get("data") or [] if isinstance(c, dict) and c.get("id")]
            parent_id = parent["id"] if child_type.parent_column else None
            rows.extend(UpsertRow(c, account_id, synced_at, parent_id) for c in children)
            if nested.retire_missing and not embedded.get("has_more"):
                complete.append((parent, children))
        written = len(await self.db.upsert(child_type, rows, conn=conn)) if rows else 0
        if complete:
            await self._retire_missing_children(child_type, nested, complete, account_id, synced_at, conn)
        return written

    async def _retire_missing_children(self, child_type: ObjectType, nested: NestedList,
                                       complete: list[tuple[dict, list[dict]]], account_id: str,
                                       synced_at: datetime, conn: psycopg.AsyncConnection | None) -> None:
        """With each parent's complete list in hand, children no longer in it were removed from it."""
        parent_column = nested.parent_field
        if parent_column is None:
            return
        parent_ids = [parent["id"] for parent, _ in complete]
        keep = [c["id"] for _, children in complete for c in children]
        table = f"stripe.{child_type.table}"
        # The account is compared with IS NOT DISTINCT FROM, which no index serves: with stale statistics the
        # planner ANDed the account's index with the parent column's, reading every row of the account for
        # each page of parents. The parent column's index alone finds the children.
        rows = await self._fetch(
            f'SELECT _raw_data FROM {table} WHERE "{parent_column}" = ANY(%s) AND NOT (id = ANY(%s)) '
            "AND NOT deleted AND _account_id IS NOT DISTINCT FROM %s", (parent_ids, keep, account_id), conn)
        if rows:
            gone = [r["_raw_data"] if isinstance(r["_raw_data"], dict) else json.loads(r["_raw_data"])
                    for r in rows]
            await self.store_deleted(child_type, gone, account_id, synced_at, conn=conn)

    async def _fetch(self, sql: str, params: tuple, conn: psycopg.AsyncConnection | None) -> list[dict]:
        if conn is None:
            return await self.db.fetch_all(sql, params)
        from psycopg.rows import dict_row

        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(sql, params)
        return await cursor.fetchall()

