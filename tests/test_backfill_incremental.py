"""A later run is incremental: it lists from the last complete run's high-water mark and applies
/v1/events since, so updates to old objects arrive too; a base older than the events' retention
means a full pass."""

from __future__ import annotations

import psycopg
from backfill_support import assert_same_ids, chunk_rows, engine, list_requests, run_rows, stored_rows

from stripe_sync_core.backfill import EVENTS_RESULT
from stripe_sync_core.runs import EVENTS_CHUNK
from stripe_sync_emulator import StripeEmulator

TABLES = ["customers", "subscriptions", "subscription_items", "tax_ids", "invoices"]


async def test_a_second_run_picks_up_an_updated_old_object_through_events(clean_db):
    with StripeEmulator(seed=60, customers=150, start="2024-01-01", end="2025-01-01") as emu:
        emu.mutate_random(5)  # events before the first run: its cursor is the newest of them
        async with engine(clean_db, emu) as sync:
            await sync.process_until_done("all")
            seen = len(emu.events())
            oldest = emu.objects("customers")[-1]
            gone = emu.objects("customers")[-2]
            api = sync.stripe
            await api.post(f"/v1/customers/{oldest['id']}", {"name": "Renamed Long Ago"})
            created = await api.post("/v1/customers", {"email": "new@example.com"})
            await api.delete(f"/v1/customers/{gone['id']}")
            await api.post(f"/v1/customers/{oldest['id']}/tax_ids", {"type": "eu_vat", "value": "DE123456789"})
            emu.reset_stats()
            summary = await sync.process_until_done("all")
        first, second = run_rows(clean_db)
        assert second["params"]["mode"] == "incremental" and second["params"]["base_run"] == first["id"]
        assert first["params"]["events_cursor_id"] == emu.events()[seen - 1]["id"]
        assert summary[EVENTS_RESULT].stored == len(emu.events()) - seen >= 4  # exactly the new ones
        assert EVENTS_CHUNK not in summary  # the internal chunk's name is not an object of the result
        assert second["status"] == "complete"
        customers = stored_rows(clean_db, "customers")
        assert customers[oldest["id"]]["name"] == "Renamed Long Ago"
        assert created["id"] in customers
        assert customers[gone["id"]].get("deleted") is True  # flagged, fields kept
        assert customers[gone["id"]]["email"] == gone["email"]
        assert_same_ids(clean_db, emu, TABLES)
        # The lists start at the high-water mark: one short page per type instead of the whole history.
        assert list_requests(emu, "GET /v1/customers") == 1
        assert list_requests(emu, "GET /v1/invoices") == 1
        bounds = {c["object"]: c["created_gte"] for c in chunk_rows(clean_db, second["id"])}
        assert bounds["customers"] == first["params"]["hwm"]["customers"]


async def test_a_base_older_than_the_event_retention_means_a_full_pass(clean_db):
    with StripeEmulator(seed=61, customers=30, start="2024-01-01", end="2025-01-01") as emu:
        async with engine(clean_db, emu) as sync:
            await sync.process_until_done("customers")
            with psycopg.connect(clean_db, autocommit=True) as conn:
                conn.execute("UPDATE stripe._sync_runs SET started_at = now() - interval '31 days'")
            await sync.process_until_done("customers")
            await sync.process_until_done("customers", full=True)
        first, second, third = run_rows(clean_db)
        assert second["params"]["mode"] == "full" and "base_run" not in second["params"]
        assert third["params"]["mode"] == "full"
        assert not [c for c in chunk_rows(clean_db) if c["object"] == EVENTS_CHUNK]
        assert_same_ids(clean_db, emu, ["customers"])


async def test_a_range_backfill_is_never_the_base_of_an_incremental_run(clean_db):
    with StripeEmulator(seed=62, customers=30, start="2024-01-01", end="2025-01-01") as emu:
        objects = emu.objects("customers")
        middle = objects[len(objects) // 2]["created"]
        async with engine(clean_db, emu) as sync:
            part = await sync.process_until_done("customers", created_gte=middle)
            rest = await sync.process_until_done("customers")
        assert part["customers"].stored == sum(1 for o in objects if o["created"] >= middle)
        assert rest["customers"].stored == 30
        assert [r["params"]["mode"] for r in run_rows(clean_db)] == ["range", "full"]


async def test_incremental_runs_on_a_realistic_event_history(clean_db):
    # Data up to today: /v1/events already holds the last 30 days of it, as Stripe would.
    with StripeEmulator(seed=62, customers=60) as emu:
        history = emu.events()
        assert history and {"customer.created", "invoice.created"} <= {e["type"] for e in history}
        async with engine(clean_db, emu) as sync:
            await sync.process_until_done("all")
            emu.clock.advance(2)
            changed = emu.mutate_random(6)
            summary = await sync.process_until_done("all")
        first, second = run_rows(clean_db)
        assert first["params"]["events_cursor_id"] == history[-1]["id"]  # the history's newest event
        assert second["params"]["mode"] == "incremental"
        # Exactly the events after the first run: none of the history is applied twice.
        assert summary[EVENTS_RESULT].stored == len(emu.events()) - len(history) == len(changed)
        assert_same_ids(clean_db, emu, TABLES)
