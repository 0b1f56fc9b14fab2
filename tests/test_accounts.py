"""Account data deletion: isolation between accounts, dry run equal to the deletion, atomicity, refusals;
and the blocking facade from a plain thread."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from stripe_sync_core import StripeSync, SyncConfig
from stripe_sync_core.accounts import AccountDeletionRefused
from stripe_sync_core.blocking import BlockingStripeSync
from stripe_sync_core.database import Database, UpsertRow
from stripe_sync_core.registry import REGISTRY

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
