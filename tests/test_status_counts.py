"""Read models that count (core status.py): objects apart from child rows, and a run's overall ETA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stripe_sync_core import status
from stripe_sync_core.database import Database
from stripe_sync_core.status import (
    ObjectProgress,
    current_run_rows,
    last_backfill_started,
    overall_eta,
    run_history,
)

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def progress(status: str, total: int, done: int, failed: int = 0, started: datetime | None = None) -> ObjectProgress:
    return ObjectProgress(1, "customers", status, total, done, failed, 0, 0, started, None, None, None, None)


def test_overall_eta_is_the_chunks_left_at_the_runs_pace() -> None:
    ten_minutes_ago = NOW - timedelta(minutes=10)
    rows = [progress("running", 4, 2, started=ten_minutes_ago), progress("running", 2, 1, started=NOW),
            progress("error", 1, 0, failed=1, started=NOW)]
    assert overall_eta(rows, NOW) == 600.0  # 3 done in 600 s, 3 left
    assert overall_eta([progress("complete", 2, 2, started=ten_minutes_ago)], NOW) is None  # nothing running
    assert overall_eta([progress("running", 2, 0, started=ten_minutes_ago)], NOW) is None  # no pace yet


async def test_child_rows_are_counted_apart_from_objects(db: Database) -> None:
    await db.execute("INSERT INTO stripe.accounts (_raw_data, _account_id, _last_synced_at) VALUES (%s, %s, %s)",
                     ('{"id": "acct_1", "object": "account"}', "acct_1", NOW))
    run = await db.fetch_one(
        "INSERT INTO stripe._sync_runs (account_id, objects, params, started_at) "
        "VALUES ('acct_1', '{customers}', '{}', %s) RETURNING id", (NOW - timedelta(minutes=5),))
    assert run is not None
    for children in ('{"tax_ids": 3, "payment_methods": 4}', '{}'):
        await db.execute(
            "INSERT INTO stripe._sync_obj_runs (run_id, object, status, processed_count, children_processed, "
            "started_at, completed_at) VALUES (%s, 'customers', 'complete', 10, %s, %s, %s)",
            (run["id"], children, NOW - timedelta(minutes=5), NOW))
    summary, rows = await current_run_rows(db, now=NOW, run_id=run["id"])
    assert summary is not None and summary.total_processed == 20 and summary.child_rows == 7
    assert rows[0].processed == 20 and rows[0].child_rows == 7
    assert (await run_history(db))[0].child_rows == 7
    assert await last_backfill_started(db, "acct_1") == (run["id"], NOW - timedelta(minutes=5))
    assert await last_backfill_started(db, "acct_other") is None


async def test_sigma_counts_list_the_tables_holding_rows_exactly(db: Database) -> None:
    """Only written tables are counted (the others have no pages), and a table emptied since counts 0."""
    await db.execute("TRUNCATE sigma.charges, sigma.refunds")
    for table, ids in (("charges", ["ch_1", "ch_2"]), ("refunds", ["re_1"])):
        for object_id in ids:
            await db.execute(f"INSERT INTO sigma.{table} (_account_id, id, _raw_data, _last_synced_at) "
                             "VALUES ('acct_1', %s, '{}', now())", (object_id,))
    await db.execute("DELETE FROM sigma.refunds")  # written, then emptied: its pages remain
    counts = await status.sigma_row_counts(db)  # other tests' tables may hold rows: these two are ours
    assert counts["sigma.charges"] == 2 and "sigma.refunds" not in counts
    await db.execute("TRUNCATE sigma.charges")
    assert "sigma.charges" not in await status.sigma_row_counts(db)
