"""Schema `sigma` (migration 0006): one table per Sigma table of the frozen list, typed, keyed as the list
says, and a migration run again over existing tables keeps their rows."""

from __future__ import annotations

import json

import psycopg

from stripe_sync_core.migrate import run_migrations
from stripe_sync_core.sigma import sigma_objects, sigma_table
from stripe_sync_core.sigma.tables import _list_path


def _primary_keys(conn: psycopg.Connection) -> dict[str, list[str]]:
    rows = conn.execute(
        "SELECT c.relname, a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indisprimary AND c.relnamespace = 'sigma'::regnamespace "
        "ORDER BY c.relname, array_position(i.indkey::int2[], a.attnum)").fetchall()
    keys: dict[str, list[str]] = {}
    for table, column in rows:
        keys.setdefault(table, []).append(column)
    return keys


def test_every_sigma_table_exists_typed_and_keyed(clean_db):
    tables = [sigma_table(name) for name in sigma_objects()]
    assert len(tables) == 187
    with psycopg.connect(clean_db) as conn:
        types = {(t, c): d for t, c, d in conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'sigma'")}
        keys = _primary_keys(conn)
    assert {t for t, _ in types} == {t.pg_table for t in tables}
    for table in tables:
        for column in table.columns:
            expected = {"text": "text", "bigint": "bigint", "double precision": "double precision",
                        "boolean": "boolean", "timestamptz": "timestamp with time zone", "date": "date",
                        "integer": "integer"}.get(column.pg_type, "numeric")
            assert types[(table.pg_table, column.column)] == expected, (table.table, column.name)
        for bookkeeping, data_type in (("_raw_data", "jsonb"), ("_account_id", "text"),
                                       ("_last_synced_at", "timestamp with time zone")):
            assert types[(table.pg_table, bookkeeping)] == data_type
        wanted = ["_account_id", "_key"] if table.surrogate else ["_account_id", *table.key]
        assert keys[table.pg_table] == wanted, table.table
    surrogate = sorted(t.table for t in tables if t.surrogate)
    assert surrogate == ["invoice_line_items", "payins_insights_lightning_astro_deduped_aggregated_with_attempts_v2",
                         "payins_insights_lightning_astro_raw_aggregated_with_attempts_v2", "price_tiers"]
    assert sigma_table("invoice_line_items").cursor == ("id",), "paged by the line id, not the repeating invoice id"


def test_migrating_again_over_existing_sigma_tables_keeps_their_rows_and_restores_columns(clean_db):
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute("TRUNCATE sigma.charges")
        conn.execute("INSERT INTO sigma.charges (_account_id, id, amount, _raw_data, _last_synced_at) "
                     "VALUES ('acct_1', 'ch_1', 100, '{\"id\": \"ch_1\"}', now())")
        conn.execute("ALTER TABLE sigma.charges DROP COLUMN currency")  # as if an older shape
        conn.execute("DROP SCHEMA stripe CASCADE")  # the migrations run again from the start
    run_migrations(clean_db)
    with psycopg.connect(clean_db, autocommit=True) as conn:
        assert conn.execute("SELECT id, amount, currency FROM sigma.charges").fetchall() == [("ch_1", 100, None)]
        conn.execute("TRUNCATE sigma.charges")


def test_the_frozen_list_is_the_one_the_migration_reads():
    frozen = json.loads(_list_path().read_text())
    assert frozen["revision"] == "0006"
    assert [t["table"] for t in frozen["tables"]] == [name.removeprefix("sigma.") for name in sigma_objects()]
