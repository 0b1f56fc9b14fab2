"""The backfill's bookkeeping in PostgreSQL: runs (`_sync_runs`) and their chunks (`_sync_obj_runs`).

PostgreSQL is the only coordinator between workers, in one process or many:
- a chunk is claimed with `FOR UPDATE SKIP LOCKED`, so two workers never take the same one;
- a claim stays valid while its worker is alive: the worker holds an advisory lock named by its
  `worker_key` in a transaction it keeps open on a connection of its own (released by the server the
  moment that connection dies, kill -9 included, and never outliving it: a connection pooler in
  transaction mode, which hands a server connection to another client between transactions, keeps
  this one pinned instead) and refreshes `heartbeat_at` (for a worker that hangs or a host that vanishes);
- a page's objects and the chunk's new cursor are written in one transaction, and only by the
  worker that holds the claim, so a resumed chunk never skips or repeats a page.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from .database import CONNECTION_OPTIONS, Database
from .errors import Refused
from .results import OpenRun

EVENTS_CHUNK = "_events"
"""The `object` of the chunk that applies /v1/events since the previous run (incremental runs)."""

WORKER_LOCK_CLASS = 0x5359_4E43  # "SYNC": first key of every worker's advisory lock

CLAIM_SETTLE_SECONDS = 10.0
"""How long a cancelled worker waits for its in-flight claim (one short statement) to settle."""


async def settle(task: asyncio.Future, timeout: float) -> Any:
    """The result of `task`, awaited through further cancellations (a clean-up must finish), or None when
    it fails or is still running after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done() and loop.time() < deadline:
        try:
            await asyncio.wait({task}, timeout=deadline - loop.time())
        except asyncio.CancelledError:
            continue
    if not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()


_WORKER_DEAD = (
    "(c.heartbeat_at IS NULL OR c.heartbeat_at < now() - make_interval(secs => %(lease)s) "
    "OR NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    f"AND l.classid = {WORKER_LOCK_CLASS} AND l.objid = c.worker_key::oid AND l.objsubid = 2))"
)


@dataclass
class Run:
    id: int
    account_id: str
    trigger: str
    objects: list[str]
    params: dict[str, Any]
    started_at: datetime
    closed_at: datetime | None
    events_cursor: int | None

    @classmethod
    def from_row(cls, row: dict) -> Run:
        return cls(row["id"], row["account_id"], row["trigger"], list(row["objects"]), row["params"] or {},
                   row["started_at"], row["closed_at"], row["events_cursor"])


@dataclass
class Chunk:
    """A claimed chunk; the claim holder keeps its counters and writes them back with each page."""

    id: int
    run_id: int
    object: str
    created_gte: int | None
    created_lte: int | None
    page_cursor: str | None
    processed: int
    children: dict[str, int]
    max_created: int | None
    estimated: int | None

    @classmethod
    def from_row(cls, row: dict) -> Chunk:
        return cls(row["id"], row["run_id"], row["object"], row["created_gte"], row["created_lte"],
                   row["page_cursor"], row["processed_count"], dict(row["children_processed"] or {}),
                   row["max_created"], row["estimated_count"])


@dataclass(frozen=True)
class PlannedChunk:
    object: str
    created_gte: int | None = None
    created_lte: int | None = None
    page_cursor: str | None = None
    status: str = "pending"
    estimated: int | None = None
    note: str = ""
    """Why the chunk is what it is, for a preview (children riding on it, split when dense, ...)."""


@dataclass
class ObjectTotals:
    """One object's chunks of a run, summed."""

    chunks: int = 0
    complete: int = 0
    errors: int = 0
    pending: int = 0
    running: int = 0
    processed: int = 0
    estimated: int = 0
    children: dict[str, int] = field(default_factory=dict)
    error_messages: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Messages of chunks that completed with one (a Sigma table skipped, and why)."""
    started_at: datetime | None = None
    completed_at: datetime | None = None
    max_created: int | None = None


class ClaimLost(Refused, RuntimeError):
    """Another worker took over this chunk (this one was presumed dead): stop working on it."""


class RunHeld(Refused, RuntimeError):
    """A run to abandon is being worked on by a live worker; nothing changed (stop it, or force)."""

    def __init__(self, message: str, runs: list[OpenRun]) -> None:
        super().__init__(message)
        self.runs = runs


ABANDONED = "abandoned by the operator"
"""The error message of an abandoned run, and the start of its chunks' (the chunks nobody will fetch)."""

_OPEN_RUNS = f"""
    SELECT r.id, r.account_id, r.trigger, r.objects, r.started_at,
           count(c.id) FILTER (WHERE c.status = 'complete') AS done,
           count(c.id) FILTER (WHERE c.status IN ('pending', 'running')) AS left_,
           count(c.id) FILTER (WHERE c.status = 'error') AS failed,
           COALESCE(array_agg(DISTINCT COALESCE(c.worker_id, 'worker ' || c.worker_key))
                    FILTER (WHERE c.status = 'running' AND NOT {_WORKER_DEAD}), '{{}}') AS workers
    FROM stripe._sync_runs r LEFT JOIN stripe._sync_obj_runs c ON c.run_id = r.id
    WHERE r.account_id = %(account)s AND r.closed_at IS NULL
    GROUP BY r.id ORDER BY r.id
"""


def _open_run(row: dict) -> OpenRun:
    return OpenRun(run_id=row["id"], account_id=row["account_id"], trigger=row["trigger"],
                   objects=tuple(row["objects"] or ()), started_at=row["started_at"], chunks_done=row["done"],
                   chunks_left=row["left_"], chunks_failed=row["failed"], workers=tuple(sorted(row["workers"])))


class RunLedger:
    """Statements over `_sync_runs` / `_sync_obj_runs`; `lease_seconds` is how long a silent worker keeps its claims."""

    def __init__(self, db: Database, lease_seconds: float) -> None:
        self.db = db
        self.lease_seconds = lease_seconds

    # -- runs --------------------------------------------------------------------------------------

    async def open_run(self, account_id: str, trigger: str, objects: list[str], params: dict,
                       events_cursor: int | None, chunks: list[PlannedChunk]) -> Run | None:
        """Create a run and its chunks in one transaction; None when the account already has an open run."""
        async with self.db.pool.connection() as conn, conn.transaction():
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                "INSERT INTO stripe._sync_runs (account_id, trigger, objects, params, events_cursor) "
                "VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (account_id, trigger) WHERE closed_at IS NULL DO NOTHING RETURNING *",
                (account_id, trigger, objects, Jsonb(params), events_cursor))
            row = await cursor.fetchone()
            if row is None:
                return None
            await self._insert_chunks(conn, row["id"], chunks)
            return Run.from_row(row)

    async def find_open_run(self, account_id: str, trigger: str) -> Run | None:
        row = await self.db.fetch_one(
            "SELECT * FROM stripe._sync_runs WHERE account_id = %s AND trigger = %s AND closed_at IS NULL",
            (account_id, trigger))
        return Run.from_row(row) if row else None

    async def get_run(self, run_id: int) -> Run:
        row = await self.db.fetch_one("SELECT * FROM stripe._sync_runs WHERE id = %s", (run_id,))
        if row is None:
            raise LookupError(f"no sync run {run_id}")
        return Run.from_row(row)

    async def base_run(self, account_id: str, trigger: str, objects: list[str],
                       retention_days: int) -> Run | None:
        """The newest complete full or incremental run covering `objects`, if recent enough for /v1/events."""
        row = await self.db.fetch_one(
            "SELECT * FROM stripe._sync_runs r WHERE account_id = %(account)s AND trigger = %(trigger)s "
            "AND closed_at IS NOT NULL AND error_message IS NULL "
            "AND params->>'mode' IN ('full', 'incremental') AND objects @> %(objects)s::text[] "
            "AND started_at > now() - make_interval(days => %(days)s) "
            "AND NOT EXISTS (SELECT 1 FROM stripe._sync_obj_runs c WHERE c.run_id = r.id "
            "                AND c.status <> 'complete') "
            "ORDER BY id DESC LIMIT 1",
            {"account": account_id, "trigger": trigger, "objects": objects, "days": retention_days})
        return Run.from_row(row) if row else None

    async def live_claims(self, run_id: int) -> int:
        row = await self.db.fetch_one(
            f"SELECT count(*) AS n FROM stripe._sync_obj_runs c WHERE c.run_id = %(run)s "
            f"AND c.status = 'running' AND NOT {_WORKER_DEAD}",
            {"run": run_id, "lease": self.lease_seconds})
        return row["n"] if row else 0

    async def open_runs(self, account_id: str) -> list[OpenRun]:
        """The account's runs not closed yet (any trigger), oldest first, with who holds them now."""
        rows = await self.db.fetch_all(_OPEN_RUNS, {"account": account_id, "lease": self.lease_seconds})
        return [_open_run(row) for row in rows]

    async def abandon_open_runs(self, account_id: str, *, force: bool = False) -> list[OpenRun]:
        """Close every open run of the account as abandoned, in one transaction; returns them as they were.

        Their pending and running chunks become `error` ("abandoned ..."): no worker claims them again,
        and a worker still on one loses its claim at its next page (`ClaimLost`) and stops. Refused
        (`RunHeld`, nothing changed) while a live worker holds a chunk, unless `force`.
        """
        async with self.db.pool.connection() as conn, conn.transaction():
            cursor = conn.cursor(row_factory=dict_row)
            # Lock the runs first: no run opens, closes or is abandoned twice while we decide.
            await cursor.execute("SELECT id FROM stripe._sync_runs WHERE account_id = %s AND closed_at IS NULL "
                                 "ORDER BY id FOR UPDATE", (account_id,))
            if not await cursor.fetchall():
                return []
            await cursor.execute(_OPEN_RUNS, {"account": account_id, "lease": self.lease_seconds})
            runs = [_open_run(row) for row in await cursor.fetchall()]
            held = [run for run in runs if run.held]
            if held and not force:
                described = "; ".join(f"run {run.run_id} by {', '.join(run.workers)}" for run in held)
                raise RunHeld(f"refused: {len(held)} run(s) of {account_id} are being worked on by a live "
                              f"worker ({described}): stop or cancel that backfill (the run becomes interrupted), "
                              "or abandon with force (the worker stops at its next page)", held)
            ids = [run.run_id for run in runs]
            await cursor.execute(
                "UPDATE stripe._sync_obj_runs SET status = 'error', completed_at = now(), heartbeat_at = NULL, "
                "error_message = %(message)s || ' (run ' || run_id || ' closed)' "
                "WHERE run_id = ANY(%(ids)s) AND status IN ('pending', 'running')",
                {"ids": ids, "message": ABANDONED})
            await cursor.executemany(
                "UPDATE stripe._sync_runs SET closed_at = now(), error_message = %s WHERE id = %s",
                [(f"{ABANDONED}: {run.chunks_left} chunk(s) left unfetched", run.run_id) for run in runs])
            return runs

    async def supersede(self, run_id: int, reason: str) -> None:
        await self.db.execute(
            "UPDATE stripe._sync_runs SET closed_at = now(), error_message = %s WHERE id = %s AND closed_at IS NULL",
            (reason, run_id))

    async def close_run(self, run: Run, params_update: dict, high_water_mark: int | None,
                        error_message: str | None) -> bool:
        """Close the run once no chunk is pending or running; False when work remains (or it is closed)."""
        count = await self.db.execute(
            "UPDATE stripe._sync_runs r SET closed_at = now(), params = params || %(params)s, "
            "high_water_mark = %(hwm)s, error_message = %(error)s "
            "WHERE id = %(run)s AND closed_at IS NULL AND NOT EXISTS ("
            "  SELECT 1 FROM stripe._sync_obj_runs c WHERE c.run_id = r.id AND c.status IN ('pending', 'running'))",
            {"run": run.id, "params": Jsonb(params_update), "hwm": high_water_mark, "error": error_message})
        return count == 1

    # -- chunks ------------------------------------------------------------------------------------

    async def _insert_chunks(self, conn: psycopg.AsyncConnection, run_id: int,
                             chunks: list[PlannedChunk]) -> None:
        if not chunks:
            return
        await conn.execute(
            "INSERT INTO stripe._sync_obj_runs (run_id, object, created_gte, created_lte, page_cursor, "
            "status, estimated_count, completed_at) "
            "SELECT %s, o, g, l, p, s, e, CASE WHEN s = 'complete' THEN now() END FROM unnest("
            "%s::text[], %s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::bigint[]) "
            "WITH ORDINALITY AS u(o, g, l, p, s, e, n) ORDER BY n",
            (run_id, [c.object for c in chunks], [c.created_gte for c in chunks],
             [c.created_lte for c in chunks], [c.page_cursor for c in chunks],
             [c.status for c in chunks], [c.estimated for c in chunks]),
        )

    async def claim(self, run_id: int, worker_key: int, worker_id: str,
                    objects: list[str] | None = None) -> Chunk | None:
        """Take the next pending chunk, or one whose worker is gone: the events chunk first, then the
        object with the fewest chunks running (Stripe limits each endpoint: spread the work across them).

        A cancellation (Ctrl-C) that arrives while the claim is in flight waits for it and gives back what
        it took: cut off, its UPDATE could still commit after the worker had released its chunks, leaving
        one 'running' under a worker that has gone (resumable, but not the clean stop it should be)."""
        claiming = asyncio.ensure_future(self._claim(run_id, worker_key, worker_id, objects))
        try:
            return await asyncio.shield(claiming)
        except asyncio.CancelledError:
            chunk = await settle(claiming, CLAIM_SETTLE_SECONDS)
            if chunk is not None:
                await settle(asyncio.ensure_future(self.release(chunk, worker_key)), CLAIM_SETTLE_SECONDS)
            raise

    async def _claim(self, run_id: int, worker_key: int, worker_id: str,
                     objects: list[str] | None) -> Chunk | None:
        row = await self.db.fetch_one(
            f"""
            WITH busy AS (
                SELECT object, count(*) AS n FROM stripe._sync_obj_runs
                WHERE run_id = %(run)s AND status = 'running' GROUP BY object
            ), next AS (
                SELECT c.id FROM stripe._sync_obj_runs c LEFT JOIN busy b ON b.object = c.object
                WHERE c.run_id = %(run)s
                  AND (c.status = 'pending' OR (c.status = 'running' AND {_WORKER_DEAD}))
                  AND (%(objects)s::text[] IS NULL OR c.object = ANY(%(objects)s::text[]))
                ORDER BY (c.object = '{EVENTS_CHUNK}') DESC, COALESCE(b.n, 0), c.id
                LIMIT 1 FOR UPDATE OF c SKIP LOCKED
            )
            UPDATE stripe._sync_obj_runs c SET status = 'running', worker_id = %(worker)s,
                worker_key = %(key)s, heartbeat_at = now(), started_at = COALESCE(c.started_at, now()),
                attempts = c.attempts + 1, error_message = NULL
            FROM next WHERE c.id = next.id
            RETURNING c.*
            """,
            {"run": run_id, "objects": objects, "worker": worker_id, "key": worker_key,
             "lease": self.lease_seconds})
        return Chunk.from_row(row) if row else None

    async def remaining(self, run_id: int, objects: list[str] | None = None) -> int:
        """Chunks of the run (of `objects`, by default all) still pending or running, by anyone."""
        row = await self.db.fetch_one(
            "SELECT count(*) AS n FROM stripe._sync_obj_runs WHERE run_id = %s "
            "AND status IN ('pending', 'running') AND (%s::text[] IS NULL OR object = ANY(%s::text[]))",
            (run_id, objects, objects))
        return row["n"] if row else 0

    async def advance(self, conn: psycopg.AsyncConnection, chunk: Chunk, worker_key: int, *,
                      done: bool, flush: bool = True) -> None:
        """Write the chunk's cursor and counters; first statement of a page's transaction (it locks
        the chunk row). Raises ClaimLost when the claim is no longer this worker's.

        `flush=False` lets the commit return before its WAL reaches the disk: a server crash may then
        lose the last pages, but with their cursor (same transaction), so they are fetched again.
        """
        if not flush:
            await conn.execute("SET LOCAL synchronous_commit = off")
        self.check_advanced(await self.send_advance(conn, chunk, worker_key, done=done), chunk)

    async def send_advance(self, conn: psycopg.AsyncConnection, chunk: Chunk, worker_key: int, *,
                           done: bool) -> psycopg.AsyncCursor:
        """The statement of `advance`, unchecked: in pipeline mode its row count is known only once a
        later result (or a sync) has come back; `check_advanced` it before the transaction commits."""
        return await conn.execute(
            "UPDATE stripe._sync_obj_runs SET page_cursor = %(cursor)s, processed_count = %(processed)s, "
            "children_processed = %(children)s, max_created = %(max_created)s, created_gte = %(gte)s, "
            "estimated_count = %(estimated)s, heartbeat_at = now(), "
            "status = CASE WHEN %(done)s THEN 'complete' ELSE status END, "
            "completed_at = CASE WHEN %(done)s THEN now() END "
            "WHERE id = %(id)s AND worker_key = %(key)s AND status = 'running'",
            {"cursor": chunk.page_cursor, "processed": chunk.processed, "children": Jsonb(chunk.children),
             "max_created": chunk.max_created, "gte": chunk.created_gte, "estimated": chunk.estimated,
             "done": done, "id": chunk.id, "key": worker_key})

    @staticmethod
    def check_advanced(cursor: psycopg.AsyncCursor, chunk: Chunk) -> None:
        if cursor.rowcount != 1:
            raise ClaimLost(f"chunk {chunk.id} was taken over by another worker")

    async def add_chunks(self, conn: psycopg.AsyncConnection, run_id: int, chunks: list[PlannedChunk]) -> None:
        await self._insert_chunks(conn, run_id, chunks)

    async def fail(self, chunk: Chunk, worker_key: int, message: str) -> None:
        await self.db.execute(
            "UPDATE stripe._sync_obj_runs SET status = 'error', error_message = %s, completed_at = now() "
            "WHERE id = %s AND worker_key = %s AND status = 'running'", (message, chunk.id, worker_key))

    async def skip(self, chunk: Chunk, worker_key: int, reason: str) -> None:
        """Complete a chunk without its objects, saying why (a Sigma table the account cannot read)."""
        await self.db.execute(
            "UPDATE stripe._sync_obj_runs SET status = 'complete', error_message = %s, completed_at = now(), "
            "heartbeat_at = NULL WHERE id = %s AND worker_key = %s AND status = 'running'",
            (reason, chunk.id, worker_key))

    async def release(self, chunk: Chunk, worker_key: int) -> None:
        """Give a chunk back (pending, cursor kept) for this or another worker to resume."""
        await self.db.execute(
            "UPDATE stripe._sync_obj_runs SET status = 'pending', worker_id = NULL, worker_key = NULL, "
            "heartbeat_at = NULL WHERE id = %s AND worker_key = %s AND status = 'running'",
            (chunk.id, worker_key))

    async def release_all(self, conn: psycopg.AsyncConnection, worker_key: int) -> None:
        """Give back every chunk this worker still holds (a claim whose answer a cancellation cut off)."""
        await conn.execute(
            "UPDATE stripe._sync_obj_runs SET status = 'pending', worker_id = NULL, worker_key = NULL, "
            "heartbeat_at = NULL WHERE worker_key = %s AND status = 'running'", (worker_key,))

    async def heartbeat(self, conn: psycopg.AsyncConnection, worker_key: int) -> None:
        await conn.execute("UPDATE stripe._sync_obj_runs SET heartbeat_at = now() "
                           "WHERE worker_key = %s AND status = 'running'", (worker_key,))

    async def work_left(self, run_id: int) -> dict[str, float]:
        """Objects still expected per chunk object (pending and running chunks); infinite while a chunk
        of it has not seen its first page (nothing is known yet)."""
        rows = await self.db.fetch_all(
            "SELECT object, bool_or(estimated_count IS NULL) AS unknown, "
            "COALESCE(sum(GREATEST(estimated_count - processed_count, 0)), 0) AS n "
            "FROM stripe._sync_obj_runs WHERE run_id = %s AND status IN ('pending', 'running') GROUP BY object",
            (run_id,))
        return {row["object"]: math.inf if row["unknown"] else float(row["n"]) for row in rows}

    async def estimate(self, run_id: int, object_name: str) -> int:
        """Objects of one type the run expects: each chunk's estimate, or what it stored if more."""
        row = await self.db.fetch_one(
            "SELECT COALESCE(sum(GREATEST(COALESCE(estimated_count, 0), processed_count)), 0) AS n "
            "FROM stripe._sync_obj_runs WHERE run_id = %s AND object = %s", (run_id, object_name))
        return int(row["n"]) if row else 0

    async def totals(self, run_id: int) -> dict[str, ObjectTotals]:
        """Per chunk object (`customers`, `_events`...), in plan order."""
        rows = await self.db.fetch_all(
            "SELECT object, status, processed_count, children_processed, estimated_count, error_message, "
            "started_at, completed_at, max_created FROM stripe._sync_obj_runs WHERE run_id = %s ORDER BY id",
            (run_id,))
        totals: dict[str, ObjectTotals] = {}
        for row in rows:
            t = totals.setdefault(row["object"], ObjectTotals())
            t.chunks += 1
            status = row["status"]
            t.complete += status == "complete"
            t.errors += status == "error"
            t.pending += status == "pending"
            t.running += status == "running"
            t.processed += row["processed_count"]
            t.estimated += max(row["estimated_count"] or 0, row["processed_count"])
            for name, count in (row["children_processed"] or {}).items():
                t.children[name] = t.children.get(name, 0) + int(count)
            if row["error_message"]:
                (t.error_messages if status == "error" else t.notes).append(row["error_message"])
            if row["started_at"] and (t.started_at is None or row["started_at"] < t.started_at):
                t.started_at = row["started_at"]
            if row["completed_at"] and (t.completed_at is None or row["completed_at"] > t.completed_at):
                t.completed_at = row["completed_at"]
            if row["max_created"] is not None:
                t.max_created = max(t.max_created or row["max_created"], row["max_created"])
        return totals



class WorkerLease:
    """A worker's proof of life: an advisory lock held by an open transaction on a connection of its
    own, plus a heartbeat.

    Transaction-scoped, not session-scoped: behind PgBouncer in transaction mode (Supabase's pooler)
    a session lock would stay on a server connection the pooler passes on to other clients, and a
    killed worker would look alive until its lease expired. The open transaction takes no snapshot
    between statements and writes nothing, so it holds back no vacuum; it is pinged with each
    heartbeat (an `idle_in_transaction_session_timeout` counts from the last statement). The heartbeat
    itself is written through the pool, where it commits.

    Use as an async context manager; the claims made with `key` stay valid until it exits.
    """

    def __init__(self, ledger: RunLedger, heartbeat_seconds: float, log: logging.Logger) -> None:
        self.ledger = ledger
        self.heartbeat_seconds = heartbeat_seconds
        self.log = log
        self.key = 0
        self.worker_id = ""
        self._conn: psycopg.AsyncConnection | None = None
        self._beat: asyncio.Task | None = None

    async def __aenter__(self) -> WorkerLease:
        while True:
            key = random.randint(1, 2**31 - 1)
            conn = await self._lock(key)
            if conn is not None:
                break
        self._conn, self.key = conn, key
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{key}"
        self._beat = asyncio.create_task(self._heartbeat())
        return self

    async def _lock(self, key: int) -> psycopg.AsyncConnection | None:
        """A new connection whose open transaction holds the lock of `key`; None if another has it."""
        conn = await psycopg.AsyncConnection.connect(self.ledger.db.url, autocommit=False, **CONNECTION_OPTIONS)
        try:
            cursor = await conn.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", (WORKER_LOCK_CLASS, key))
            row = await cursor.fetchone()
        except BaseException:
            await conn.close()
            raise
        if row and row[0]:
            return conn
        await conn.close()
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        if self._beat is not None:
            self._beat.cancel()
            await asyncio.gather(self._beat, return_exceptions=True)
        if self._conn is not None:
            try:  # in the lock's own transaction: the chunks given back and the lock released at once
                await self.ledger.release_all(self._conn, self.key)
                await self._conn.commit()
            finally:
                await self._conn.close()  # the transaction, and its lock, end with the connection

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                await self._keep_lock()
                async with self.ledger.db.pool.connection() as conn:
                    await self.ledger.heartbeat(conn, self.key)
            except psycopg.Error as error:  # a blip: the lease outlives a few missed beats
                self.log.warning("backfill heartbeat failed: %s", error)

    async def _keep_lock(self) -> None:
        """Ping the lock's transaction (an idle timeout counts from its last statement); when its connection
        is gone (a restarted pooler, a server's idle timeout), take the same lock again on a new one, so
        that the worker's claims stay valid instead of being taken over as a dead worker's."""
        assert self._conn is not None
        try:
            await self._conn.execute("SELECT 1")
            return
        except psycopg.Error as error:
            if not self._conn.closed and not self._conn.broken:
                raise
            self.log.warning("backfill worker lock lost with its connection (%s): taking it again", error)
        conn = await self._lock(self.key)
        if conn is None:  # its lock held by another: nothing this worker claimed is its own any more
            self.log.warning("backfill worker lock %s is held by another connection", self.key)
            return
        await self._conn.close()
        self._conn = conn
