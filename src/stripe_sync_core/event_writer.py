"""Batched writes of webhook events: events arriving together are written by one statement per bundle of
kinds (one upsert per table, one per child table and one event-log insert), the children they embed
included, the statements of a batch in one transaction and one round trip.

Each caller hands over one event and awaits its outcome. A collector takes whatever is pending when
the event loop reaches it (optionally after `window` seconds), and while it writes, the next collects;
its callers' futures resolve only after the commit, so a 2xx never precedes durability. The rules,
enforced here and in the SQL:

* A payload write lands only over a row observed strictly earlier (`_last_synced_at < created`). A row
  of the same second is a *tie*: the batch leaves it untouched and unlogged and the caller resolves it
  through the API (webhooks.py), so two events of one second never lose the later state.
* An event already in `stripe._events` is a duplicate and writes nothing.
* Two events for one object are never in flight together in this process (a batch never touches a row
  twice), and rows are written in id order so that concurrent batches cannot deadlock each other.
* A batch that fails for a reason other than the connection is retried one event at a time, so one
  poisonous payload cannot block the events that happened to share its batch.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import psycopg
from psycopg import errors as pg_errors

from .database import DatabaseUnavailable, UpsertRow
from .registry import REGISTRY, ObjectType
from .typed_columns import TypedColumns

if TYPE_CHECKING:
    from .database import Database
    from .store import ObjectStore

Key = tuple[str, str]
"""(table, object id): the unit of mutual exclusion."""

TIE = "tie"

BUNDLE_SIZE = 8
"""Groups written by one statement (see `EventWriter._write_once`): enough for the kinds a busy account
sends most, few enough that a batch of one event does not start up many tables' writes."""

_RETRIED_ERRORS = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)


@dataclass(eq=False, slots=True)
class PendingWrite:
    """One event's write: the object it carries goes to its table, the event to the log."""

    event_id: str
    event_type: str
    account_id: str
    object_type: ObjectType
    object_id: str
    created: datetime
    document: str
    """JSON of an event whose `data.object` is the object to store (often the delivery's own body)."""
    obj: dict
    deleting: bool = False
    future: asyncio.Future[str] | None = field(default=None, repr=False)

    @property
    def key(self) -> Key:
        return (self.object_type.table, self.object_id)


Group = tuple[str, bool]
"""(table, deleting): the events of a batch that share one write."""


def batch_sql(groups: tuple[Group, ...], typed: TypedColumns | None = None) -> str:
    """One statement for the events of `groups`: skip duplicates, write what is newer in each table, log.

    Its one parameter (`$1`: run it on a raw cursor, which psycopg does not rescan for placeholders) is a
    JSON array with one element per event (see `batch_document`), whose `g` indexes `groups`; the
    delivery bodies reach PostgreSQL without being re-encoded. Returns one row per event with its
    outcome (`stored`, `deleted`, `stale`, `tie`, `duplicate`). A tie is not logged, so that a failure
    while resolving it leaves the event free to be redelivered. `typed` names the typed
    columns the statement fills (typed_columns.py).
    """
    typed = typed or TypedColumns()
    writes, written, prior = [], [], []
    for g, (table_name, deleting) in enumerate(groups):
        table = f"stripe.{table_name}"
        # The typed columns read `f.j`: the object itself, or (OFFSET 0) the merged object computed once.
        source = f"(SELECT f.obj AS j, f.acct, f.ts, f.oid FROM fresh f WHERE f.g = {g}) f"
        if deleting:  # the registry's "flag" policy: keep every stored field and add `deleted: true`
            value = "f.obj || '{\"deleted\": true}'::jsonb"
            source = f"(SELECT {value} AS j, f.acct, f.ts, f.oid FROM fresh f WHERE f.g = {g} OFFSET 0) f"
            update = ("_raw_data = t._raw_data || EXCLUDED._raw_data, _last_synced_at = EXCLUDED._last_synced_at"
                      + typed.assignments(table_name, "t._raw_data || EXCLUDED._raw_data"))
        else:
            value = "f.obj"
            update = ("_raw_data = EXCLUDED._raw_data, _account_id = EXCLUDED._account_id, "
                      "_last_synced_at = EXCLUDED._last_synced_at" + typed.excluded(table_name))
        writes.append(f"""p{g} AS (
    SELECT f.oid AS id, p.ts AS _last_synced_at FROM fresh f
    CROSS JOIN LATERAL (SELECT t._last_synced_at AS ts FROM {table} t WHERE t.id = f.oid OFFSET 0) p
    WHERE f.g = {g}
), w{g} AS (
    INSERT INTO {table} AS t (_raw_data, _account_id, _last_synced_at{typed.names(table_name)})
    SELECT f.j, f.acct, f.ts{typed.values(table_name, "f.j")} FROM {source} ORDER BY f.oid
    ON CONFLICT (id) DO UPDATE SET {update}
    WHERE t._last_synced_at IS NULL OR t._last_synced_at < EXCLUDED._last_synced_at
    RETURNING t.id
)""")
        if not deleting:
            writes.extend(children_sql(g, REGISTRY[table_name], typed))
        written.append(f"SELECT {g} AS g, id FROM w{g}")
        prior.append(f"SELECT {g} AS g, id, _last_synced_at FROM p{g}")
    # `OFFSET 0` keeps the lookups per event on the primary keys: the planner cannot tell how few events a
    # batch holds and would otherwise hash-join whole tables (the event log grows to millions of rows).
    return f"""
WITH input AS (
    SELECT (x->>'g')::int AS g, (x->>'x')::boolean AS dl, x->>'e' AS eid, x->>'t' AS etype,
           x->'d'->'data'->'object' AS obj, x->>'a' AS acct, to_timestamp((x->>'c')::bigint) AS ts, x->>'o' AS oid
    FROM jsonb_array_elements($1::jsonb) AS x
), fresh AS (
    SELECT i.* FROM input i
    WHERE NOT EXISTS (SELECT 1 FROM stripe._events e WHERE e.id = i.eid OFFSET 0)
), {", ".join(writes)},
written AS ({" UNION ALL ".join(written)}),
prior AS ({" UNION ALL ".join(prior)}),
decided AS (
    SELECT f.eid, f.etype, f.acct, f.oid, f.ts,
           CASE WHEN w.id IS NOT NULL THEN CASE WHEN f.dl THEN 'deleted' ELSE 'stored' END
                WHEN p._last_synced_at >= f.ts + interval '1 second' THEN 'stale'
                ELSE '{TIE}' END AS outcome
    FROM fresh f LEFT JOIN written w ON w.g = f.g AND w.id = f.oid LEFT JOIN prior p ON p.g = f.g AND p.id = f.oid
), logged AS (
    INSERT INTO stripe._events (id, type, account_id, object_id, event_created, outcome)
    SELECT eid, etype, acct, oid, ts, outcome FROM decided WHERE outcome <> '{TIE}' ORDER BY eid
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)
SELECT i.eid, COALESCE(d.outcome, 'duplicate') FROM input i LEFT JOIN decided d ON d.eid = i.eid
"""


def children_sql(g: int, entry: ObjectType, typed: TypedColumns | None = None) -> list[str]:
    """CTEs storing the children embedded in the parents group `g` wrote (as `store_children` does for a
    payload): each child over an older row (strictly older when the child has events of its own), and,
    from a complete list, the retirement of children stored earlier that are no longer in it.

    Only parents this statement wrote (`w{g}`) count; the retirement and the upsert touch disjoint rows.
    """
    typed = typed or TypedColumns()
    ctes = []
    for n, nested in enumerate(entry.nested_lists):
        child = REGISTRY.get(nested.child_table or "")
        if child is None:
            continue
        table, field_name = f"stripe.{child.table}", nested.field.replace("'", "''")
        listed = f"f.obj->'{field_name}'"
        items = f"CASE WHEN jsonb_typeof({listed}->'data') = 'array' THEN {listed}->'data' ELSE '[]'::jsonb END"
        parents = f"fresh f JOIN w{g} ON w{g}.id = f.oid"
        column = f', "{child.parent_column}"' if child.parent_column else ""
        update_parent = (f', "{child.parent_column}" = COALESCE(EXCLUDED."{child.parent_column}", '
                         f't."{child.parent_column}")' if child.parent_column else "")
        newer = "<" if child.event_types else "<="
        ctes.append(f"""c{g}_{n} AS (
    INSERT INTO {table} AS t (_raw_data, _account_id, _last_synced_at{column}{typed.names(child.table)})
    SELECT DISTINCT ON (k.value->>'id') k.value, f.acct, f.ts{", f.oid" if column else ""}{typed.values(child.table, "k.value")}
    FROM {parents} CROSS JOIN LATERAL jsonb_array_elements({items}) AS k
    WHERE f.g = {g} AND jsonb_typeof(k.value) = 'object' AND k.value->>'id' <> ''
    ORDER BY k.value->>'id', f.ts DESC
    ON CONFLICT (id) DO UPDATE SET _raw_data = EXCLUDED._raw_data, _account_id = EXCLUDED._account_id,
        _last_synced_at = EXCLUDED._last_synced_at{update_parent}{typed.excluded(child.table)}
    WHERE t._last_synced_at IS NULL OR t._last_synced_at {newer} EXCLUDED._last_synced_at
    RETURNING t.id
)""")
        if not nested.retire_missing or child.event_types or nested.parent_field is None:
            continue
        # IS NOT DISTINCT FROM: no index serves it, so the parent column's index alone finds the children
        # (with stale statistics the planner ANDed in the account's index: every row of the account per parent).
        gone = (f"""f.g = {g} AND jsonb_typeof({listed}) = 'object'
      AND NOT COALESCE({listed}->'has_more' = 'true'::jsonb, false)
      AND t."{nested.parent_field}" = f.oid AND t._account_id IS NOT DISTINCT FROM f.acct AND NOT t.deleted
      AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements({items}) AS k WHERE k.value->>'id' = t.id)
      AND (t._last_synced_at IS NULL OR t._last_synced_at <= f.ts)""")
        if child.deletion == "remove":
            ctes.append(f"r{g}_{n} AS (\n    DELETE FROM {table} AS t USING {parents}\n    WHERE {gone}\n    RETURNING t.id\n)")
        else:
            ctes.append(f"""r{g}_{n} AS (
    UPDATE {table} AS t SET _raw_data = t._raw_data || '{{"deleted": true}}'::jsonb, _last_synced_at = f.ts
    FROM {parents}
    WHERE {gone}
    RETURNING t.id
)""")
    return ctes


def batch_document(items: list[PendingWrite], groups: dict[Group, int]) -> str:
    """The JSON array `batch_sql` reads: each delivery's body is spliced in as it came, unparsed."""
    dumps = json.dumps
    return "[" + ",".join(
        f'{{"g":{groups[(i.object_type.table, i.deleting)]},"x":{"true" if i.deleting else "false"},'
        f'"e":{dumps(i.event_id)},"t":{dumps(i.event_type)},"a":{dumps(i.account_id)},'
        f'"o":{dumps(i.object_id)},"c":{int(i.created.timestamp())},"d":{i.document}}}'
        for i in items) + "]"


def is_connection_error(error: BaseException) -> bool:
    """The database could not be reached or the connection broke: the caller should answer 503."""
    return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError, DatabaseUnavailable))


class EventWriter:
    """Micro-batches event writes for one engine. All methods run in the engine's event loop."""

    def __init__(self, db: Database, *,
                 window: float = 0.0, max_batch: int = 200, max_writers: int = 4,
                 db_timeout: float = 5.0, log: logging.Logger | None = None) -> None:
        self._db = db
        self.window = window
        self.max_batch = max_batch
        self.max_writers = max_writers
        self.db_timeout = db_timeout
        self.log = log or logging.getLogger("stripe_sync_core.webhooks")
        self._pending: list[PendingWrite] = []
        self._busy: set[Key] = set()
        self._released = asyncio.Condition()
        self._collecting = False
        self._writers = 0
        self._tasks: set[asyncio.Task] = set()
        self._known_accounts: set[str] = set()
        self._sql: dict[tuple[Group, ...], str] = {}
        self._bundles: list[tuple[Group, ...]] = []
        """The groups seen so far, `BUNDLE_SIZE` to a statement, in the order first seen."""
        self._bundle_of: dict[Group, int] = {}
        self._typed: TypedColumns | None = None
        self.batches = 0
        self.rows = 0

    @property
    def statement_shapes(self) -> int:
        """Statements this writer keeps, one per bundle of kinds and one per kind written alone: what the
        connections prepare."""
        return len(self._sql)

    # -- callers -----------------------------------------------------------------------------------

    async def write(self, item: PendingWrite) -> str:
        """Queue one event's write and return its outcome once committed (or raise why it was not)."""
        item.future = asyncio.get_running_loop().create_future()
        self._pending.append(item)
        self._kick()
        return await item.future

    @asynccontextmanager
    async def exclusive(self, key: Key) -> AsyncIterator[None]:
        """Hold `key` alone in this process (no batch and no other holder touches that object)."""
        async with self._released:
            await self._released.wait_for(lambda: key not in self._busy)
            self._busy.add(key)
        try:
            yield
        finally:
            await self._release([key])

    def connection(self):
        """A pooled connection, failing after `db_timeout` seconds when the database is unreachable."""
        return self._db.pool.connection(timeout=self.db_timeout)

    async def ensure_accounts(self, conn: psycopg.AsyncConnection, account_ids: set[str]) -> set[str]:
        """Create account rows seen for the first time; returns the ids to remember after commit."""
        new = account_ids - self._known_accounts
        if new:
            await self._db.ensure_accounts(new, conn=conn)
        return new

    def remember_accounts(self, account_ids: set[str]) -> None:
        self._known_accounts |= account_ids

    def forget_accounts(self) -> None:
        self._known_accounts.clear()

    async def close(self) -> None:
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)

    # -- collecting --------------------------------------------------------------------------------

    def _kick(self) -> None:
        if self._collecting or self._writers >= self.max_writers:
            return
        if not any(item.key not in self._busy for item in self._pending):
            return
        self._collecting = True
        self._writers += 1
        task = asyncio.create_task(self._run_batch())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[PendingWrite]:
        batch: list[PendingWrite] = []
        keys: set[Key] = set()
        rest: list[PendingWrite] = []
        for item in self._pending:
            key = item.key
            if len(batch) < self.max_batch and key not in self._busy and key not in keys:
                batch.append(item)
                keys.add(key)
            else:
                rest.append(item)
        self._pending = rest
        self._busy |= keys
        return batch

    async def _run_batch(self) -> None:
        batch: list[PendingWrite] = []
        try:
            if self.window:
                await asyncio.sleep(self.window)
            batch = self._take()
        finally:
            self._collecting = False
        self._kick()  # the next batch collects while this one writes
        await self._write_taken(batch)

    async def _write_taken(self, batch: list[PendingWrite]) -> None:
        """Write a batch taken from the queue on a writer slot already counted, then free both."""
        try:
            if batch:
                await self._write_batch(batch)
        finally:
            self._writers -= 1
            await self._release([item.key for item in batch])

    async def _release(self, keys: list[Key]) -> None:
        async with self._released:
            self._busy.difference_update(keys)
            self._released.notify_all()
        self._kick()

    # -- writing -----------------------------------------------------------------------------------

    def _bundle(self, group: Group) -> int:
        """The bundle `group` is written in; a group seen for the first time joins the last bundle with room
        (whose statement then takes a new shape, once)."""
        number = self._bundle_of.get(group)
        if number is None:
            if not self._bundles or len(self._bundles[-1]) >= BUNDLE_SIZE:
                self._bundles.append(())
            number = len(self._bundles) - 1
            self._sql.pop(self._bundles[number], None)
            self._bundles[number] = tuple(sorted((*self._bundles[number], group)))
            self._bundle_of[group] = number
        return number

    async def _write_batch(self, batch: list[PendingWrite]) -> None:
        try:
            outcomes = await self._write_with_retry(batch)
        except Exception as error:
            if len(batch) > 1 and not is_connection_error(error):
                self.log.warning("a batch of %d events failed (%s); writing them one by one", len(batch),
                                 type(error).__name__)
                for item in batch:
                    await self._write_batch([item])
                return
            for item in batch:
                if item.future is not None and not item.future.done():
                    item.future.set_exception(error)
            return
        for item in batch:
            if item.future is not None and not item.future.done():
                item.future.set_result(outcomes[item.event_id])

    async def _write_with_retry(self, batch: list[PendingWrite]) -> dict[str, str]:
        for attempt in range(3):
            try:
                return await self._write_once(batch)
            except _RETRIED_ERRORS:
                if attempt == 2:
                    raise
            except pg_errors.ForeignKeyViolation:
                # An account row vanished (account data deleted) while we remembered it.
                if attempt == 2 or not self._known_accounts:
                    raise
                self.forget_accounts()
        raise AssertionError("unreachable")

    async def _write_once(self, batch: list[PendingWrite]) -> dict[str, str]:
        """One statement per bundle of groups the batch touches, in one implicit transaction and one round
        trip.

        The groups this writer has seen fall into bundles of `BUNDLE_SIZE` in the order they were first
        seen, and a bundle's statement writes all of its groups, those without events too (a batch with
        events of one group of a bundle only writes that group alone). Statements therefore keep a fixed
        shape whatever combination of kinds a batch holds, and each is prepared once per connection: one
        statement per combination (up to 2^7 shapes for seven kinds) outgrew the connections' prepared
        statements, and a shuffled stream spent most of PostgreSQL's time planning. A statement per group
        instead multiplies the statements of a batch, each with its own start-up, duplicate check and
        event-log insert.
        """
        typed = await self._db.typed_columns()
        if typed is not self._typed:  # the schema's typed columns were learned since: new statements
            self._sql.clear()
            self._typed = typed
        by_bundle: dict[int, list[PendingWrite]] = {}
        for item in sorted(batch, key=lambda i: i.object_id):
            by_bundle.setdefault(self._bundle((item.object_type.table, item.deleting)), []).append(item)
        statements = []
        for number in sorted(by_bundle):
            items = by_bundle[number]
            present = {(item.object_type.table, item.deleting) for item in items}
            # One group alone (every batch when events come one at a time) takes a statement of its own:
            # starting up the writes of a whole bundle's tables for it cost twice its own writes.
            groups = tuple(present) if len(present) == 1 else self._bundles[number]
            sql = self._sql.get(groups)
            if sql is None:
                sql = self._sql[groups] = batch_sql(groups, typed)
            document = batch_document(items, {group: g for g, group in enumerate(groups)})
            statements.append((sql, (document,)))
        accounts = {item.account_id for item in batch}
        outcomes: dict[str, str] = {}
        async with self.connection() as conn:
            new_accounts: set[str] = set()
            if len(statements) == 1 and accounts <= self._known_accounts:
                cursor = psycopg.AsyncRawCursor(conn)
                await cursor.execute(*statements[0])
                outcomes.update(await cursor.fetchall())
            else:
                # One pipeline, one Sync: its statements are one implicit transaction (the connection is in
                # autocommit) and one round trip; a failure in any rolls all of them back.
                async with conn.pipeline():
                    new_accounts = await self.ensure_accounts(conn, accounts)
                    cursors = [psycopg.AsyncRawCursor(conn) for _ in statements]
                    for cursor, (sql, params) in zip(cursors, statements, strict=True):
                        await cursor.execute(sql, params)
                for cursor in cursors:
                    outcomes.update(await cursor.fetchall())
            self.remember_accounts(new_accounts)
        self.batches += 1
        self.rows += len(batch)
        return outcomes


async def store_children(store: ObjectStore, entry: ObjectType, parents: list[dict], account_id: str,
                         synced_at: datetime, conn: psycopg.AsyncConnection, *, fetched: bool) -> None:
    """Store the children embedded in parents just written.

    Children with events of their own (a charge's refunds) follow those events: an embedded copy in a
    parent's *payload* may be older than a row of the same second, so it only replaces older rows. A
    parent fetched from the API is at least as new as anything of its second, and so are its children.
    """
    for nested in entry.nested_lists:
        child = REGISTRY.get(nested.child_table or "")
        if child is None:
            continue
        if child.event_types and not fetched:
            rows = [UpsertRow(c, account_id, synced_at, parent["id"] if child.parent_column else None)
                    for parent in parents if isinstance(parent.get(nested.field), dict)
                    for c in parent[nested.field].get("data") or [] if isinstance(c, dict) and c.get("id")]
            if rows:
                await store.db.upsert(child, rows, conn=conn, strict=True)
        else:
            await store._store_children(nested, parents, account_id, synced_at, conn)
