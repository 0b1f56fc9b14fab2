"""The request budget: one per Stripe account across processes (in PostgreSQL), and an interactive lane
that bulk work cannot starve. Every test counts requests (the emulator's own counters and rate limiter,
or the order a recording proxy saw them in); none times anything."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from backfill_support import RecordingProxy, engine

from stripe_sync_core import StripeSync
from stripe_sync_core.backfill import BackfillOptions
from stripe_sync_core.migrate import downgrade_migrations, run_migrations
from stripe_sync_core.request_budget import RequestBudget, SharedRequestBudget, account_scope, lane
from stripe_sync_core.stripe_api import StripeApi
from stripe_sync_emulator import StripeEmulator

RATE = 25  # Stripe's test-mode limit: the endpoint limit (25/s too) adds nothing, so one bucket decides


@pytest.fixture
def limited_emulator() -> Iterator[StripeEmulator]:
    """The emulator limiting the key to RATE requests/s (one bucket with a second's burst): any excess
    over what one budget allows shows up as 429 answers in its counters."""
    with StripeEmulator(seed=3, customers=5, rate_limit=RATE) as emu:
        yield emu


async def _calls(sync: StripeSync, count: int, which: str) -> None:
    async def one(i: int) -> None:
        with lane("bulk" if which == "bulk" or (which == "mixed" and i % 2) else "interactive"):
            await sync.stripe.get("/v1/customers", {"limit": 1})

    await asyncio.gather(*(one(i) for i in range(count)))


async def test_two_engines_of_one_account_never_exceed_its_budget_together(clean_db, limited_emulator):
    emu = limited_emulator
    async with engine(clean_db, emu, max_requests_per_second=RATE, max_retries=0) as first, \
            engine(clean_db, emu, max_requests_per_second=RATE, max_retries=0) as second:
        assert isinstance(first.stripe.budget, SharedRequestBudget)
        # Both learn the account (as any backfill or the console does): one budget for the account.
        await first.own_account_id()
        await second.own_account_id()
        assert first.stripe.budget.scope == second.stripe.budget.scope
        emu.reset_stats()
        await asyncio.gather(_calls(first, 3 * RATE, "bulk"), _calls(second, 3 * RATE, "mixed"))
    stats = emu.stats()
    assert stats["requests"] == 6 * RATE
    assert stats["rate_limited"] == 0  # 150 requests at twice what one budget allows would be ~75 answered 429


async def test_two_engines_keep_stripes_limit_per_endpoint_together(clean_db):
    """At the live preset (100/s, 25/s per endpoint) both engines calling one endpoint share its 25/s."""
    with StripeEmulator(seed=3, customers=5, rate_limit="live") as emu:
        async with engine(clean_db, emu, max_requests_per_second=100, max_retries=0) as first, \
                engine(clean_db, emu, max_requests_per_second=100, max_retries=0) as second:
            assert first.stripe.budget.endpoint_rate == 25
            await first.own_account_id()
            await second.own_account_id()
            emu.reset_stats()
            await asyncio.gather(_calls(first, 2 * RATE, "bulk"), _calls(second, 2 * RATE, "mixed"))
        stats = emu.stats()
    assert stats["requests"] == 4 * RATE and stats["rate_limited"] == 0


async def test_two_budgets_of_their_own_would_exceed_it(clean_db, limited_emulator):
    """The check above can fail: two clients pacing themselves alone (no database) go over the limit."""
    emu = limited_emulator
    async with engine(clean_db, emu, max_requests_per_second=RATE, max_retries=0) as first, \
            engine(clean_db, emu, max_requests_per_second=RATE, max_retries=0) as second:
        for sync in (first, second):
            sync.stripe.budget = RequestBudget(RATE)
        emu.reset_stats()
        await asyncio.gather(_calls(first, 3 * RATE, "bulk"), _calls(second, 3 * RATE, "bulk"),
                             return_exceptions=True)
    assert emu.stats()["rate_limited"] > 0


WEBHOOKS = "/v1/webhook_endpoints"
SLOW = BackfillOptions(idle_poll_seconds=0.05, heartbeat_seconds=0.5, lease_seconds=30.0, concurrency=8)


@pytest.mark.parametrize("where", ["same engine", "another engine", "a listener starting"])
async def test_a_webhook_is_created_ahead_of_a_saturating_backfill(clean_db, where):
    """The observed defect: with a budget-limited backfill running, creating a webhook waited behind every
    queued backfill request. Now it goes in the interactive lane: at most the requests already granted
    (one per bucket refill) reach Stripe between its start and its end."""
    with StripeEmulator(seed=5, customers=40) as emu:
        async with RecordingProxy(emu.api_base) as proxy, \
                engine(clean_db, emu, api_base=proxy.url, options=SLOW, max_requests_per_second=4) as backfilling, \
                engine(clean_db, emu, api_base=proxy.url, max_requests_per_second=4) as other:
            console = backfilling if where == "same engine" else other
            await console.own_account_id()
            backfill = asyncio.create_task(backfilling.process_until_done("all"))
            async with asyncio.timeout(60):  # a backfill that never reaches Stripe fails here, not at 300 s
                while sum(not p.startswith("GET /v1/account") for p in proxy.seen) < 6:  # bulk calls queue up
                    assert not backfill.done(), backfill.result()  # ended (or failed) before a queue formed
                    await asyncio.sleep(0.05)
            start = len(proxy.seen)
            if where == "a listener starting":  # its registration stayed "(none registered)" for 35 s+
                listener = console.listener(port=0, manage_webhook=True)
                state = await listener.start()  # registration, then the catch-up (both interactive)
                webhook_id = state.webhook_id
                await listener.stop()
            else:
                webhook_id = (await console.create_managed_webhook("https://example.test/hook")).id
            end = len(proxy.seen)
            still_running = not backfill.done()
            backfill.cancel()
            await asyncio.gather(backfill, return_exceptions=True)
    assert webhook_id and still_running
    during = proxy.seen[start:end]
    ours = [p for p in during if p.startswith((f"POST {WEBHOOKS}", f"GET {WEBHOOKS}", "GET /v1/events"))]
    bulk = [p for p in during if p not in ours]
    assert ours, during
    # Eight chunk workers wait for the budget at any time: in one queue, the webhook's calls would go after
    # all of them (8 bulk requests ahead of each). One granted just before may still be in flight, and one
    # bucket refill may go to bulk while the webhook's own database work runs.
    assert len(bulk) <= 2, during


# -- a process that dies (or hangs) while it holds the budget's row --------------------------------

HOLDER = """
import sys, time, psycopg
conn = psycopg.connect(sys.argv[1])
conn.execute("SELECT 1 FROM stripe._request_budget WHERE scope = %s AND bucket = '*' FOR UPDATE", (sys.argv[2],))
print("locked", flush=True)
time.sleep(600)
"""


def _hold_budget_row(url: str, scope: str) -> subprocess.Popen:
    """Another process holding the account's budget row in an open transaction (as if it died mid-grant
    in a transaction of its own)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url, scope], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def _waiting_on_a_lock(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        return bool(conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                 "AND datname = current_database()").fetchone()[0])


async def test_a_dead_process_holding_the_budget_blocks_nobody(clean_db, emulator):
    async with engine(clean_db, emulator, max_requests_per_second=RATE) as sync:
        account = await sync.own_account_id()
        await sync.stripe.get("/v1/customers", {"limit": 1})  # the account's budget row exists
        scope = account_scope(account, False)
        holder = _hold_budget_row(clean_db, scope)
        try:
            call = asyncio.create_task(sync.stripe.get("/v1/customers", {"limit": 1}))
            while not _waiting_on_a_lock(clean_db):  # our grant waits for the holder's row
                assert not call.done()
                await asyncio.sleep(0.02)
            os.kill(holder.pid, signal.SIGKILL)  # it dies: PostgreSQL ends its transaction
            await call
        finally:
            holder.kill()
            holder.wait()
        budget = sync.stripe.budget
        assert isinstance(budget, SharedRequestBudget)
        assert budget.fallback.granted == 0  # served by the shared budget, not by pacing alone
        with psycopg.connect(clean_db) as conn:
            assert conn.execute("SELECT count(*) FROM stripe._request_budget WHERE scope = %s",
                                (scope,)).fetchone()[0] >= 1


async def test_a_hung_process_holding_the_budget_delays_others_only_briefly(clean_db, emulator):
    """A holder that never lets go: the grant gives up at the function's lock timeout and this process
    paces itself alone for a while; its calls still go out."""
    async with engine(clean_db, emulator, max_requests_per_second=RATE) as sync:
        account = await sync.own_account_id()
        await sync.stripe.get("/v1/customers", {"limit": 1})  # the account's budget row exists
        holder = _hold_budget_row(clean_db, account_scope(account, False))
        try:
            await sync.stripe.get("/v1/customers", {"limit": 1})
            with lane("bulk"):
                await sync.stripe.get("/v1/customers", {"limit": 1})
        finally:
            holder.kill()
            holder.wait()
        budget = sync.stripe.budget
        assert isinstance(budget, SharedRequestBudget) and budget.fallback.granted == 2


async def test_a_schema_without_the_budget_table_paces_alone_and_says_why(clean_db, emulator, caplog):
    downgrade_migrations(clean_db, revision="0003")
    try:
        async with engine(clean_db, emulator, max_requests_per_second=RATE) as sync:
            await sync.stripe.get("/v1/customers", {"limit": 1})
            budget = sync.stripe.budget
            assert isinstance(budget, SharedRequestBudget) and budget.fallback.granted == 1
    finally:
        run_migrations(clean_db)
    assert "stripe-sync-tui --headless migrate" in caplog.text


async def test_a_client_without_a_database_paces_itself(emulator):
    api = StripeApi(engine_config_without_database(emulator))
    try:
        assert isinstance(api.budget, RequestBudget) and (api.budget.rate, api.budget.endpoint_rate) == (25, None)
        await api.get("/v1/customers", {"limit": 1})
    finally:
        await api.close()


def engine_config_without_database(emu: StripeEmulator):
    from stripe_sync_core import SyncConfig

    return SyncConfig(stripe_secret_key=emu.secret_key, stripe_api_base=emu.api_base)


# -- the in-process budget's lanes -----------------------------------------------------------------

async def test_in_one_process_interactive_calls_pass_waiting_bulk_calls(emulator):
    """Without a database the same rule holds: an interactive call never queues behind bulk waiters."""
    async with RecordingProxy(emulator.api_base) as proxy:
        from stripe_sync_core import SyncConfig

        api = StripeApi(SyncConfig(stripe_secret_key=emulator.secret_key, stripe_api_base=proxy.url,
                                   max_requests_per_second=4))
        try:
            with lane("bulk"):
                bulk = [asyncio.create_task(api.get("/v1/customers", {"limit": 1})) for _ in range(10)]
            while not proxy.seen:
                await asyncio.sleep(0.02)
            await api.get("/v1/products", {"limit": 1})
            position = proxy.seen.index("GET /v1/products")
            for task in bulk:
                task.cancel()
            await asyncio.gather(*bulk, return_exceptions=True)
        finally:
            await api.close()
    assert position <= 3, proxy.seen  # the burst already granted, then the interactive call
