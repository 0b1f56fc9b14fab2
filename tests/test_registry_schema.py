"""The registry and the schema agree, and every supported Stripe sample object round-trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from stripe_sync_core.database import Database, UpsertRow
from stripe_sync_core.registry import (
    EVENT_TYPES,
    REGISTRY,
    UnknownObjectType,
    object_type,
    object_type_for_id,
)

DATA_DIR = Path(__file__).parent / "data"

FIXTURES = json.loads((DATA_DIR / "stripe_fixtures.json").read_text())["resources"]
INTERNAL = {"_managed_webhooks", "_sync_runs", "_sync_obj_runs", "_events", "_migrations", "_request_budget", "_dead_letters"}
BOOKKEEPING = {"_raw_data", "id", "deleted", "_account_id", "_last_synced_at", "_updated_at"}


def _columns(url: str) -> dict[str, dict[str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'stripe'"
        ).fetchall()
    tables: dict[str, dict[str, str]] = {}
    for table, column, data_type in rows:
        tables.setdefault(table, {})[column] = data_type
    return tables


def test_each_registry_type_has_a_table_and_each_table_an_entry(clean_db):
    tables = set(_columns(clean_db)) - INTERNAL - {"sync_runs"}
    assert tables == set(REGISTRY)


def test_every_object_table_has_the_bookkeeping_columns(clean_db):
    for table, columns in _columns(clean_db).items():
        if table in REGISTRY:
            assert BOOKKEEPING <= set(columns), table
            assert columns["_raw_data"] == "jsonb"
            assert columns["_updated_at"] == "timestamp with time zone"


def test_registry_lookups():
    assert object_type_for_id("sub_sched_123").table == "subscription_schedules"
    assert object_type_for_id("sub_123").table == "subscriptions"
    assert object_type_for_id("cs_test_abc").table == "checkout_sessions"
    assert object_type("customer").table == "customers"
    assert object_type("checkout.session").table == "checkout_sessions"
    assert EVENT_TYPES["charge.dispute.created"].table == "disputes"
    with pytest.raises(UnknownObjectType, match="unknown object type 'widget'"):
        object_type("widget")
    with pytest.raises(UnknownObjectType, match="cannot tell"):
        object_type_for_id("zzz_123")


def test_every_prefix_and_event_type_belongs_to_one_type():
    prefixes = [p for t in REGISTRY.values() for p in t.id_prefixes]
    assert len(prefixes) == len(set(prefixes))
    events = [e for t in REGISTRY.values() for e in t.event_types]
    assert len(events) == len(set(events))
    for entry in REGISTRY.values():
        assert set(entry.deleted_event_types) <= set(entry.event_types)
        if entry.parent:
            assert entry.parent.parent_table in REGISTRY
        for nested in entry.nested_lists:
            assert nested.child_table is None or nested.child_table in REGISTRY


def _expected(value, data_type: str):
    if isinstance(value, dict) and "id" in value:
        value = value["id"]
    if value is None:
        return None
    if data_type == "timestamp with time zone":
        return datetime.fromtimestamp(value, tz=UTC)
    if data_type == "text" and not isinstance(value, str):
        return json.dumps(value) if isinstance(value, (dict, list)) else str(value).lower() \
            if isinstance(value, bool) else str(value)
    return value


@pytest.mark.parametrize("table", sorted(REGISTRY))
async def test_fixture_object_is_stored_with_typed_columns_equal_to_its_fields(db: Database, clean_db, table):
    entry = REGISTRY[table]
    sample = dict(FIXTURES[entry.fixture_key])
    if not sample.get("id"):
        sample["id"] = "test_" + table
    account = "acct_fixture"
    await db.ensure_accounts([account])
    written = await db.upsert(entry, [UpsertRow(sample, account, datetime.now(UTC), parent_id="parent_1")])
    assert written == {sample["id"]}

    columns = _columns(clean_db)[table]
    typed = sorted(set(columns) - BOOKKEEPING - {entry.parent_column})
    assert typed, f"{table} has no typed columns"
    row = await db.fetch_one(f'SELECT * FROM stripe.{table} WHERE id = %s', (sample["id"],))
    assert row is not None
    assert row["_raw_data"] == sample
    assert row["_account_id"] == account
    assert row["deleted"] is False
    for column in typed:
        assert row[column] == _expected(sample.get(column), columns[column]), (table, column)
    if entry.parent_column:
        assert row[entry.parent_column] == "parent_1"
