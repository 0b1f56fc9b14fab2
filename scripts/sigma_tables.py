"""Turn Stripe's Sigma table list (`sigma-tables.json`) into the frozen table list a migration reads.

    python scripts/sigma_tables.py /path/to/sigma-tables.json --revision 0006

writes `alembic/sigma/tables_<revision>.json`: per table its columns (Sigma type, PostgreSQL type and
column name), its key (Stripe's primary key where it is trustworthy, else a surrogate `_key` and why),
its keyset cursor (unique, never null; empty when the table is read whole) and its time column (the
incremental cursor; none: refreshed whole). The migration of that revision creates exactly these tables,
so the same revision gives the same tables everywhere. A file already written for a revision is never
rewritten (`--force` aside): a later shape change is a new revision whose migration alters the tables.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "alembic" / "sigma"

# Tables whose flagged key Stripe's own schema gets wrong: a surrogate key, and how to page them.
SURROGATE: dict[str, dict] = {
    "invoice_line_items": {
        "key": ["id"], "cursor": ["id"],
        "reason": "Stripe flags only invoice_id, which repeats on every line of an invoice; keyed by the line id",
    },
    "price_tiers": {
        "key": ["price_id", "upto"], "cursor": [],
        "reason": "upto is null on the last tier of a price: no keyset over it, the table is read whole",
    },
}
_PAYINS = "payins_insights_lightning_astro_{}_aggregated_with_attempts_v2"
for _kind in ("deduped", "raw"):
    SURROGATE[_PAYINS.format(_kind)] = {
        "key": None, "cursor": [],
        "reason": "15-column key of booleans and reason columns that are null on most rows: read whole",
    }

TIME_COLUMNS = ("batch_timestamp", "created")
"""Preferred incremental cursors, in order; else the first timestamp column of the key."""


def cursor_type(sigma_type: str) -> str:
    if sigma_type == "timestamp":
        return "timestamp"
    if sigma_type in ("bigint", "integer", "double") or sigma_type.startswith("decimal"):
        return "number"
    return "string"


def convert(table: dict) -> dict:
    # [Sigma name, Sigma type, PostgreSQL type, PostgreSQL column where the 63-byte limit renamed it]
    columns = [[c["name"], c["type"], c["pg_type"], *([c["pg_column"]] if c.get("pg_column") else [])]
               for c in table["columns"]]
    types = {c[0]: c[1] for c in columns}
    name = table["table"]
    override = SURROGATE.get(name)
    if override:
        key_columns = override["key"] or list(table["primary_key"])
        key = {"kind": "surrogate", "columns": key_columns, "reason": override["reason"]}
        cursor = list(override["cursor"])
    else:
        key = {"kind": "primary", "columns": list(table["primary_key"]), "reason": None}
        cursor = list(table["cursor_columns"])
    time_column = next((c for c in TIME_COLUMNS if types.get(c) == "timestamp"), None)
    if time_column is None:
        time_column = next((c for c in table["primary_key"] if types.get(c) == "timestamp"), None)
    if not cursor:
        time_column = None  # a table read whole is refreshed whole
    # PostgreSQL cuts identifiers at 63 bytes: a longer table name is shortened and made unique by a hash.
    pg_table = name if len(name.encode()) <= 63 else f"{name[:54]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return {"table": name, "pg_table": pg_table, "dataset": table["dataset"], "columns": columns, "key": key, "cursor": cursor,
            "cursor_types": [cursor_type(types[c]) for c in cursor], "time_column": time_column}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="sigma-tables.json")
    parser.add_argument("--revision", required=True, help="the migration revision that will read the list")
    parser.add_argument("--force", action="store_true", help="rewrite an existing revision's list")
    args = parser.parse_args(argv)
    source = json.loads(args.source.read_text())
    tables = sorted((convert(t) for t in source["tables"]), key=lambda t: t["table"])
    out = OUT_DIR / f"tables_{args.revision}.json"
    if out.exists() and not args.force:
        print(f"{out} exists: a migration already created these tables; write a new revision's list "
              "(and a migration that alters them) instead", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    frozen = {"revision": args.revision, "source": source.get("source"), "tables": tables}
    lines = ",\n".join(json.dumps(t, separators=(",", ":")) for t in tables)  # one table a line: readable diffs
    head = json.dumps({k: v for k, v in frozen.items() if k != "tables"})[:-1]
    out.write_text(f'{head}, "tables": [\n{lines}\n]}}\n')
    surrogate = [t["table"] for t in tables if t["key"]["kind"] == "surrogate"]
    whole = [t["table"] for t in tables if not t["time_column"]]
    print(f"wrote {out}: {len(tables)} tables, surrogate keys: {', '.join(surrogate)}; "
          f"{len(whole)} refreshed whole")
    return 0


if __name__ == "__main__":
    sys.exit(main())
