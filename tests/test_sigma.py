"""Stripe Sigma ingestion against the emulator's query runs (real HTTP, real PostgreSQL): what lands is
exactly what the emulator's reporting tables hold; failures, skips and test keys are reported as such."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from backfill_support import FAST, engine_config
from stripe_sync_core import StripeSync
from stripe_sync_core.backfill import BackfillOptions
from stripe_sync_core.sigma import sigma_table
from stripe_sync_core.sigma.client import PollOptions

SIGMA_FAST = BackfillOptions(idle_poll_seconds=0.05, heartbeat_seconds=0.5, lease_seconds=30.0,
                             sigma_poll=PollOptions(first_delay=0.01, factor=1.5, max_delay=0.05, timeout=30))
TABLES = ["customers", "charges", "invoices", "invoice_line_items", "subscription_item_change_events",
          "price_tiers", "balance_transactions"]


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


async def test_full_sigma_backfill_lands_what_the_reporting_tables_hold(clean_db, emu):
    async with sigma_engine(clean_db, emu) as sync:
        summary = await sync.process_until_done([f"sigma.{t}" for t in TABLES])
    for table in TABLES:
        assert summary[f"sigma.{table}"].status == "complete", summary[f"sigma.{table}"]
        assert_lands_exactly(clean_db, emu, table)
    assert sum(len(emu.sigma_rows(t)) > 40 for t in TABLES) >= 2, "some table needs several pages"
