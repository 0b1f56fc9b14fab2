"""Connect platforms: connected accounts backfilled one run each under their `Stripe-Account` header (one
interrupted and resumed, workers joining across accounts), Connect webhooks stored under their account,
one connected account's data deleted leaving the others, the per-account request budget, `accounts`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import psycopg
import pytest
from backfill_support import EMULATOR_TYPE, engine
from psycopg.rows import dict_row

from stripe_sync_core import status
from stripe_sync_core.connect import NotAConnectedAccount
from stripe_sync_core.progress import ProgressSink
from stripe_sync_core.registry import REGISTRY
from stripe_sync_emulator import StepClock, StripeEmulator

START, END = "2024-01-01", "2024-12-31"
COMPARED = ["customers", "subscriptions", "invoices", "charges", "payment_intents", "refunds", "prices",
            "products", "checkout_sessions", "subscription_items", "invoice_items", "tax_ids"]


def _emulator(accounts: int = 3) -> StripeEmulator:
    return StripeEmulator(seed=21, customers=4, connected_accounts=accounts, connected_customers=4,
                          start=START, end=END)


def _ids(url: str, table: str, account: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute(
            f"SELECT id FROM stripe.{table} WHERE _account_id = %s AND NOT deleted", (account,))}


def _truth(emu: StripeEmulator, table: str, account: str) -> set[str]:
    objects = emu.objects(EMULATOR_TYPE.get(table, table), account=account)
    if table == "payment_methods":
        objects = [o for o in objects if o.get("customer")]
    return {o["id"] for o in objects}


def _assert_account_copied(url: str, emu: StripeEmulator, account: str) -> None:
    for table in COMPARED:
        assert _ids(url, table, account) == _truth(emu, table, account), f"{account} {table}"


def _rows(url: str, sql: str, params: tuple = ()) -> list[dict]:
    with psycopg.connect(url) as conn:
        return conn.cursor(row_factory=dict_row).execute(sql, params).fetchall()


class _StopAfterChunks(ProgressSink):
    def __init__(self, chunks: int) -> None:
        self.left = chunks
        self.reached = asyncio.Event()

    def chunk_done(self, run_id: int, object_name: str, chunk_id: int, status: str, processed: int,
                   error: str | None = None) -> None:
        self.left -= 1
        if self.left <= 0:
            self.reached.set()


async def test_connected_accounts_backfill_one_run_each_and_an_interrupted_one_resumes(clean_db: str) -> None:
    with _emulator() as emu:
        first, *others = emu.connected_account_ids
        sink = _StopAfterChunks(3)
        async with engine(clean_db, emu, progress=sink) as sync:
            task = asyncio.create_task(sync.process_connected("all", concurrency=1, accounts=[first]))
            await asyncio.wait_for(sink.reached.wait(), 60)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            [interrupted] = await sync.open_runs(first)
            assert interrupted.chunks_done >= 3 and interrupted.chunks_left > 0 and not interrupted.held

        async with engine(clean_db, emu) as sync:
            summaries = await sync.process_connected("all", concurrency=4)
            assert sorted(summaries) == sorted(emu.connected_account_ids)
            assert summaries[first]["customers"].run_id == interrupted.run_id  # resumed, not started over
            assert all(r.status == "complete" and r.errors == 0 for s in summaries.values() for r in s.values())
            assert await sync.open_runs(first) == []

        runs = _rows(clean_db, "SELECT account_id, count(*) AS n, bool_and(closed_at IS NOT NULL) AS closed "
                               "FROM stripe._sync_runs GROUP BY 1")
        assert {r["account_id"]: r["n"] for r in runs} == {account: 1 for account in emu.connected_account_ids}
        assert all(r["closed"] for r in runs)
        for account in emu.connected_account_ids:
            _assert_account_copied(clean_db, emu, account)
        assert _ids(clean_db, "customers", emu.account_id) == set()  # the platform's own data: not asked for
        # Every chunk of the accounts not interrupted was claimed exactly once.
        attempts = _rows(clean_db, "SELECT r.account_id, max(c.attempts) AS most FROM stripe._sync_obj_runs c "
                                   "JOIN stripe._sync_runs r ON r.id = c.run_id GROUP BY 1")
        assert {r["account_id"]: r["most"] for r in attempts if r["account_id"] in others} == dict.fromkeys(others, 1)


async def test_a_joining_worker_takes_any_accounts_chunks_and_none_is_fetched_twice(clean_db: str) -> None:
    with _emulator(4) as emu:
        async with engine(clean_db, emu) as opener, engine(clean_db, emu) as joiner:
            work = asyncio.create_task(opener.process_connected("all", concurrency=1))
            while len(_rows(clean_db, "SELECT id FROM stripe._sync_runs WHERE closed_at IS NULL")) < 4:
                assert not work.done(), "the backfill ended before every account's run was open"
                await asyncio.sleep(0.02)
            joined = await joiner.process_connected(join=True, concurrency=4)
            opened = await work
        assert sorted(joined) == sorted(opened) == sorted(emu.connected_account_ids)
        chunks = _rows(clean_db, "SELECT attempts, status, worker_id FROM stripe._sync_obj_runs")
        assert {c["status"] for c in chunks} == {"complete"}
        assert [c for c in chunks if c["attempts"] != 1] == []
        for account in emu.connected_account_ids:
            _assert_account_copied(clean_db, emu, account)
        async with engine(clean_db, emu) as sync:
            with pytest.raises(NotAConnectedAccount):
                await sync.process_connected(accounts=[emu.account_id])
            # An account Stripe does not know is reported, and the others are synced all the same.
            first = emu.connected_account_ids[0]
            summaries = await sync.process_connected("customers", accounts=["acct_1NotConnectedAtAll", first])
            [refused] = summaries["acct_1NotConnectedAtAll"].values()
            assert refused.status == "error" and "No such account" in refused.error_messages[0]
            assert summaries[first]["customers"].status == "complete"


async def test_connect_webhooks_are_stored_under_their_account(clean_db: str) -> None:
    with StripeEmulator(seed=22, customers=3, connected_accounts=2, connected_customers=3,
                        webhook_retry_base_delay=0.05, webhook_retry_max_delay=0.25) as emu:
        first, second = emu.connected_account_ids
        async with engine(clean_db, emu) as sync:
            assert {a["id"] for a in await sync.list_connected_accounts()} == {first, second}
            listener = sync.listener(port=0, manage_webhook=True, catch_up=False)
            state = await listener.start()
            try:
                assert state.webhook_id and state.connect_webhook_id
                hooks = {w["id"]: w for w in await sync.list_managed_webhooks()}
                assert hooks[state.connect_webhook_id]["connect"] and not hooks[state.webhook_id]["connect"]
                made = {}
                for account in (first, second, None):
                    made[account] = await asyncio.to_thread(
                        emu.create, "customers", {"email": f"{account}@example.com"}, account)
                assert await asyncio.to_thread(emu.wait_for_deliveries, 20)
                for account, customer in made.items():
                    owner = account or emu.account_id
                    stored = _rows(clean_db, "SELECT _account_id FROM stripe.customers WHERE id = %s",
                                   (customer["id"],))
                    assert stored == [{"_account_id": owner}], account
                    logged = _rows(clean_db, "SELECT account_id FROM stripe._events WHERE object_id = %s",
                                   (customer["id"],))
                    assert logged == [{"account_id": owner}], account
                rows = {row.webhook_id: row for row in await status.managed_webhook_rows(sync.database)}
                assert rows[state.connect_webhook_id].connect
                assert rows[state.connect_webhook_id].event_count == 2  # the two connected accounts' events
                assert rows[state.webhook_id].event_count == 1
            finally:
                await listener.stop()


async def test_deleting_the_platforms_data_re_registers_both_of_the_listeners_webhooks(clean_db: str) -> None:
    """The deletion removes the platform's managed webhooks from Stripe, its Connect endpoint too: the
    running listener registers both again, says so, and the connected accounts' events arrive again."""
    with StripeEmulator(seed=23, customers=2, connected_accounts=1, connected_customers=2,
                        webhook_retry_base_delay=0.05, webhook_retry_max_delay=0.25) as emu:
        [connected] = emu.connected_account_ids
        async with engine(clean_db, emu) as sync:
            await sync.list_connected_accounts()  # the platform's connected account, known to the database
            listener = sync.listener(port=0, manage_webhook=True, catch_up=False, webhook_check_seconds=None)
            state = await listener.start()
            try:
                old, old_connect = state.webhook_id, state.connect_webhook_id
                assert old and old_connect
                report = await sync.dangerously_delete_synced_account_data(emu.account_id, dry_run=False)
                assert sorted(report.webhooks_removed_from_stripe) == sorted([old, old_connect])
                new, new_connect = state.webhook_id, state.connect_webhook_id
                assert state.running and new not in (None, old) and new_connect not in (None, old_connect)
                assert f"Connect webhook {old_connect} was deleted; re-registered {new_connect}" in state.notice
                assert f"managed webhook {old} was deleted; re-registered {new}" in state.notice
                endpoints = (await sync.stripe.get("/v1/webhook_endpoints"))["data"]
                assert sorted(e["id"] for e in endpoints) == sorted([new, new_connect])
                hooks = {w["id"]: w for w in await sync.list_managed_webhooks()}
                assert hooks[new_connect]["connect"] and not hooks[new]["connect"]
                customer = await asyncio.to_thread(emu.create, "customers", {"email": "late@example.com"}, connected)
                assert await asyncio.to_thread(emu.wait_for_deliveries, 20)
                assert _rows(clean_db, "SELECT _account_id FROM stripe.customers WHERE id = %s",
                             (customer["id"],)) == [{"_account_id": connected}]
            finally:
                await listener.stop()


async def test_deleting_one_connected_account_leaves_the_others(clean_db: str) -> None:
    with _emulator(2) as emu:
        gone, kept = emu.connected_account_ids
        async with engine(clean_db, emu) as sync:
            await sync.process_until_done("all")  # the platform's own account
            await sync.process_connected("all")
            before = await status.account_row_counts(sync.database)
            assert before[gone] > 0 and before[kept] > 0 and before[emu.account_id] > 0
            preview = await sync.dangerously_delete_synced_account_data(gone, dry_run=True)
            assert preview.total_rows == before[gone] + sum(
                preview.deleted_record_counts[t] for t in ("_sync_runs", "_events", "_dead_letters",
                                                           "_managed_webhooks", "accounts"))
            report = await sync.dangerously_delete_synced_account_data(gone, dry_run=False)
            assert report.deleted_record_counts == preview.deleted_record_counts
            after = await status.account_row_counts(sync.database)
            assert gone not in after
            assert after[kept] == before[kept] and after[emu.account_id] == before[emu.account_id]
        _assert_account_copied(clean_db, emu, kept)
        assert [r["account_id"] for r in _rows(clean_db, "SELECT account_id FROM stripe._sync_runs ORDER BY 1")] \
            == sorted([kept, emu.account_id])
        assert _rows(clean_db, "SELECT id FROM stripe.accounts WHERE id = %s", (gone,)) == []


async def test_requests_under_an_accounts_header_draw_on_that_accounts_budget(clean_db: str) -> None:
    with StripeEmulator(seed=23, customers=2, connected_accounts=1, connected_customers=2,
                        start=START, end=END) as emu:
        [connected] = emu.connected_account_ids
        async with engine(clean_db, emu, max_requests_per_second=1000) as sync:
            own = await sync.own_account_id()
            await sync.stripe.get("/v1/customers", {"limit": 1}, account=connected)
            await sync.stripe.get("/v1/customers", {"limit": 1})
            assert sync.stripe.budget_for(connected) is not sync.stripe.budget_for(None)
            assert sync.stripe.budget_for(connected).granted == 1
        scopes = {r["scope"] for r in _rows(clean_db, "SELECT DISTINCT scope FROM stripe._request_budget")}
        assert {f"{connected} test", f"{own} test"} <= scopes


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stripe_sync_tui.cli", *args], capture_output=True, text=True,
                          timeout=180, stdin=subprocess.DEVNULL, env={**os.environ, "STRIPE_SYNC_CONFIG": "/nonexistent"})


def test_headless_backfill_of_one_connected_account_and_accounts_with_row_counts(clean_db: str) -> None:
    with _emulator(2) as emu:
        first, second = emu.connected_account_ids
        settings = ["--database-url", clean_db, "--stripe-key", emu.secret_key, "--stripe-api-base", emu.api_base]
        one = _cli("--headless", "--json", "backfill", "customers", "--account", first, *settings)
        assert one.returncode == 0, one.stderr
        [done] = [json.loads(line) for line in one.stdout.splitlines() if '"backfill_account"' in line]
        assert done["account"] == first and done["stored"] == len(_truth(emu, "customers", first))
        assert _ids(clean_db, "customers", second) == set()

        listed = _cli("--headless", "--json", "accounts", *settings)
        assert listed.returncode == 0, listed.stderr
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert [r["id"] for r in rows] == [emu.account_id, *sorted([first, second])]
        assert [r["connected"] for r in rows] == [False, True, True]
        stored = {first: sum(len(_ids(clean_db, table, first)) for table in REGISTRY if table != "accounts")}
        assert stored[first] >= len(_truth(emu, "customers", first)) > 0
        assert {r["id"]: r["rows"] for r in rows} == {emu.account_id: 0, first: stored[first], second: 0}

        bad = _cli("--headless", "backfill", "customers", "--account", "cus_123", *settings)
        assert bad.returncode == 2 and "acct_" in bad.stderr



def test_the_emulator_limits_each_account_apart() -> None:
    import stripe

    # One token a second, and the buckets' clock stands still: each account has exactly one request.
    with StripeEmulator(seed=24, customers=2, connected_accounts=1, connected_customers=2, rate_limit=1,
                        rate_limit_clock=StepClock(), start=START, end=END) as emu:
        [connected] = emu.connected_account_ids
        client = stripe.StripeClient(emu.secret_key, base_addresses={"api": emu.api_base}, max_network_retries=0)
        assert client.v1.customers.list().data
        with pytest.raises(stripe.RateLimitError):  # the platform's token is spent
            client.v1.customers.list()
        # The connected account's requests count against its own limit, not the platform's.
        assert client.v1.customers.list(options={"stripe_account": connected}).data
        with pytest.raises(stripe.RateLimitError):
            client.v1.customers.list(options={"stripe_account": connected})


async def test_catch_up_covers_a_backfilled_connected_account_none_of_whose_events_was_logged(clean_db: str) -> None:
    from webhook_support import mismatches

    with _emulator(1) as emu:
        [connected] = emu.connected_account_ids
        async with engine(clean_db, emu) as sync:
            await sync.process_until_done("customers")  # the key's own account: catch-up starts there too
            await sync.process_connected("all")
            missed = await asyncio.to_thread(emu.mutate_random, 8, connected)  # while no listener ran
            assert missed and {event.get("account") for event in missed} == {connected}
            listener = sync.listener(port=0, manage_webhook=False)
            state = await listener.start()
            await listener.stop()
            assert state.catch_up.state == "done", state.catch_up.message
            assert state.catch_up.applied == len(missed)
            assert await mismatches(sync, emu, missed, account=connected) == []
