"""Faults on the way: 429 storms and 5xx bursts are retried until the tables are complete; a chunk that
exhausts its retries is marked error with the reason while the rest of the run completes."""

from __future__ import annotations

import asyncio

from backfill_support import FaultProxy, assert_same_ids, chunk_rows, engine, run_rows

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
