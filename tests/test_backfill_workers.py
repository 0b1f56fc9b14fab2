"""Several workers on one run, coordinated by PostgreSQL alone: no chunk fetched twice, dead or silent
workers' claims taken over, one open run per account."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from backfill_support import FAST, assert_same_ids, chunk_rows, emulator_objects, engine, run_rows

from stripe_sync_core.backfill import BackfillInProgress, BackfillOptions, NoOpenRun
from stripe_sync_core.progress import RecordingSink
from stripe_sync_core.runs import WORKER_LOCK_CLASS
from stripe_sync_emulator import StripeEmulator

SPLITTY = BackfillOptions(target_chunk_objects=150, max_split=6, idle_poll_seconds=0.05, heartbeat_seconds=0.5)


def started_chunks(sink: RecordingSink) -> list[int]:
    return [args[2] for name, args in sink.calls if name == "chunk_started"]


async def wait_for_open_run(url: str) -> None:
    while not [r for r in run_rows(url) if r["closed_at"] is None]:
        await asyncio.sleep(0.01)


async def test_two_workers_share_a_run_and_never_fetch_a_chunk_twice(clean_db):
    with StripeEmulator(seed=50, customers=120, start="2024-01-01", end="2025-01-01", latency_ms=3) as emu:
        first, second = RecordingSink(), RecordingSink()
        async with engine(clean_db, emu, progress=first, options=SPLITTY) as a, \
                engine(clean_db, emu, progress=second, options=SPLITTY) as b:
            task = asyncio.create_task(a.process_until_done("all", concurrency=3))
            await wait_for_open_run(clean_db)
            joined = await b.backfill.join_open_run(concurrency=3)
            summary = await task
        mine, theirs = set(started_chunks(first)), set(started_chunks(second))
        chunks = chunk_rows(clean_db)
        assert mine and theirs and not mine & theirs  # both worked, never on the same chunk
        assert mine | theirs == {c["id"] for c in chunks}
        assert all(c["attempts"] == 1 for c in chunks)  # each chunk claimed exactly once
        assert len({c["worker_id"] for c in chunks}) == 2
        assert summary == joined  # both report the same run
        for table in ("customers", "invoices", "charges"):
            assert sum(c["processed_count"] for c in chunks if c["object"] == table) == \
                len(emulator_objects(emu, table))
        assert_same_ids(clean_db, emu, ["customers", "invoices", "charges", "tax_ids", "payment_methods"])
        [run] = run_rows(clean_db)
        assert run["status"] == "complete"


async def test_join_without_an_open_run_is_refused(clean_db):
    with StripeEmulator(seed=51, customers=5) as emu:
        async with engine(clean_db, emu) as sync:
            with pytest.raises(NoOpenRun, match="no open backfill"):
                await sync.backfill.join_open_run()


async def _hold_worker_lock(url: str, key: int) -> psycopg.AsyncConnection:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await conn.execute("SELECT pg_advisory_lock(%s, %s)", (WORKER_LOCK_CLASS, key))
    return conn


async def _claim_as(url: str, run_id: int, key: int, heartbeat_age: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE stripe._sync_obj_runs SET status = 'running', worker_key = %s, worker_id = 'elsewhere', "
            "heartbeat_at = now() - %s::interval, attempts = attempts + 1 WHERE run_id = %s",
            (key, heartbeat_age, run_id))


async def _open_run(sync, url: str) -> int:
    """Open a customers run without working it (one page stepped, then handed back)."""
    await sync.process_next("customers")
    return run_rows(url)[0]["id"]


async def test_a_live_workers_claims_are_respected_and_a_silent_ones_taken_over(clean_db):
    with StripeEmulator(seed=52, customers=250, start="2024-01-01", end="2025-01-01") as emu:
        async with engine(clean_db, emu, options=BackfillOptions(lease_seconds=5, idle_poll_seconds=0.05)) as sync:
            run_id = await _open_run(sync, clean_db)
            holder = await _hold_worker_lock(clean_db, 4242)
            try:
                await _claim_as(clean_db, run_id, 4242, "1 second")  # alive and heard of
                with pytest.raises(BackfillInProgress, match="in progress"):
                    await sync.process_until_done("invoices")
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(sync.process_until_done("customers"), 0.5)
                assert all(c["worker_id"] == "elsewhere" for c in chunk_rows(clean_db) if c["status"] == "running")
                await _claim_as(clean_db, run_id, 4242, "1 hour")  # alive but silent past its lease
                summary = await asyncio.wait_for(sync.process_until_done("customers"), 20)
            finally:
                await holder.close()
        assert summary["customers"].stored == 250
        assert_same_ids(clean_db, emu, ["customers"])


async def test_a_run_for_other_objects_nobody_works_on_is_superseded(clean_db):
    with StripeEmulator(seed=53, customers=250, start="2024-01-01", end="2025-01-01") as emu:
        async with engine(clean_db, emu) as sync:
            await _open_run(sync, clean_db)
            await sync.process_until_done("invoices")
        old, new = run_rows(clean_db)
        assert old["closed_at"] is not None and old["error_message"].startswith("superseded by a backfill")
        assert new["status"] == "complete" and new["objects"] == ["invoices"]


async def test_the_same_backfill_started_twice_at_once_works_one_run(clean_db):
    with StripeEmulator(seed=54, customers=150, start="2024-01-01", end="2025-01-01") as emu:
        async with engine(clean_db, emu, options=FAST) as a, engine(clean_db, emu, options=FAST) as b:
            one, two = await asyncio.gather(a.process_until_done("customers"), b.process_until_done("customers"))
        assert len(run_rows(clean_db)) == 1
        assert one["customers"].stored == two["customers"].stored == 150
