"""Typed columns are filled by the engine's statements (migration 0010): every write path keeps each
typed column equal to its expression over `_raw_data`, as the generated columns did."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from webhook_support import event

from stripe_sync_core import StripeSync
from stripe_sync_core.registry import REGISTRY
from stripe_sync_core.typed_columns import LOAD_SQL, typed_columns_from

FIXTURES = json.loads((Path(__file__).parent / "data" / "stripe_fixtures.json").read_text())["resources"]


def _mismatches(url: str) -> tuple[dict[str, int], int]:
    """Rows whose typed columns differ from their expressions, per table; and how many rows were checked."""
    wrong: dict[str, int] = {}
    checked = 0
    with psycopg.connect(url) as conn:
        for table, pairs in typed_columns_from(conn.execute(LOAD_SQL)).by_table.items():
            differs = " OR ".join(f'"{column}" IS DISTINCT FROM {expression}' for column, expression in pairs)
            total, bad = conn.execute(
                f"SELECT count(*), count(*) FILTER (WHERE {differs}) FROM stripe.{table}").fetchone()
            checked += total
            if bad:
                wrong[table] = bad
    return wrong, checked


def test_only_id_and_deleted_stay_generated_outside_accounts(clean_db):
    with psycopg.connect(clean_db) as conn:
        generated = {(table, column) for table, column in conn.execute(
            "SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "WHERE c.relnamespace = 'stripe'::regnamespace AND a.attgenerated = 's'")}
        recorded = {table for table, _, _ in conn.execute(LOAD_SQL)}
    assert {column for table, column in generated if table != "accounts"} == {"id", "deleted"}
    assert ("accounts", "email") in generated
    assert recorded == set(REGISTRY) - {"accounts"}


async def test_every_write_path_keeps_typed_columns_equal_to_their_expressions(engine: StripeSync, clean_db):
    now = int(time.time())
    samples = {kind: json.loads(json.dumps(FIXTURES[kind])) for kind in
               ("customer", "invoice", "subscription", "charge", "product", "payment_intent", "dispute")}
    events = {"customer": "customer.updated", "invoice": "invoice.updated",
              "subscription": "customer.subscription.updated", "charge": "charge.updated",
              "product": "product.updated", "payment_intent": "payment_intent.succeeded",
              "dispute": "charge.dispute.updated"}
    # One batch of several tables and their embedded children (the webhook writer's statement).
    outcomes = await asyncio.gather(*(engine.process_event(event(events[kind], obj, now - 10))
                                      for kind, obj in samples.items()))
    assert {o.outcome for o in outcomes} == {"stored"}
    # A newer state replaces every typed column; a deletion merges and keeps them right.
    customer = {**samples["customer"], "email": "changed@example.com", "balance": 42, "delinquent": True}
    assert (await engine.process_event(event("customer.updated", customer, now - 5))).outcome == "stored"
    assert (await engine.process_event(event("product.deleted", {"id": samples["product"]["id"],
                                                                 "object": "product", "deleted": True},
                                             now - 4))).outcome == "deleted"
    # The careful path (a price is always fetched, for the fields Stripe sends only when asked).
    price = (await engine.context.stripe.get("/v1/prices", {"limit": 1}))["data"][0]
    assert (await engine.process_event(event("price.updated", price, now - 3))).outcome == "refetched"
    # A flagged deletion through the store (what a backfill records for a vanished object).
    ctx = engine.context
    invoice = samples["invoice"]
    await ctx.store.store_deleted(REGISTRY["invoices"], [invoice], await engine.own_account_id(),
                                  datetime.now(UTC))

    wrong, checked = _mismatches(clean_db)
    assert wrong == {}
    assert checked >= 8  # the seven objects and the price, at least
    row = await ctx.database.fetch_one("SELECT email, balance, delinquent FROM stripe.customers WHERE id = %s",
                                       (customer["id"],))
    assert row == {"email": "changed@example.com", "balance": 42, "delinquent": True}
    flagged = await ctx.database.fetch_one("SELECT deleted, name FROM stripe.products WHERE id = %s",
                                           (samples["product"]["id"],))
    assert flagged == {"deleted": True, "name": samples["product"]["name"]}
