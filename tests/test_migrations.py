"""Migrations: create the schema, are idempotent, serialise concurrent runs, keep data, downgrade to base."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from alembic.script import ScriptDirectory

from stripe_sync_core.database import DatabaseUnavailable
from stripe_sync_core.migrate import MIGRATIONS_DIR, current_revision, downgrade_migrations, run_migrations
from stripe_sync_core.registry import REGISTRY

CLI = [sys.executable, "-m", "stripe_sync_tui.cli"]
HEAD = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'stripe'")}


def _drop(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS stripe CASCADE")


def test_migrate_creates_schema_then_changes_nothing(database_url):
    _drop(database_url)
    assert run_migrations(database_url) == (None, HEAD)
    assert set(REGISTRY) | {"_migrations", "_managed_webhooks", "_sync_runs", "_sync_obj_runs", "_events",
                            "_dead_letters", "_request_budget"} \
        == _tables(database_url)
    assert run_migrations(database_url) == (HEAD, HEAD)


def test_upgrade_keeps_existing_rows(clean_db):
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute("INSERT INTO stripe.accounts (_raw_data, _account_id) VALUES (%s, 'acct_1')",
                     (json.dumps({"id": "acct_1", "object": "account"}),))
    run_migrations(clean_db)
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM stripe.accounts").fetchone()[0] == 1


def test_stored_objects_are_compressed_with_lz4_where_the_server_has_it(clean_db):
    invoice = {"id": "in_lz4", "object": "invoice", "description": "line " * 1500}  # ~7.5 kB, compressed
    with psycopg.connect(clean_db, autocommit=True) as conn:
        lz4 = conn.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                           "WHERE name = 'default_toast_compression'").fetchone()[0]
        methods = {row[0] for row in conn.execute(
            "SELECT a.attcompression FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "WHERE c.relnamespace = 'stripe'::regnamespace AND c.relkind = 'r' AND a.attname = '_raw_data'")}
        assert methods == {"l"} if lz4 else "l" not in methods
        conn.execute("INSERT INTO stripe.accounts (_raw_data, _account_id) VALUES (%s, 'acct_1')",
                     (json.dumps({"id": "acct_1", "object": "account"}),))
        conn.execute("INSERT INTO stripe.invoices (_raw_data, _account_id) VALUES (%s, 'acct_1')", (json.dumps(invoice),))
        stored, method = conn.execute(
            "SELECT _raw_data, pg_column_compression(_raw_data) FROM stripe.invoices WHERE id = 'in_lz4'").fetchone()
    assert stored == invoice
    assert method == ("lz4" if lz4 else "pglz")


def test_concurrent_migrations_both_succeed(database_url):
    _drop(database_url)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: run_migrations(database_url), range(4)))
    assert all(after == HEAD for _, after in results)
    assert sum(before is None for before, _ in results) >= 1
    assert current_revision(database_url) == HEAD


def test_downgrade_base_removes_everything_and_upgrade_restores(database_url):
    run_migrations(database_url)
    downgrade_migrations(database_url, revision="base")
    assert _tables(database_url) == {"_migrations"}
    assert current_revision(database_url) is None
    run_migrations(database_url)
    assert "customers" in _tables(database_url)


def test_unreachable_database_is_a_clear_error():
    with pytest.raises(DatabaseUnavailable, match=r"postgres:\*\*\*\*@127\.0\.0\.1:1/"):
        run_migrations("postgresql://postgres:hunter2@127.0.0.1:1/nope")


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_headless_migrate_against_database_url(database_url):
    _drop(database_url)
    first = _cli("--headless", "--json", "migrate", "--database-url", database_url)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["changed"] is True
    second = _cli("--headless", "--json", "migrate", "--database-url", database_url)
    assert json.loads(second.stdout) | {"database": None} == {
        "kind": "migrate", "revision_before": HEAD, "revision": HEAD, "changed": False, "database": None}


def test_headless_migrates_at_once_all_succeed(database_url):
    _drop(database_url)
    procs = [subprocess.Popen([*CLI, "--headless", "--json", "migrate", "--database-url", database_url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outputs]
    assert sorted(json.loads(out)["changed"] for out, _ in outputs) == [False, False, True]
    assert current_revision(database_url) == HEAD


def test_headless_migrate_on_the_embedded_default(tmp_path):
    env = {"STRIPE_SYNC_DATA_DIR": str(tmp_path), "DATABASE_URL": "", "STRIPE_SYNC_CONFIG": str(tmp_path / "none")}
    first = _cli("--headless", "--json", "migrate", env=env)
    assert first.returncode == 0, first.stderr
    record = json.loads(first.stdout)
    assert record["changed"] is True and "host=" in record["database"]
    second = _cli("--headless", "--json", "migrate", env=env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["changed"] is False
    assert (tmp_path / "pgdata" / "PG_VERSION").exists()
    assert not (tmp_path / "pgdata" / "postmaster.pid").exists(), "the embedded server must stop on exit"
