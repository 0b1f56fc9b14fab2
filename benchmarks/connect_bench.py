"""Connect platform benchmark: a platform's connected accounts backfilled by 1, 2 and 4 worker processes.

Prints figures; never fails on timing. One emulator (in this process, rate limits off) holds a platform
with `--accounts` connected accounts of `--customers` customers each (every type generated from them).
For each worker count, a fresh database on the server named by --database-url (or
STRIPE_SYNC_BENCH_DATABASE_URL) and that many processes started together, each running

    stripe-sync-tui --headless --json backfill all --connected --concurrency C

(the engine's rate limit off too): they list the connected accounts, open one run per account (or find
it opened by another) and claim any account's chunks, coordinated by PostgreSQL alone. Reported: objects
stored per second over the wall time (spawn to the last exit), and the proof that no chunk was fetched
twice: every chunk claimed once (`attempts` = 1), the objects the chunks counted equal to the rows stored,
and the rows stored equal to the emulator's, type by type.

    python benchmarks/connect_bench.py                                 # 1,000 accounts x 20 customers, 1 2 4
    python benchmarks/connect_bench.py --accounts 50 --workers 1 2     # a smoke run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import psycopg
from bench_database import fresh_database

from stripe_sync_core import SyncConfig
from stripe_sync_core.registry import REGISTRY
from stripe_sync_emulator import StripeEmulator

# Registry table -> the emulator's type name, where they differ.
EMULATOR_TYPE = {"invoice_items": "invoiceitems", "checkout_session_line_items": "checkout_line_items"}
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def _truth(emu: StripeEmulator) -> Counter[str]:
    """Objects per registry table over every connected account, as the backfill must store them."""
    total: Counter[str] = Counter()
    for account in emu.connected_account_ids:
        for table in REGISTRY:
            if table == "accounts":
                continue
            objects = emu.objects(EMULATOR_TYPE.get(table, table), account=account)
            if table == "payment_methods":  # listed per customer: detached ones are unreachable
                objects = [o for o in objects if o.get("customer")]
            total[table] += len(objects)
    return total


def _stored(url: str, platform: str) -> Counter[str]:
    stored: Counter[str] = Counter()
    with psycopg.connect(url) as conn:
        for table in REGISTRY:
            if table == "accounts":
                continue
            row = conn.execute(f"SELECT count(*) FROM stripe.{table} WHERE _account_id <> %s AND NOT deleted",
                               (platform,)).fetchone()
            stored[table] = int(row[0]) if row else 0
    return stored


def _chunk_proof(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE attempts = 1), count(*) FILTER (WHERE attempts > 1), "
            "count(*) FILTER (WHERE status <> 'complete'), COALESCE(sum(processed_count), 0), "
            "count(DISTINCT worker_id), count(DISTINCT run_id) FROM stripe._sync_obj_runs").fetchone()
        runs = conn.execute("SELECT count(*), count(DISTINCT account_id), count(*) FILTER (WHERE closed_at IS NULL) "
                            "FROM stripe._sync_runs").fetchone()
        per_worker = conn.execute("SELECT worker_id, count(*) FROM stripe._sync_obj_runs GROUP BY 1 "
                                  "ORDER BY 1").fetchall()
    assert row is not None and runs is not None
    chunks, once, twice, unfinished, processed, workers, chunk_runs = row
    return {"chunks": chunks, "claimed_once": once, "claimed_more": twice, "unfinished": unfinished,
            "processed": int(processed), "workers": workers, "runs": runs[0], "run_accounts": runs[1],
            "open_runs": runs[2], "chunks_per_process": _per_process(per_worker)}


def _per_process(rows: list[tuple[str, int]]) -> list[int]:
    """Chunks per worker process (a worker id is host:pid:key)."""
    per: Counter[str] = Counter()
    for worker, count in rows:
        per[":".join(str(worker).split(":")[:2])] += count
    return sorted(per.values(), reverse=True)


def _root_rows(stored: Counter[str]) -> int:
    """Rows of the types chunks list (children ride on their parents and are counted apart)."""
    from stripe_sync_core.listing import plan_listings

    return sum(stored[listing.root.table] for listing in plan_listings([t for t in REGISTRY if t != "accounts"]))


def run_once(emu: StripeEmulator, server: str, workers: int, concurrency: int,
             truth: Counter[str]) -> dict[str, Any]:
    with fresh_database(server, "stripe_sync_connect_bench") as url:
        config = SyncConfig(database_url=url, stripe_secret_key=emu.secret_key, stripe_api_base=emu.api_base,
                            max_requests_per_second=0, pool_max_size=concurrency + 4)
        env = config.child_environment({**os.environ, "STRIPE_SYNC_CONFIG": "/nonexistent"})
        command = [sys.executable, "-m", "stripe_sync_tui.cli", "--headless", "--json", "backfill", "all",
                   "--connected", "--concurrency", str(concurrency)]
        started = time.perf_counter()
        processes = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True) for _ in range(workers)]
        failures = []
        for process in processes:
            _, err = process.communicate()
            if process.returncode != 0:
                failures.append(f"exit {process.returncode}: {err.strip().splitlines()[-1:] if err else ''}")
        seconds = time.perf_counter() - started
        stored = _stored(url, emu.account_id)
        proof = _chunk_proof(url)
    objects = sum(stored.values())
    differs = {t: (stored[t], truth[t]) for t in truth if stored[t] != truth[t]}
    return {"workers": workers, "seconds": seconds, "objects": objects, "objects_per_second": objects / seconds,
            "failures": failures, "differs": differs, "root_rows": _root_rows(stored), **proof}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=20, help="customers per connected account")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--concurrency", type=int, default=8, help="chunks fetched at once per process")
    parser.add_argument("--database-url", default=os.environ.get("STRIPE_SYNC_BENCH_DATABASE_URL", DEFAULT_SERVER),
                        help="a PostgreSQL server; each run gets a database of its own there (dropped after)")
    args = parser.parse_args()

    built = time.perf_counter()
    with StripeEmulator(seed=1, customers=20, connected_accounts=args.accounts, connected_customers=args.customers,
                        start="2025-01-01", end="2025-12-31") as emu:
        truth = _truth(emu)
        print(f"emulator: {args.accounts:,} connected accounts x {args.customers} customers, "
              f"{sum(truth.values()):,} objects of {sum(1 for n in truth.values() if n)} types "
              f"(built in {time.perf_counter() - built:.1f} s); rate limits off", flush=True)
        print("| worker processes | seconds | objects | objects/s | chunks | claimed once | claimed again | "
              "chunk objects = rows listed | rows = emulator | chunks per process | load average (1 min) before, after |",
              flush=True)
        print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
        for workers in args.workers:
            emu.reset_stats()
            load_before = os.getloadavg()[0]
            r = run_once(emu, args.database_url, workers, args.concurrency, truth)
            exact = "yes" if not r["differs"] else f"no: {r['differs']}"
            print(f"| {workers} | {r['seconds']:.1f} | {r['objects']:,} | {r['objects_per_second']:,.0f} | "
                  f"{r['chunks']:,} | {r['claimed_once']:,} | {r['claimed_more']} | "
                  f"{'yes' if r['processed'] == r['root_rows'] else 'no'} ({r['processed']:,}) | {exact} | "
                  f"{'/'.join(map(str, r['chunks_per_process']))} | {load_before:.1f}, {os.getloadavg()[0]:.1f} |",
                  flush=True)
            if r["failures"] or r["unfinished"] or r["open_runs"] or r["run_accounts"] != args.accounts:
                print(f"  problems: failures {r['failures']}, unfinished chunks {r['unfinished']}, "
                      f"open runs {r['open_runs']}, runs for {r['run_accounts']} accounts", flush=True)


if __name__ == "__main__":
    main()
