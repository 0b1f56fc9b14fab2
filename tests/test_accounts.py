"""Account data deletion: isolation between accounts, dry run equal to the deletion, atomicity, refusals;
open runs listed and abandoned (refused while a live worker holds one); the blocking facade from a plain
thread."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from stripe_sync_core import StripeSync, SyncConfig
from stripe_sync_core.accounts import AccountDeletionRefused
from stripe_sync_core.blocking import BlockingStripeSync
from stripe_sync_core.database import Database, UpsertRow
from stripe_sync_core.registry import REGISTRY
from stripe_sync_core.runs import ABANDONED, ClaimLost, RunHeld, WorkerLease

FIXTURES = json.loads((Path(__file__).parent / "data" / "stripe_fixtures.json").read_text())["resources"]
ACCOUNT_A, ACCOUNT_B = "acct_AAAA", "acct_BBBB"


async def _seed(db: Database, account: str, copies: int) -> int:
    """Store `copies` objects of every type for `account`; returns the number of object rows."""
    await db.ensure_accounts([account])
    total = 0
    for table, entry in REGISTRY.items():
        if table == "accounts":
            continue
        sample = FIXTURES[entry.fixture_key]
        rows = [UpsertRow({**sample, "id": f"{sample.get('id') or table}_{account}_{i}"}, account,
                          datetime.now(UTC), parent_id="parent") for i in range(copies)]
        total += len(await db.upsert(entry, rows))
    return total


async def _seed_bookkeeping(url: str, account: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        run = await (await conn.execute(
            "INSERT INTO stripe._sync_runs (account_id, objects, closed_at) VALUES (%s, '{customers}', now()) "
            "RETURNING id", (account,))).fetchone()
        await conn.execute("INSERT INTO stripe._sync_obj_runs (run_id, object, status) VALUES (%s, 'customers', "
                           "'complete')", (run[0],))
        await conn.execute("INSERT INTO stripe._events (id, type, account_id, outcome) VALUES (%s, "
                           "'customer.updated', %s, 'stored')", (f"evt_{account}", account))
        await conn.execute(
            "INSERT INTO stripe._managed_webhooks (id, account_id, url, secret, deployment_id, _raw_data) "
            "VALUES (%s, %s, %s, 'whsec_test_secret_value', 'dep', '{}')",
            (f"we_{account}", account, f"https://example.test/{account}"))


async def _counts(db: Database, account: str) -> dict[str, int]:
    counts = {}
    for table in REGISTRY:
        column = "id" if table == "accounts" else "_account_id"
        row = await db.fetch_one(f"SELECT count(*) AS n FROM stripe.{table} WHERE {column} = %s", (account,))
        counts[table] = row["n"] if row else 0
    return counts


@pytest.fixture
async def two_accounts(db: Database, clean_db: str) -> tuple[int, int]:
    stored_a = await _seed(db, ACCOUNT_A, 3)
    stored_b = await _seed(db, ACCOUNT_B, 2)
    await _seed_bookkeeping(clean_db, ACCOUNT_A)
    await _seed_bookkeeping(clean_db, ACCOUNT_B)
    return stored_a, stored_b


async def test_dry_run_counts_equal_the_deletion_and_other_accounts_are_untouched(db, clean_db, two_accounts):
    stored_a, _ = two_accounts
    before_b = await _counts(db, ACCOUNT_B)
    async with StripeSync(SyncConfig(database_url=clean_db)) as sync:
        preview = await sync.dangerously_delete_synced_account_data(ACCOUNT_A, dry_run=True)
        assert await _counts(db, ACCOUNT_A) != dict.fromkeys(REGISTRY, 0), "a dry run deletes nothing"
        result = await sync.dangerously_delete_synced_account_data(ACCOUNT_A, dry_run=False)

    assert preview.dry_run is True and result.dry_run is False
    assert preview.deleted_record_counts == result.deleted_record_counts
    counts = result.deleted_record_counts
    assert sum(counts[t] for t in REGISTRY if t != "accounts") == stored_a
    assert counts["accounts"] == 1 and counts["_sync_runs"] == 1 and counts["_events"] == 1
    assert counts["_managed_webhooks"] == 1
    assert [w.id for w in preview.managed_webhooks] == [f"we_{ACCOUNT_A}"]
    assert preview.sync_runs == 1
    # Without a Stripe key the endpoint cannot be removed there: the result says so.
    assert any("not removed from Stripe" in w for w in result.warnings)

    assert await _counts(db, ACCOUNT_A) == dict.fromkeys(REGISTRY, 0)
    assert await _counts(db, ACCOUNT_B) == before_b
    leftovers = await db.fetch_one(
        "SELECT (SELECT count(*) FROM stripe._sync_obj_runs) AS chunks, "
        "(SELECT count(*) FROM stripe._managed_webhooks) AS webhooks")
    assert leftovers == {"chunks": 1, "webhooks": 1}


async def test_a_failure_half_way_leaves_every_row(db, clean_db, two_accounts):
    before = await _counts(db, ACCOUNT_A)
    async with await psycopg.AsyncConnection.connect(clean_db, autocommit=True) as conn:
        # A real failure inside the transaction, after several tables were already deleted from.
        await conn.execute("""
            CREATE FUNCTION stripe.refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'injected failure'; END $$;
            CREATE TRIGGER refuse BEFORE DELETE ON stripe.customers
                FOR EACH ROW EXECUTE FUNCTION stripe.refuse_delete();
        """)
    try:
        async with StripeSync(SyncConfig(database_url=clean_db)) as sync:
            with pytest.raises(psycopg.Error, match="injected failure"):
                await sync.dangerously_delete_synced_account_data(ACCOUNT_A, dry_run=False)
        assert await _counts(db, ACCOUNT_A) == before
    finally:
        async with await psycopg.AsyncConnection.connect(clean_db, autocommit=True) as conn:
            await conn.execute("DROP TRIGGER refuse ON stripe.customers; DROP FUNCTION stripe.refuse_delete()")


async def test_refuses_while_a_run_is_open_unless_forced(db, clean_db, two_accounts):
    await db.execute("INSERT INTO stripe._sync_runs (account_id, objects) VALUES (%s, '{customers}')", (ACCOUNT_A,))
    before = await _counts(db, ACCOUNT_A)
    async with StripeSync(SyncConfig(database_url=clean_db)) as sync:
        with pytest.raises(AccountDeletionRefused, match="open"):
            await sync.dangerously_delete_synced_account_data(ACCOUNT_A, dry_run=False)
        assert await _counts(db, ACCOUNT_A) == before
        with pytest.raises(AccountDeletionRefused):
            await sync.dangerously_delete_synced_account_data(ACCOUNT_A, dry_run=True)
        forced = await sync.dangerously_delete_synced_account_data(ACCOUNT_A, dry_run=False, force=True)
    assert any("forced" in w for w in forced.warnings)
    assert await _counts(db, ACCOUNT_A) == dict.fromkeys(REGISTRY, 0)


async def _open_run_with_chunks(db: Database, account: str) -> int:
    """An interrupted run: one chunk complete, one pending, one 'running' whose worker is gone."""
    run = await db.fetch_one("INSERT INTO stripe._sync_runs (account_id, objects) VALUES (%s, '{customers}') "
                             "RETURNING id", (account,))
    assert run is not None
    for status, key in (("complete", None), ("pending", None), ("running", 77)):
        await db.execute("INSERT INTO stripe._sync_obj_runs (run_id, object, status, worker_key, worker_id, "
                         "heartbeat_at) VALUES (%s, 'customers', %s, %s, %s, now())",
                         (run["id"], status, key, f"gone:1:{key}" if key else None))
    return run["id"]


async def test_open_runs_are_listed_abandoned_and_the_deletion_then_goes_ahead(db, clean_db, two_accounts):
    run_a = await _open_run_with_chunks(db, ACCOUNT_A)
    run_b = await _open_run_with_chunks(db, ACCOUNT_B)
    async with StripeSync(SyncConfig(database_url=clean_db)) as sync:
        [listed] = await sync.open_runs(ACCOUNT_A)
        assert (listed.run_id, listed.objects, listed.state) == (run_a, ("customers",), "interrupted")
        assert (listed.chunks_done, listed.chunks_left, listed.chunks_failed, listed.workers) == (1, 2, 0, ())
        with pytest.raises(AccountDeletionRefused, match="abandon") as refused:
            await sync.dangerously_delete_synced_account_data(ACCOUNT_A)
        assert refused.value.open_run_ids == [run_a] and refused.value.kind == "refused"

        assert await sync.abandon_open_runs(ACCOUNT_A) == [listed]
        assert await sync.open_runs(ACCOUNT_A) == []
        assert await sync.abandon_open_runs(ACCOUNT_A) == []  # twice is harmless
        run = await db.fetch_one("SELECT closed_at, error_message FROM stripe._sync_runs WHERE id = %s", (run_a,))
        assert run["closed_at"] is not None and run["error_message"] == f"{ABANDONED}: 2 chunk(s) left unfetched"
        chunks = await db.fetch_all("SELECT status, error_message FROM stripe._sync_obj_runs WHERE run_id = %s "
                                    "ORDER BY id", (run_a,))
        assert [c["status"] for c in chunks] == ["complete", "error", "error"]
        assert chunks[1]["error_message"].startswith(ABANDONED)
        # The other account's run is untouched; the stored rows stay until the deletion.
        assert [r.run_id for r in await sync.open_runs(ACCOUNT_B)] == [run_b]
        assert (await _counts(db, ACCOUNT_A))["customers"] == 3

        result = await sync.dangerously_delete_synced_account_data(ACCOUNT_A, dry_run=False)
    assert result.deleted_record_counts["_sync_runs"] == 2  # the seeded closed run and the abandoned one
    assert await _counts(db, ACCOUNT_A) == dict.fromkeys(REGISTRY, 0)


async def test_abandon_is_refused_while_a_live_worker_holds_a_chunk_unless_forced(db, clean_db, two_accounts):
    run_id = await _open_run_with_chunks(db, ACCOUNT_A)
    async with StripeSync(SyncConfig(database_url=clean_db)) as sync:
        ledger = sync.backfill.ledger
        async with WorkerLease(ledger, 60, sync.context.log) as lease:  # a live worker, holding a chunk
            chunk = await ledger.claim(run_id, lease.key, lease.worker_id)
            assert chunk is not None
            [held] = await sync.open_runs(ACCOUNT_A)
            assert held.state == "running" and held.workers == (lease.worker_id,)

            with pytest.raises(RunHeld, match="live worker") as refused:
                await sync.abandon_open_runs(ACCOUNT_A)
            assert refused.value.kind == "refused" and [r.run_id for r in refused.value.runs] == [run_id]
            assert await sync.open_runs(ACCOUNT_A) == [held]  # nothing changed

            [abandoned] = await sync.abandon_open_runs(ACCOUNT_A, force=True)
            assert abandoned == held
            # The worker loses its claim at its next page, and finds nothing left to claim.
            async with sync.database.pool.connection() as conn, conn.transaction():
                with pytest.raises(ClaimLost):
                    await ledger.advance(conn, chunk, lease.key, done=False)
            assert await ledger.claim(run_id, lease.key, lease.worker_id) is None
            assert await ledger.remaining(run_id) == 0
    assert await sync_runs_open(db, ACCOUNT_A) == 0


async def sync_runs_open(db: Database, account: str) -> int:
    row = await db.fetch_one("SELECT count(*) AS n FROM stripe._sync_runs WHERE account_id = %s "
                             "AND closed_at IS NULL", (account,))
    return row["n"] if row else 0


async def test_unknown_account_is_a_warning_not_an_error(clean_db):
    async with StripeSync(SyncConfig(database_url=clean_db)) as sync:
        result = await sync.dangerously_delete_synced_account_data("acct_nobody")
    assert sum(result.deleted_record_counts.values()) == 0
    assert result.warnings == ["no account acct_nobody in the database"]


async def test_blocking_facade_from_a_plain_thread(db, clean_db, two_accounts):
    results: dict = {}

    def worker() -> None:
        with BlockingStripeSync(SyncConfig(database_url=clean_db)) as sync:
            results["accounts"] = [a["id"] for a in sync.get_all_synced_accounts()]
            results["preview"] = sync.dangerously_delete_synced_account_data(ACCOUNT_B)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert results["accounts"] == [ACCOUNT_A, ACCOUNT_B]
    assert results["preview"].deleted_record_counts["customers"] == 2


# -- the listener whose managed webhook a deletion removes ------------------------------------------


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait for something another task does (a guard against hanging, not a timing assertion)."""
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


async def test_a_deletion_makes_the_running_listener_re_register_its_webhook(engine, emulator):
    own = await engine.own_account_id()
    async with engine.listener(port=0, manage_webhook=True, catch_up=False, webhook_check_seconds=None) as listener:
        old = listener.state.webhook_id
        report = await engine.dangerously_delete_synced_account_data(own, dry_run=False)
        assert [hook.id for hook in report.managed_webhooks] == [old]
        assert report.webhooks_removed_from_stripe == [old]

        new = listener.state.webhook_id
        assert listener.state.running and new and new != old
        assert listener.state.notice == f"managed webhook {old} was deleted; re-registered {new} for " \
                                        f"{listener.state.webhook_url}"
        assert ("warning", listener.state.notice) in [args for name, args in engine.progress.calls
                                                      if name == "message"]
        endpoints = (await engine.stripe.get("/v1/webhook_endpoints"))["data"]
        assert [(e["id"], e["url"]) for e in endpoints] == [(new, listener.state.webhook_url)]
        # Its feed is alive again: Stripe delivers to the new webhook.
        emulator.create("customers", {"email": "after-deletion@example.test"})
        await until(lambda: listener.state.ok > 0)


async def test_the_listener_stops_when_its_webhook_is_gone_and_cannot_be_re_registered(engine, emulator,
                                                                                      clean_db):
    own = await engine.own_account_id()
    listener = engine.listener(port=0, manage_webhook=True, catch_up=False, webhook_check_seconds=0.05)
    await listener.start()
    try:
        old = listener.state.webhook_id
        emulator.set_error_rate(1.0)  # Stripe fails every call from now on
        # Another process deletes the account's data: the listener's watch notices.
        async with StripeSync(engine.config) as other:
            report = await other.dangerously_delete_synced_account_data(own, dry_run=False)
        assert any(f"{old} was not removed from Stripe" in w for w in report.warnings)
        await until(lambda: not listener.state.running)
        assert listener.state.webhook_id is None
        assert listener.state.notice.startswith(f"the listener stopped: its managed webhook {old} was deleted")
        assert ("error", listener.state.notice) in [args for name, args in engine.progress.calls
                                                    if name == "message"]
    finally:
        emulator.set_error_rate(0)
        await listener.stop()
