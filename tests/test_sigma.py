"""Stripe Sigma ingestion against the emulator's query runs (real HTTP, real PostgreSQL): what lands is
exactly what the emulator's reporting tables hold; failures, skips and test keys are reported as such."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
import stripe
from backfill_support import engine_config, kill_when_held, writes_held_after

from stripe_sync_core import StripeSync, status
from stripe_sync_core.backfill import BackfillOptions
from stripe_sync_core.sigma import sigma_objects, sigma_table
from stripe_sync_core.sigma.client import PollOptions, SigmaNeedsLiveKey
from stripe_sync_tui import headless
from stripe_sync_tui.output import Output
from stripe_sync_tui.problems import problem_from

SIGMA_FAST = BackfillOptions(idle_poll_seconds=0.05, heartbeat_seconds=0.5, lease_seconds=30.0,
                             sigma_poll=PollOptions(first_delay=0.01, factor=1.5, max_delay=0.05, timeout=30))
TABLES = ["customers", "charges", "invoices", "invoice_line_items", "subscription_item_change_events",
          "price_tiers", "balance_transactions"]
USED = [*TABLES, "disputes", "refunds"]


def sigma_engine(url: str, emu: Any, **overrides: Any) -> StripeSync:
    settings = {"enable_sigma": True, "sigma_page_size": 40, **overrides}
    config = engine_config(url, emu.api_base, emu.live_secret_key, **settings)
    return StripeSync(config, backfill_options=SIGMA_FAST)


def stored(url: str, table: str) -> list[dict]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(f'SELECT _raw_data FROM sigma."{sigma_table(table).pg_table}"')]


def key_of(table: str, row: dict) -> tuple:
    return tuple(row.get(c) for c in sigma_table(table).key)


def assert_lands_exactly(url: str, emu: Any, table: str) -> None:
    expected = emu.sigma_rows(table)
    rows = stored(url, table)
    assert len(rows) == len({key_of(table, r) for r in rows}), f"{table}: a row landed twice"
    canonical = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
    assert sorted(map(canonical, rows)) == sorted(map(canonical, expected)), table


@pytest.fixture
def emu(stripe_emulator_factory):
    return stripe_emulator_factory(customers=30, sigma={"polls": 1})


@pytest.fixture
def sigma_db(clean_db):
    """`clean_db` with the Sigma tables these tests write emptied too."""
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute("TRUNCATE " + ", ".join(f'sigma."{sigma_table(t).pg_table}"' for t in USED))
    return clean_db


async def test_full_sigma_backfill_lands_what_the_reporting_tables_hold(sigma_db, emu):
    async with sigma_engine(sigma_db, emu) as sync:
        summary = await sync.process_until_done([f"sigma.{t}" for t in TABLES])
        # Shown like any object: the run's rows (console screens 1 and 3, `status`), the stored counts,
        # and an account deletion's preview.
        _, progress = await status.current_run_rows(sync.database, now=datetime.now(UTC))
        counts = await status.sigma_row_counts(sync.database)
        preview = await sync.dangerously_delete_synced_account_data(emu.account_id, dry_run=True, force=True)
    shown = {row.object: row for row in progress}
    for table in TABLES:
        rows = len(emu.sigma_rows(table))
        assert shown[f"sigma.{table}"].status == "complete" and shown[f"sigma.{table}"].processed == rows
        assert counts.get(f"sigma.{table}", 0) == rows
        assert preview.deleted_record_counts.get(f"sigma.{table}", 0) == rows
    for table in TABLES:
        assert summary[f"sigma.{table}"].status == "complete", summary[f"sigma.{table}"]
        assert_lands_exactly(sigma_db, emu, table)
    assert sum(len(emu.sigma_rows(t)) > 40 for t in TABLES) >= 2, "some table needs several pages"

    with psycopg.connect(sigma_db) as conn:  # typed columns agree with the text Sigma sent
        amount, created, raw = conn.execute(
            "SELECT amount, created, _raw_data FROM sigma.charges ORDER BY id LIMIT 1").fetchone()
    assert str(amount) == raw["amount"]
    assert created.strftime("%Y-%m-%d %H:%M:%S") == raw["created"][:19] and created.utcoffset().total_seconds() == 0


async def test_incremental_run_picks_up_rows_added_and_changed_since(sigma_db, emu):
    async with sigma_engine(sigma_db, emu) as sync:
        first = await sync.process_until_done(["sigma.customers"])
        client = stripe.StripeClient(emu.live_secret_key, base_addresses={"api": emu.api_base}, max_network_retries=0)
        changed = emu.objects("customers")[0]["id"]
        await client.v1.customers.update_async(changed, {"name": "Changed Since"})
        added = (await client.v1.customers.create_async({"name": "Added Since", "email": "added@example.com"})).id
        second = await sync.process_until_done(["sigma.customers"])
    assert_lands_exactly(sigma_db, emu, "customers")
    names = {r["id"]: r["name"] for r in stored(sigma_db, "customers")}
    assert names[changed] == "Changed Since" and names[added] == "Added Since"
    total = len(emu.sigma_rows("customers"))
    assert first["sigma.customers"].stored == total - 1
    assert 2 <= second["sigma.customers"].stored < total, "the second run re-read only its window"


async def test_inaccessible_table_is_skipped_and_failing_query_errors_while_others_complete(sigma_db, emu):
    emu.set_sigma(inaccessible_tables=["disputes"], failing_tables={"refunds": "Query exceeded the limit"})
    async with sigma_engine(sigma_db, emu) as sync:
        summary = await sync.process_until_done(["sigma.customers", "sigma.disputes", "sigma.refunds"])
    assert summary["sigma.customers"].status == "complete"
    assert_lands_exactly(sigma_db, emu, "customers")
    skipped = summary["sigma.disputes"]
    assert skipped.status == "skipped" and skipped.errors == 0
    assert "disputes" in skipped.error_messages[0] and "inaccessible" in skipped.error_messages[0]
    failed = summary["sigma.refunds"]
    assert failed.status == "error" and failed.errors == 1
    assert "Query exceeded the limit" in failed.error_messages[0]
    with psycopg.connect(sigma_db) as conn:
        rows = dict(conn.execute("SELECT object, status FROM stripe._sync_obj_runs WHERE object LIKE 'sigma.%'"))
    assert rows == {"sigma.customers": "complete", "sigma.disputes": "complete", "sigma.refunds": "error"}


async def test_a_test_mode_key_is_refused_with_what_to_do(sigma_db, emu):
    config = engine_config(sigma_db, emu.api_base, emu.secret_key, enable_sigma=True)
    async with StripeSync(config, backfill_options=SIGMA_FAST) as sync:
        with pytest.raises(SigmaNeedsLiveKey) as refused:
            await sync.process_until_done("sigma")
    problem = problem_from(refused.value)
    assert "no test-mode data" in problem.detail and "live key" in problem.detail
    assert problem.kind == "not_configured"
    with psycopg.connect(sigma_db) as conn:
        assert conn.execute("SELECT count(*) FROM stripe._sync_runs").fetchone()[0] == 0, "no run opened"


def _landed(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT COALESCE(sum(processed_count), 0) FROM stripe._sync_obj_runs "
                           "WHERE object = 'sigma.balance_transactions'").fetchone()
    return int(row[0])


async def test_a_sigma_backfill_killed_mid_run_resumes_landing_each_row_once(sigma_db, stripe_emulator_factory):
    emu = stripe_emulator_factory(customers=10, sigma={"polls": 0, "synthetic_rows": {"balance_transactions": 1200}})
    total = len(emu.sigma_rows("balance_transactions"))
    config = engine_config(sigma_db, emu.api_base, emu.live_secret_key, sigma_page_size=100)
    with writes_held_after(sigma_db, "sigma.balance_transactions", 300) as holder:
        proc = subprocess.Popen([sys.executable, "-m", "stripe_sync_tui.cli", "--headless", "--json", "backfill",
                                 "sigma.balance_transactions", "--sigma"],
                                env=config.child_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        kill_when_held(holder, proc)  # a few pages committed, the next one written but waiting
    landed = _landed(sigma_db)
    assert 300 <= landed < total, "killed mid-run"
    with psycopg.connect(sigma_db) as conn:
        assert conn.execute("SELECT count(*) FROM sigma.balance_transactions").fetchone()[0] == landed
    async with sigma_engine(sigma_db, emu, sigma_page_size=100, pool_max_size=4) as sync:
        summary = await sync.process_until_done(["sigma.balance_transactions"], join=True)
    result = summary["sigma.balance_transactions"]
    assert result.status == "complete"
    assert result.stored == total, "each row counted once across the kill: no page fetched twice"
    assert_lands_exactly(sigma_db, emu, "balance_transactions")


async def test_listen_with_sigma_refreshes_every_sigma_table(sigma_db, stripe_emulator_factory, capsys):
    emu = stripe_emulator_factory(customers=10, sigma={"polls": 0})
    with psycopg.connect(sigma_db, autocommit=True) as conn:
        conn.execute("TRUNCATE " + ", ".join(f'sigma."{sigma_table(t).pg_table}"' for t in sigma_objects()))
        # A row Stripe no longer holds, in a table read whole: the refresh removes it.
        conn.execute("INSERT INTO sigma.price_tiers (_account_id, _key, price_id, _raw_data, _last_synced_at) "
                     "VALUES (%s, 'gone', 'price_gone', '{}', now() - interval '1 day')", (emu.account_id,))
    async with sigma_engine(sigma_db, emu, sigma_page_size=10_000) as sync:
        refresh = asyncio.create_task(headless._refresh_sigma(sync, Output(json_mode=True), 12.0))
        try:
            deadline = time.monotonic() + 120
            while '"sigma_refreshed"' not in capsys.readouterr().out:
                assert not refresh.done(), refresh
                assert time.monotonic() < deadline, "no refresh"
                await asyncio.sleep(0.1)
        finally:
            refresh.cancel()
            await asyncio.gather(refresh, return_exceptions=True)
    with psycopg.connect(sigma_db) as conn:
        chunks = dict(conn.execute("SELECT object, status FROM stripe._sync_obj_runs"))
    assert chunks == {name: "complete" for name in sigma_objects()}
    for table in ("customers", "price_tiers", "subscription_item_change_events", "invoice_line_items"):
        assert_lands_exactly(sigma_db, emu, table)
