"""A backfill killed (SIGKILL) or cancelled at any moment resumes from each chunk's cursor: nothing skipped,
nothing stored twice."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import psycopg
import pytest
from backfill_support import (
    assert_same_ids,
    chunk_rows,
    emulator_objects,
    engine,
    kill_when_held,
    pages_held_after,
    run_rows,
    writes_held_after,
)

from stripe_sync_core.backfill import BackfillOptions
from stripe_sync_core.database import Database
from stripe_sync_core.runs import Chunk, PlannedChunk, RunLedger, WorkerLease
from stripe_sync_emulator import StripeEmulator

WORKER = textwrap.dedent("""
    import asyncio, sys
    from stripe_sync_core import StripeSync, SyncConfig
    url, api_base, key, obj = sys.argv[1:5]
    config = SyncConfig(database_url=url, stripe_secret_key=key, stripe_api_base=api_base,
                        max_requests_per_second=0, initial_retry_delay_ms=1, max_retry_delay_ms=20)
    async def main():
        async with StripeSync(config) as sync:
            await sync.process_until_done(obj, concurrency=4)
    asyncio.run(main())
""")

TABLES = ["customers", "tax_ids", "payment_methods", "invoices", "charges", "subscriptions", "subscription_items"]


def start_worker(url: str, emu: StripeEmulator, obj: str = "all") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER, url, emu.api_base, emu.secret_key, obj],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})


def processed(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT COALESCE(sum(processed_count), 0) FROM stripe._sync_obj_runs").fetchone()
        return int(row[0]) if row else 0


def assert_stored_once(url: str, emu: StripeEmulator) -> None:
    """Every chunk's count went up with its page in one transaction: the counts equal the objects."""
    chunks = chunk_rows(url)
    assert all(c["status"] == "complete" for c in chunks)
    by_object: dict[str, int] = {}
    children: dict[str, int] = {}
    for c in chunks:
        by_object[c["object"]] = by_object.get(c["object"], 0) + c["processed_count"]
        for table, count in c["children_processed"].items():
            children[table] = children.get(table, 0) + count
    for table in ("customers", "invoices", "charges", "subscriptions"):
        assert by_object[table] == len(emulator_objects(emu, table)), table
    for table in ("tax_ids", "payment_methods", "subscription_items"):
        assert children[table] == len(emulator_objects(emu, table)), table


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_backfill_killed_at_a_random_moment_resumes_to_the_same_tables(clean_db, seed):
    rng = random.Random(seed)
    with StripeEmulator(seed=20 + seed, customers=150, start="2024-01-01", end="2025-01-01",
                        latency_ms=2) as emu:
        # Killed after a random number of objects, with the page that goes past it held open (so that the
        # run cannot end first, however fast the machine) and the other workers wherever they are.
        with pages_held_after(clean_db, rng.randint(1, 1500)) as holder:
            proc = start_worker(clean_db, emu)
            kill_when_held(holder, proc, then_wait=rng.random() * 0.2)
        assert proc.returncode == -signal.SIGKILL
        [killed] = run_rows(clean_db)
        assert killed["closed_at"] is None  # the run stays open for the next process
        async with engine(clean_db, emu) as sync:
            summary = await sync.process_until_done("all", concurrency=4)
        [run] = run_rows(clean_db)
        assert run["id"] == killed["id"] and run["status"] == "complete"
        assert all(s.errors == 0 for s in summary.values())
        assert_same_ids(clean_db, emu, TABLES)
        assert_stored_once(clean_db, emu)


async def test_a_dead_workers_claims_are_taken_over_at_once(clean_db):
    """The killed worker's advisory lock went with its connection: no need to wait for its lease."""
    with StripeEmulator(seed=30, customers=600, start="2024-01-01", end="2025-01-01", latency_ms=30) as emu:
        with writes_held_after(clean_db, "stripe.customers", 100) as holder:
            proc = start_worker(clean_db, emu, "customers")
            kill_when_held(holder, proc)
        assert any(c["status"] == "running" for c in chunk_rows(clean_db))
        options = BackfillOptions(lease_seconds=3600, idle_poll_seconds=0.05)
        async with engine(clean_db, emu, options=options) as sync:
            started = time.monotonic()
            await asyncio.wait_for(sync.process_until_done("customers"), 20)
        assert time.monotonic() - started < 10
        assert_same_ids(clean_db, emu, ["customers"])


async def test_cancelling_leaves_the_run_resumable(clean_db):
    with StripeEmulator(seed=31, customers=150, start="2024-01-01", end="2025-01-01", latency_ms=3) as emu:
        async with engine(clean_db, emu) as sync:
            task = asyncio.create_task(sync.process_until_done("all", concurrency=4))
            while processed(clean_db) < 300:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        chunks = chunk_rows(clean_db)
        assert not [c for c in chunks if c["status"] == "running"]  # handed back, not left claimed
        interrupted = [c for c in chunks if c["status"] == "pending" and c["processed_count"] > 0]
        assert interrupted and all(c["page_cursor"] for c in interrupted)  # cursor kept
        [run] = run_rows(clean_db)
        assert run["closed_at"] is None
        async with engine(clean_db, emu) as sync:
            await sync.process_until_done("all", concurrency=4)
        assert_same_ids(clean_db, emu, TABLES)
        assert_stored_once(clean_db, emu)
        assert run_rows(clean_db)[0]["status"] == "complete"


class LateAnswers(RunLedger):
    """A claim whose answer is still on its way when the worker is cancelled: the UPDATE has committed on
    the server, the client has not read it yet (the window Ctrl-C hit in CI)."""

    def __init__(self, *args: object, answered: asyncio.Event, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.answered = answered

    async def _claim(self, *args: object) -> Chunk | None:
        chunk = await super()._claim(*args)  # type: ignore[arg-type]
        self.answered.set()
        await asyncio.sleep(0.3)
        return chunk


async def test_a_claim_cut_off_by_a_cancellation_is_given_back(db):
    answered = asyncio.Event()
    ledger = LateAnswers(db, 30.0, answered=answered)
    await db.execute("INSERT INTO stripe.accounts (_raw_data, _account_id, _last_synced_at) VALUES (%s, %s, now())",
                     ('{"id": "acct_1", "object": "account"}', "acct_1"))
    run = await ledger.open_run("acct_1", "test", ["customers"], {}, None,
                                [PlannedChunk("customers"), PlannedChunk("invoices")])
    assert run is not None
    async with WorkerLease(ledger, 30.0, logging.getLogger("test")) as lease:
        claim = asyncio.create_task(ledger.claim(run.id, lease.key, lease.worker_id))
        await answered.wait()  # committed: the chunk is 'running' in the database
        claim.cancel()
        with pytest.raises(asyncio.CancelledError):
            await claim
        statuses = {row["status"] for row in await db.fetch_all("SELECT status FROM stripe._sync_obj_runs")}
        assert statuses == {"pending"}  # given back before the cancellation went on, lease still held



async def test_statements_prepared_before_a_migration_adds_a_column_still_run(clean_db):
    """Direct connections prepare their repeated statements; a migration that adds a column to the run
    tables while an engine runs (a rolling upgrade) must not break its claims and run lookups."""
    db = Database(clean_db, max_size=1)  # one connection: every repeat on it, prepared past the threshold
    await db.open()
    try:
        await _runs_on_across_a_migration(db)
    finally:
        await db.close()


async def _runs_on_across_a_migration(db: Database) -> None:
    ledger = RunLedger(db, 30.0)
    await db.execute("INSERT INTO stripe.accounts (_raw_data, _account_id, _last_synced_at) VALUES (%s, %s, now())",
                     ('{"id": "acct_1", "object": "account"}', "acct_1"))
    run = await ledger.open_run("acct_1", "test", ["customers"], {}, None,
                                [PlannedChunk("customers") for _ in range(12)])
    assert run is not None
    async with WorkerLease(ledger, 30.0, logging.getLogger("test")) as lease:
        for _ in range(8):  # past psycopg's threshold: prepared on the server
            assert await ledger.get_run(run.id) == run
            chunk = await ledger.claim(run.id, lease.key, lease.worker_id)
            assert chunk is not None
            await ledger.release(chunk, lease.key)
        await db.execute("ALTER TABLE stripe._sync_runs ADD COLUMN added_by_a_later_release int")
        await db.execute("ALTER TABLE stripe._sync_obj_runs ADD COLUMN added_by_a_later_release int")
        try:
            assert await ledger.get_run(run.id) == run
            assert await ledger.find_open_run("acct_1", "test") == run
            assert await ledger.claim(run.id, lease.key, lease.worker_id) is not None
        finally:
            await db.execute("ALTER TABLE stripe._sync_runs DROP COLUMN added_by_a_later_release")
            await db.execute("ALTER TABLE stripe._sync_obj_runs DROP COLUMN added_by_a_later_release")
