"""Stripe Sigma: schema `sigma`, one table per Sigma reporting table of the frozen list `sigma/tables_0006.json`.

Table names over PostgreSQL's 63 bytes are shortened with a hash (`pg_table` in the list). The list is written by `scripts/sigma_tables.py` from Stripe's table list and never regenerated at run
time, so this revision creates the same 187 tables everywhere. Each table has the Sigma columns, typed
(varchar -> text, bigint, double precision, boolean, numeric, timestamp -> timestamptz, or date for
day columns; nullable: Sigma's CSV has no NOT NULL), `_raw_data jsonb` (the CSV row as Stripe sent it),
`_account_id` and `_last_synced_at`.

Keys. Stripe's flagged primary key is the table's primary key, `(_account_id, key columns)`, where it
is trustworthy. Four tables get a surrogate key instead, `_key` (the key columns' values joined, a null
written as such), with `PRIMARY KEY (_account_id, _key)`:
- `invoice_line_items`: Stripe flags only `invoice_id`, which repeats on every line of an invoice (not
  unique); `_key` is the line's `id`;
- `price_tiers`: `upto` is null on a price's last tier (nullable key column);
- `payins_insights_lightning_astro_deduped_aggregated_with_attempts_v2` and
  `payins_insights_lightning_astro_raw_aggregated_with_attempts_v2`: 15 key columns of which the
  reason columns are null on most rows (nullable key columns).
Each table's comment says which key it has and why.

A change of shape never empties a table: a table that already exists (from an interrupted or repeated
run) only gains the columns it lacks, and a later list is a new revision whose migration alters the
tables (adds columns, converts types with USING); none drops and re-creates one. Downgrading below
this revision drops the schema, as every downgrade drops what its upgrade made.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

import json
from pathlib import Path

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = Path(__file__).resolve().parents[1] / "sigma" / "tables_0006.json"

LZ4_AVAILABLE = ("EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' "
                 "AND 'lz4' = ANY(enumvals))")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _create(table: dict, existing: dict[str, set[str]], compression: str) -> list[str]:
    name = f"sigma.{_ident(table['pg_table'])}"
    key = table["key"]
    surrogate = key["kind"] == "surrogate"
    key_columns = set() if surrogate else set(key["columns"])
    columns = ["_account_id text NOT NULL"] + (["_key text NOT NULL"] if surrogate else [])
    typed = []
    for sigma_name, _sigma_type, pg_type, *renamed in table["columns"]:
        column = renamed[0] if renamed else sigma_name
        typed.append((_ident(column), pg_type, sigma_name in key_columns))
    columns += [f"{c} {t}{' NOT NULL' if k else ''}" for c, t, k in typed]
    columns += [f"_raw_data jsonb{compression} NOT NULL", "_last_synced_at timestamptz NOT NULL"]
    primary = ["_account_id", "_key"] if surrogate else ["_account_id", *key["columns"]]
    if table["pg_table"] in existing:  # left by an earlier run: it keeps its rows and gains what it lacks
        has = existing[table["pg_table"]]
        lacking = [(c, t) for c, t, _ in typed if c.strip('"').replace('""', '"') not in has]
        if not lacking:
            return []
        statements = [f"ALTER TABLE {name} " + ", ".join(f"ADD COLUMN {c} {t}" for c, t in lacking)]
    else:
        statements = [f"CREATE TABLE {name} ({', '.join(columns)}, PRIMARY KEY ({', '.join(map(_ident, primary))}))"]
    described = (f"surrogate key _key ({', '.join(key['columns'])}): {key['reason']}" if surrogate
                 else f"Stripe's key ({', '.join(key['columns'])})")
    statements.append(f"COMMENT ON TABLE {name} IS {_literal('Stripe Sigma table ' + table['table'] + '; ' + described)}")
    return statements


def upgrade() -> None:
    frozen = json.loads(TABLES.read_text())
    assert frozen["revision"] == revision, f"{TABLES} is not the list of revision {revision}"
    bind = op.get_bind()
    op.execute("CREATE SCHEMA IF NOT EXISTS sigma")
    existing: dict[str, set[str]] = {}
    for table_name, column in bind.exec_driver_sql(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'sigma'"):
        existing.setdefault(table_name, set()).add(column)
    lz4 = bind.exec_driver_sql(f"SELECT {LZ4_AVAILABLE}").scalar()
    compression = " COMPRESSION lz4" if lz4 else ""
    statements = [s for table in frozen["tables"] for s in _create(table, existing, compression)]
    if statements:
        op.execute(";\n".join(statements))


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS sigma CASCADE")
