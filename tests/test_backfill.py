"""Backfill on the real PostgreSQL from the emulator over HTTP: completeness, chunking, children through
parents, concurrency, stepping, progress."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from backfill_support import (
    assert_same_ids,
    chunk_rows,
    emulator_objects,
    engine,
    list_requests,
    run_rows,
    stored_counts,
    stored_rows,
)

from stripe_sync_core.backfill import BackfillOptions, tables_for
from stripe_sync_core.chunking import DAY
from stripe_sync_core.progress import RecordingSink
from stripe_sync_core.registry import REGISTRY
from stripe_sync_emulator import StripeEmulator

START, END = "2024-01-01", "2025-01-01"


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


async def test_backfill_of_everything_equals_the_emulator(clean_db):
    with StripeEmulator(seed=3, customers=60, start=START, end=END) as emu:
        sink = RecordingSink()
        async with engine(clean_db, emu, progress=sink) as sync:
            summary = await sync.process_until_done("all", concurrency=6)
        tables = tables_for("all")
        assert_same_ids(clean_db, emu, tables)
        for table in tables:
            assert summary[table].stored == len(emulator_objects(emu, table)), table
            assert summary[table].errors == 0 and summary[table].status == "complete"
        customers = {c["id"]: c for c in emu.objects("customers")}
        assert stored_rows(clean_db, "customers") == customers  # stored exactly as Stripe lists them
        [run] = run_rows(clean_db)
        assert run["status"] == "complete" and run["closed_at"] is not None
        assert run["params"]["mode"] == "full" and run["params"]["hwm"]["customers"] == max(
            c["created"] for c in customers.values())
        # Invoice items tell their creation as `date`, which Stripe's `created` filter applies to.
        assert run["params"]["hwm"]["invoice_items"] == max(i["date"] for i in emu.objects("invoiceitems"))
        names = sink.names()
        assert names[0] == "run_started" and names[-1] == "run_done"
        estimates = {args[1]: args[2] for name, args in sink.calls if name == "objects_estimated"}
        assert estimates["customers"] == 60  # one page: exact
        assert abs(estimates["invoices"] - len(emu.objects("invoices"))) <= len(emu.objects("invoices")) / 4
        assert names.count("chunk_started") == names.count("chunk_done") == len(chunk_rows(clean_db))


async def test_children_come_through_their_parents_list_without_a_request_per_parent(clean_db):
    children = ["tax_ids", "checkout_session_line_items", "subscription_items"]
    with StripeEmulator(seed=4, customers=80, start=START, end=END) as emu:
        async with engine(clean_db, emu) as sync:
            summary = await sync.process_until_done("all")
        assert_same_ids(clean_db, emu, children + ["payment_methods", "active_entitlements"])
        for table in children:
            assert summary[table].stored == len(emulator_objects(emu, table))
        # Expanded or embedded lists: a request only to complete a list Stripe truncated at 10 items.
        assert list_requests(emu, "GET /v1/customers/{id}/tax_ids") == 0
        per_session = stored_counts(clean_db, "checkout_session_line_items", "checkout_session")
        long_sessions = sum(1 for n in per_session.values() if n > 10)
        assert long_sessions >= 1  # the generator makes one session with 12 items
        long_subscriptions = sum(1 for s in emu.objects("subscriptions") if s["items"]["has_more"])
        assert list_requests(emu, "GET /v1/subscription_items") == long_subscriptions
        # Payment methods and entitlements have no expansion: one list per customer.
        customers = len(emu.objects("customers"))
        assert list_requests(emu, "GET /v1/customers/{id}/payment_methods") == customers
        stored_sessions = stored_rows(clean_db, "checkout_session_line_items")
        assert all(row["object"] == "item" for row in stored_sessions.values())


async def test_a_child_type_alone_is_listed_through_its_parent(clean_db):
    with StripeEmulator(seed=5, customers=40, start=START, end=END) as emu:
        async with engine(clean_db, emu) as sync:
            summary = await sync.process_until_done("tax_id")
        assert list(summary) == ["tax_ids"]
        assert_same_ids(clean_db, emu, ["tax_ids"])
        assert list_requests(emu, "GET /v1/customers") == 1


async def test_dense_bursts_are_split_and_empty_stretches_cost_one_request(clean_db):
    with StripeEmulator(seed=6, customers=300, start="2024-06-01", end="2024-06-08") as emu:
        # A quiet year, then the burst of the generated week, then 250 customers in one second.
        emu.clock.freeze(ts("2025-06-01T12:00:00"))
        for i in range(250):
            emu.create("customers", {"email": f"burst{i}@example.com"})
        options = BackfillOptions(target_chunk_objects=100, max_split=8, idle_poll_seconds=0.05)
        async with engine(clean_db, emu, options=options) as sync:
            summary = await sync.process_until_done("customers", concurrency=4)
        assert_same_ids(clean_db, emu, ["customers"])
        chunks = chunk_rows(clean_db)
        assert summary["customers"].chunks == len(chunks) > 8
        assert sum(c["processed_count"] for c in chunks) == 550  # every object stored exactly once
        empty = [c for c in chunks if c["processed_count"] == 0]
        assert empty, "the empty year should have produced empty pieces"
        # Each chunk costs its full pages plus at most one short page: empty pieces one request each.
        pages = list_requests(emu, "GET /v1/customers")
        assert pages <= sum(-(-c["processed_count"] // 100) for c in chunks) + len(chunks)
        week = [c for c in chunks if c["processed_count"] and (c["created_gte"] or 0) < ts("2024-06-09T00:00:00")]
        assert len(week) >= 3  # the generated week was cut into pieces of about `target` objects


@pytest.mark.parametrize(("chunk", "span"), [("day", DAY), ("week", 7 * DAY), ("month", 31 * DAY),
                                             (10, 10 * DAY)])
async def test_fixed_chunks_are_calendar_windows(clean_db, chunk, span):
    with StripeEmulator(seed=7, customers=30, start="2024-01-10", end="2024-03-20") as emu:
        async with engine(clean_db, emu) as sync:
            summary = await sync.process_until_done("customers", chunk=chunk)
        assert_same_ids(clean_db, emu, ["customers"])
        chunks = chunk_rows(clean_db)
        assert summary["customers"].chunks == len(chunks) > 1
        assert chunks[-1]["created_gte"] is None and chunks[0]["created_lte"] is None  # open outer windows
        inner = [c for c in chunks if c["created_gte"] is not None and c["created_lte"] is not None]
        assert all(c["created_lte"] - c["created_gte"] < span for c in inner)
        bounds = sorted((c["created_gte"] or 0, c["created_lte"] or 2**62) for c in chunks)
        assert all(b[0] == a[1] + 1 for a, b in zip(bounds, bounds[1:], strict=False))  # no gap, no overlap
        assert sum(c["processed_count"] for c in chunks) == 30


async def test_fixed_chunks_of_invoice_items_follow_their_date(clean_db):
    with StripeEmulator(seed=7, customers=30, start="2024-01-10", end="2024-03-20") as emu:
        async with engine(clean_db, emu) as sync:
            summary = await sync.process_until_done("invoice_items", chunk="week")
        assert summary["invoice_items"].stored == len(emu.objects("invoiceitems"))
        assert summary["invoice_items"].chunks > 5


async def test_fixed_chunks_of_an_empty_type_cost_one_probe(clean_db):
    with StripeEmulator(seed=8, customers=20, start=START, end=END) as emu:
        async with engine(clean_db, emu) as sync:
            summary = await sync.process_until_done("early_fraud_warnings", chunk="day")
        assert summary["early_fraud_warnings"].stored == 0
        assert list_requests(emu, "GET /v1/radar/early_fraud_warnings") == 1
        assert [c["status"] for c in chunk_rows(clean_db)] == ["complete"]


async def test_chunks_of_all_objects_run_concurrently(clean_db):
    with StripeEmulator(seed=9, customers=40, start=START, end=END, latency_ms=15) as emu:
        sink = RecordingSink()
        async with engine(clean_db, emu, progress=sink) as sync:
            await sync.process_until_done("all", concurrency=8)
        running, peak = 0, 0
        for name, _ in sink.calls:
            running += {"chunk_started": 1, "chunk_done": -1}.get(name, 0)
            peak = max(peak, running)
        assert peak == 8
        assert_same_ids(clean_db, emu, ["customers", "invoices", "charges"])


async def test_process_next_steps_one_page_at_a_time(clean_db):
    with StripeEmulator(seed=10, customers=250, start=START, end=END) as emu:
        options = BackfillOptions(target_chunk_objects=10_000)  # one chunk: pages in order
        async with engine(clean_db, emu, options=options) as sync:
            steps = []
            while True:
                step = await sync.process_next("customers")
                steps.append(step)
                if step.done:
                    break
        assert [s.stored for s in steps] == [100, 100, 50]
        assert len({s.run_id for s in steps}) == 1 and steps[-1].status == "complete"
        assert_same_ids(clean_db, emu, ["customers"])
        assert run_rows(clean_db)[0]["status"] == "complete"


async def test_request_budget_keeps_stripe_from_answering_429(clean_db):
    """With the emulator enforcing Stripe's test-mode limits, the default budget (25/s) stays under them."""
    with StripeEmulator(seed=11, customers=25, start=START, end=END, rate_limit="test") as emu:
        async with engine(clean_db, emu, max_requests_per_second=None) as sync:
            assert sync.stripe.budget.rate == 25
            await sync.process_until_done("all", concurrency=8)
            requests = sync.stripe.stats.requests
        stats = emu.stats()
        assert stats["rate_limited"] <= max(1, requests // 100)
        assert_same_ids(clean_db, emu, ["customers", "invoices"])


def test_all_is_every_registry_type_but_connected_accounts():
    assert tables_for("all") == [t for t in REGISTRY if t != "accounts"]
    assert tables_for("checkout.session") == ["checkout_sessions"]


async def test_concurrent_runs_are_isolated_per_account(clean_db):
    with StripeEmulator(seed=12, customers=20, start=START, end=END, connected_accounts=1,
                        connected_customers=7) as emu:
        [connected] = emu.connected_account_ids
        async with engine(clean_db, emu) as sync:
            own, other = await asyncio.gather(sync.process_until_done("customers"),
                                              sync.process_until_done("customers", account_id=connected))
        assert own["customers"].stored == 20 and other["customers"].stored == 7
        assert {r["account_id"] for r in run_rows(clean_db)} == {emu.account_id, connected}
