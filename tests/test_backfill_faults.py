"""Faults on the way: 429 storms and 5xx bursts are retried until the tables are complete; a chunk that
exhausts its retries is marked error with the reason while the rest of the run completes."""

from __future__ import annotations

import asyncio
import logging

import psycopg
from backfill_support import FaultProxy, assert_same_ids, chunk_rows, engine, run_rows, stored_rows
from psycopg.types.json import Jsonb

from stripe_sync_emulator import StripeEmulator

TABLES = ["customers", "tax_ids", "payment_methods", "subscriptions", "subscription_items", "invoices",
          "charges", "checkout_sessions", "checkout_session_line_items"]


async def test_a_429_storm_ends_with_complete_tables(clean_db):
    with StripeEmulator(seed=40, customers=80, start="2024-01-01", end="2025-01-01") as emu:
        async with FaultProxy(emu.api_base, rate_limited=0.3) as proxy:
            async with engine(clean_db, emu, api_base=proxy.url, max_retries=12) as sync:
                summary = await sync.process_until_done("all", concurrency=6)
                stats = sync.stripe.stats
        assert 0.22 < proxy.share_rate_limited < 0.38
        assert stats.rate_limited == proxy.answered[429] and stats.retries >= stats.rate_limited
        assert all(s.errors == 0 for s in summary.values())
        assert_same_ids(clean_db, emu, TABLES)
        assert run_rows(clean_db)[0]["status"] == "complete"


async def test_5xx_bursts_end_with_complete_tables(clean_db):
    with StripeEmulator(seed=41, customers=40, start="2024-01-01", end="2025-01-01", latency_ms=1) as emu:
        async def bursts() -> None:
            while True:
                emu.set_error_rate(0.7)
                await asyncio.sleep(0.05)
                emu.set_error_rate(0.0)
                await asyncio.sleep(0.05)

        storm = asyncio.create_task(bursts())
        try:
            async with engine(clean_db, emu, max_retries=12, max_retry_delay_ms=40) as sync:
                summary = await sync.process_until_done("all", concurrency=6)
                server_errors = sync.stripe.stats.server_errors
        finally:
            storm.cancel()
            emu.set_error_rate(0.0)
        assert server_errors > 10 and emu.stats()["injected_errors"] == server_errors
        assert all(s.errors == 0 for s in summary.values())
        assert_same_ids(clean_db, emu, TABLES)


async def test_a_chunk_that_exhausts_its_retries_is_marked_error_and_the_rest_completes(clean_db):
    with StripeEmulator(seed=42, customers=30, start="2024-01-01", end="2025-01-01") as emu:
        def invoices(method: str, path: str, query: str) -> bool:
            return path == "/v1/invoices"

        async with FaultProxy(emu.api_base, fail=invoices) as proxy:
            async with engine(clean_db, emu, api_base=proxy.url, max_retries=3) as sync:
                summary = await sync.process_until_done("all")
        assert proxy.answered[500] == 4  # the first try and three retries
        assert summary["invoices"].status == "error" and summary["invoices"].errors == 1
        assert "500" in summary["invoices"].error_messages[0]
        assert all(s.status == "complete" for name, s in summary.items() if name != "invoices")
        assert_same_ids(clean_db, emu, [t for t in TABLES if t != "invoices"])
        [failed] = [c for c in chunk_rows(clean_db) if c["status"] == "error"]
        assert failed["object"] == "invoices" and "/v1/invoices" in failed["error_message"]
        [run] = run_rows(clean_db)
        assert run["status"] == "error" and run["closed_at"] is not None
        assert run["error_message"].startswith("1 chunk(s) failed; first: invoices:")
        assert emu.secret_key[8:-4] not in run["error_message"]


async def test_one_request_answered_429_many_times_in_a_row_does_not_fail_its_chunk(clean_db):
    """A 429 is Stripe asking to slow down: a backfill request retries it past max_retries (a 30% storm
    gives one request six 429s in a row about once in 1,400, which failed its chunk and the run)."""
    with StripeEmulator(seed=45, customers=20, start="2024-01-01", end="2025-01-01") as emu:
        victim = emu.objects("customers")[0]["id"]
        answered = 0

        def ten_times(method: str, path: str, query: str) -> bool:
            nonlocal answered
            if path == f"/v1/customers/{victim}/payment_methods" and answered < 10:
                answered += 1
                return True
            return False

        async with FaultProxy(emu.api_base, limited=ten_times) as proxy:
            async with engine(clean_db, emu, api_base=proxy.url, max_retries=5) as sync:
                summary = await sync.process_until_done("all")
        assert answered == 10 and proxy.answered[429] == 10
        assert all(s.errors == 0 for s in summary.values())
        assert run_rows(clean_db)[0]["status"] == "complete"
        assert_same_ids(clean_db, emu, ["customers", "payment_methods"])


async def test_the_emulators_own_rate_limiter_answering_429_ends_with_complete_tables(clean_db):
    """No request budget on our side (0 = unlimited) against the emulator's 30/s limiter: a storm of
    429 with Retry-After, each honoured, and nothing missing."""
    with StripeEmulator(seed=43, customers=25, start="2024-01-01", end="2025-01-01", rate_limit=30) as emu:
        async with engine(clean_db, emu, max_retries=8, max_retry_delay_ms=2000) as sync:  # Retry-After: 1 s
            summary = await sync.process_until_done("all", concurrency=8)
            rate_limited = sync.stripe.stats.rate_limited
        stats = emu.stats()
        assert stats["rate_limited"] == rate_limited > 0
        assert all(s.errors == 0 for s in summary.values())
        assert_same_ids(clean_db, emu, TABLES)


async def test_a_page_that_loses_a_deadlock_is_written_again(clean_db, caplog):
    """Another writer holds one of the page's rows and then wants one the page holds (in CI a charges
    chunk, writing the refunds its charges embed, did this to a refunds chunk): PostgreSQL aborts the
    page's transaction, and the page is written again instead of failing the chunk."""
    caplog.set_level(logging.INFO, logger="stripe_sync_core")
    with StripeEmulator(seed=44, customers=12, start="2024-01-01", end="2025-01-01") as emu:
        refunds = sorted(r["id"] for r in emu.objects("refunds"))
        assert 2 <= len(refunds) < 100  # one page, one transaction
        first, last = refunds[0], refunds[-1]
        placeholder = "INSERT INTO stripe.refunds (_raw_data, _account_id, _last_synced_at) " \
                      "VALUES (%s, %s, 'epoch') ON CONFLICT (id) DO NOTHING"
        other = "acct_other"  # the blocker's rows name another account: no lock on the engine's account row
        with psycopg.connect(clean_db, autocommit=True) as setup:
            setup.execute("INSERT INTO stripe.accounts (_raw_data, _account_id) VALUES (%s, %s)",
                          (Jsonb({"id": other, "object": "account"}), other))
        blocker = await psycopg.AsyncConnection.connect(clean_db)
        try:
            await blocker.execute(placeholder, (Jsonb({"id": last, "object": "refund"}), other))
            async with engine(clean_db, emu) as sync:
                backfill = asyncio.create_task(sync.process_until_done("refunds", concurrency=1))
                # The page holds `first` and waits for `last`; then the blocker asks for `first`.
                while not await waiting_on_a_lock(clean_db):
                    assert not backfill.done(), backfill.result()
                    await asyncio.sleep(0.02)
                await blocker.execute(placeholder, (Jsonb({"id": first, "object": "refund"}), other))
                await blocker.commit()
                summary = await backfill
        finally:
            await blocker.close()
        assert summary["refunds"].status == "complete" and summary["refunds"].errors == 0
        assert "page written again after DeadlockDetected" in caplog.text
        stored = stored_rows(clean_db, "refunds")
        assert sorted(stored) == refunds
        assert stored[first]["amount"] == next(r for r in emu.objects("refunds") if r["id"] == first)["amount"]


async def waiting_on_a_lock(url: str) -> bool:
    """Whether a session of this database waits for a lock."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as observer:
        cursor = await observer.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                        "AND wait_event_type = 'Lock'")
        row = await cursor.fetchone()
        return bool(row and row[0])
