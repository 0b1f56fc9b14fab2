"""Backfill benchmarks: throughput, request rate under Stripe's live limits, memory flat in N.

Prints figures; never fails on timing. The emulator and the engine run in processes of their own (the
engine's RSS is its own, and neither steals the other's interpreter lock); each run gets a fresh
database on the server named by --database-url (or STRIPE_SYNC_BENCH_DATABASE_URL).

    python benchmarks/backfill_bench.py throughput --repeat 3   # 100k objects: objects/s, full / fetch-only
    python benchmarks/backfill_bench.py rate --repeat 3         # live preset: rate vs limit, share of 429
    python benchmarks/backfill_bench.py rss --sizes 100000 300000 1000000
    python benchmarks/backfill_bench.py floor --repeat 3      # PostgreSQL's CPU per object, nothing else running

Fetch-only pass: the same engine, chunk plan and concurrency, with the objects' and children's writes
removed; what schedules the work is still written (claims, each page's cursor and heartbeat, split pieces,
chunk completion), since splitting a running chunk for an idle worker reads its cursor.

Floor: after a fetch-only and a full pass of all types, the objects the full pass stored are written again
into empty copies of their tables, a page of 100 per transaction (pages of all tables shuffled), on one
connection with its statements prepared and nothing else running: what PostgreSQL's share of a backfill
costs at best, with the engine's statement and with less (no typed columns, no foreign key, parsing only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
from bench_database import fresh_database, own_cpu_seconds, postgres_cpu_seconds, process_cpu_seconds

if TYPE_CHECKING:
    from stripe_sync_core.registry import ObjectType

RATE_MIX = ["customers", "invoice_items", "payouts", "transfers", "balance_transactions"]
RATE_SIZES = {"customers": 20_000, "invoiceitems": 20_000, "payouts": 10_000, "transfers": 10_000,
              **{name: 0 for name in ("payment_methods", "tax_ids", "subscriptions", "subscription_schedules",
                                      "invoices", "credit_notes", "charges", "refunds", "disputes",
                                      "early_fraud_warnings", "reviews", "setup_intents", "checkout_sessions")}}
"""List types with enough pages to keep several of Stripe's per-endpoint limits busy at once, of objects
light enough (about 1 kB) that two cores can render, parse and store 100 pages a second."""


# -- child processes ------------------------------------------------------------------------------

def emulator_main(args: argparse.Namespace) -> None:
    from stripe_sync_emulator import RATIOS, StripeEmulator

    sizes = {name: 0 for name in RATIOS} if args.only_customers else json.loads(args.sizes or "null")
    emu = StripeEmulator(seed=args.seed, customers=args.customers, sizes=sizes, start="2023-01-01",
                         end="2025-01-01", rate_limit=args.rate_limit, latency_ms=args.latency_ms).start()
    print(json.dumps({"api_base": emu.api_base, "secret_key": emu.secret_key,
                      "live_secret_key": emu.live_secret_key}), flush=True)
    sys.stdin.read()  # serve until the parent closes our stdin
    emu.close()


def engine_main(args: argparse.Namespace) -> None:
    from stripe_sync_core import StripeSync, SyncConfig
    from stripe_sync_core.backfill import BackfillOptions
    from stripe_sync_core.gc_tuning import fewer_collections
    from stripe_sync_core.progress import ProgressSink

    rates: list[float] = []

    class Rates(ProgressSink):
        def request_rate(self, requests_per_second: float) -> None:
            rates.append(requests_per_second)

    if args.fetch_only:
        skip_page_writes()
    config = SyncConfig(database_url=args.database_url, stripe_secret_key=args.key, stripe_api_base=args.api_base,
                        max_requests_per_second=args.rps, pool_max_size=args.concurrency + 4,
                        initial_retry_delay_ms=100)

    async def main() -> dict[str, Any]:
        async with StripeSync(config, progress=Rates(),
                              backfill_options=BackfillOptions(concurrency=args.concurrency)) as sync:
            postgres_before, engine_before = await postgres_cpu_seconds(sync.database), own_cpu_seconds()
            started = time.perf_counter()
            with fewer_collections():  # as the CLI's backfill does
                summary = await sync.process_until_done(args.objects, concurrency=args.concurrency)
            seconds = time.perf_counter() - started
            engine_cpu = own_cpu_seconds() - engine_before
            postgres_cpu = await postgres_cpu_seconds(sync.database) - postgres_before
            stats = sync.stripe.stats
        return {"seconds": seconds, "stored": sum(s.stored for s in summary.values()),
                "errors": sum(s.errors for s in summary.values()), "requests": stats.requests,
                "rate_limited": stats.rate_limited, "retries": stats.retries, "rates": rates,
                "engine_cpu": engine_cpu, "postgres_cpu": postgres_cpu,
                "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

    print(json.dumps(asyncio.run(main())), flush=True)


def skip_page_writes() -> None:
    """Patch the chunk worker so that a page costs its requests only (see the module docstring)."""
    from stripe_sync_core.chunk_worker import ChunkWorker

    async def commit_nothing(self: Any, chunk: Any, listing: Any, batch: Any, fetched_at: Any, done: bool,
                             pieces: list) -> int:
        async with self.ctx.database.pool.connection() as conn, conn.transaction():
            await self.ledger.advance(conn, chunk, self.run_ctx.lease.key, done=done, flush=False)
            if pieces:
                await self.ledger.add_chunks(conn, self.run_ctx.run.id, pieces)
        return len(batch.roots) + sum(batch.children.values())

    ChunkWorker._commit = commit_nothing  # type: ignore[method-assign]


# -- orchestration --------------------------------------------------------------------------------

@contextmanager
def emulator(customers: int, *, only_customers: bool = False, sizes: dict | None = None, rate_limit: str = "off",
             latency_ms: float = 0, seed: int = 1):
    proc = subprocess.Popen(
        [sys.executable, __file__, "_emulator", "--customers", str(customers), "--seed", str(seed),
         "--rate-limit", rate_limit, "--latency-ms", str(latency_ms), "--sizes", json.dumps(sizes),
         *(["--only-customers"] if only_customers else [])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield {**json.loads(proc.stdout.readline()), "pid": proc.pid}
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=30)


def run_engine(server_url: str, emu: dict, objects: list[str] | str, *, concurrency: int, fetch_only: bool = False,
               live: bool = False, rps: float | None = 0) -> dict:
    with fresh_database(server_url, "stripe_sync_bench") as url:
        return engine_in(url, emu, objects, concurrency=concurrency, fetch_only=fetch_only, live=live, rps=rps)


def engine_in(url: str, emu: dict, objects: list[str] | str, *, concurrency: int, fetch_only: bool = False,
              live: bool = False, rps: float | None = 0) -> dict:
    """One backfill by an engine process into the database `url`; its figures, the emulator's CPU included."""
    command = [sys.executable, __file__, "_engine", "--database-url", url, "--api-base", emu["api_base"],
               "--key", emu["live_secret_key" if live else "secret_key"], "--concurrency", str(concurrency),
               "--objects", *([objects] if isinstance(objects, str) else objects)]
    if fetch_only:
        command.append("--fetch-only")
    if rps is not None:
        command += ["--rps", str(rps)]
    emulator_before = process_cpu_seconds(emu["pid"])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return {**json.loads(done.stdout.strip().splitlines()[-1]),
            "emulator_cpu": process_cpu_seconds(emu["pid"]) - emulator_before}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _seconds(runs: list[dict]) -> str:
    return ", ".join(f"{r['seconds']:.1f}" for r in runs)


def throughput(args: argparse.Namespace) -> None:
    cases = [("customers only", 100_000, True, ["customers"], 0),
             ("all types", 5_000, False, ["all"], 0),
             ("customers only, 50 ms per request", 100_000, True, ["customers"], 50),
             ("all types, 50 ms per request", 5_000, False, ["all"], 50)]
    for label, customers, only, objects, latency in cases:
        if args.no_latency and latency:
            continue
        with emulator(customers, only_customers=only, latency_ms=latency) as emu:
            full, fetch = [], []
            for _ in range(args.repeat):
                for runs, fetch_only in ((fetch, True), (full, False)):
                    runs.append(run_engine(args.database_url, emu, objects, concurrency=args.concurrency,
                                           fetch_only=fetch_only))
        stored = full[0]["stored"]
        full_s = median([r["seconds"] for r in full])
        fetch_s = median([r["seconds"] for r in fetch])
        ratios = [f["seconds"] / g["seconds"] for f, g in zip(full, fetch, strict=True)]
        print(f"[throughput] {label}: {stored:,} objects, {full[0]['requests']:,} requests, "
              f"concurrency {args.concurrency}, {args.repeat} runs")
        print(f"  full backfill  median {full_s:6.1f} s  {stored / full_s:8,.0f} objects/s  "
              f"(runs: {_seconds(full)})")
        print(f"  fetch-only     median {fetch_s:6.1f} s  {stored / fetch_s:8,.0f} objects/s  "
              f"(runs: {_seconds(fetch)})")
        engine_us = median([r["engine_cpu"] / r["stored"] * 1e6 for r in full])
        postgres_us = median([r["postgres_cpu"] / r["stored"] * 1e6 for r in full])
        emulator_us = median([r["emulator_cpu"] / r["stored"] * 1e6 for r in full])
        print(f"  CPU per object stored (full backfill): engine {engine_us:.0f} us, PostgreSQL {postgres_us:.0f} us, "
              f"emulator {emulator_us:.0f} us (fetch-only: engine "
              f"{median([r['engine_cpu'] / r['stored'] * 1e6 for r in fetch]):.0f} us, emulator "
              f"{median([r['emulator_cpu'] / r['stored'] * 1e6 for r in fetch]):.0f} us)")
        print(f"  full / fetch-only: median {median(ratios):.2f} (per run: {', '.join(f'{x:.2f}' for x in ratios)};"
              " target <= 1.5)")


def rate(args: argparse.Namespace) -> None:
    cases = [("list mix", 20_000, RATE_SIZES, RATE_MIX, args.repeat),
             ("all types", 2_000, None, "all", 1)]
    for label, customers, sizes, objects, repeat in cases:
        with emulator(customers, sizes=sizes, rate_limit="live") as emu:
            runs = [run_engine(args.database_url, emu, objects, concurrency=args.concurrency, live=True, rps=None)
                    for _ in range(repeat)]
        print(f"[rate] live preset (100/s global, 25/s per endpoint), live key, default budget; {label}: "
              f"{runs[0]['stored']:,} objects, {runs[0]['requests']:,} requests, {repeat} run(s)")
        for r in runs:
            mean = r["requests"] / r["seconds"]
            busy = sorted(r["rates"])[len(r["rates"]) // 10:] or [0.0]  # drop the quietest tenth (ramp, tail)
            print(f"  {r['seconds']:6.1f} s  mean {mean:5.1f} req/s ({mean / 100:.0%} of the limit)  "
                  f"median second {median(busy):5.1f} req/s  429: {r['rate_limited']} "
                  f"({r['rate_limited'] / r['requests']:.2%})  errors {r['errors']}")


def rss(args: argparse.Namespace) -> None:
    print(f"[rss] customers only, concurrency {args.concurrency}: peak RSS of the engine process")
    for size in args.sizes:
        with emulator(size, only_customers=True) as emu:
            r = run_engine(args.database_url, emu, ["customers"], concurrency=args.concurrency)
        print(f"  N = {size:>9,}: peak RSS {r['max_rss_mb']:6.1f} MB  ({r['seconds']:.0f} s, "
              f"{r['stored'] / r['seconds']:,.0f} objects/s)", flush=True)


FLOOR_PAGE = 100
FLOOR_VARIANTS = ("the engine's statement", "without typed columns", "without typed columns or foreign key",
                  "parsing into jsonb only", "receiving the text only")


def floor(args: argparse.Namespace) -> None:
    """The all-types case: one fetch-only and one full pass, then PostgreSQL's floor for what the full pass
    stored (module docstring), each variant `--repeat` times, medians."""
    with emulator(5_000) as emu, fresh_database(args.database_url, "stripe_sync_bench") as url:
        fetch = run_engine(args.database_url, emu, "all", concurrency=args.concurrency, fetch_only=True)
        full = engine_in(url, emu, "all", concurrency=args.concurrency)
        pages, objects = stored_pages(url)
        spent: dict[str, list[float]] = {variant: [] for variant in FLOOR_VARIANTS}
        for _ in range(args.repeat):
            for variant in FLOOR_VARIANTS:
                spent[variant].append(write_again(url, pages, variant) / objects * 1e6)
    n = full["stored"]
    engine, postgres, emulated = (full[key] / n * 1e6 for key in ("engine_cpu", "postgres_cpu", "emulator_cpu"))
    fetch_wall = fetch["seconds"] / n * 1e6
    print(f"[floor] all types: {n:,} objects, concurrency {args.concurrency}; floor: {objects:,} objects in "
          f"{len(pages):,} pages, {args.repeat} runs")
    print(f"  full backfill {full['seconds']:.1f} s, fetch-only {fetch['seconds']:.1f} s "
          f"(ratio {full['seconds'] / fetch['seconds']:.2f}); full pass CPU per object: engine {engine:.0f} us, "
          f"PostgreSQL {postgres:.0f} us, emulator {emulated:.0f} us")
    for variant in FLOOR_VARIANTS:
        print(f"  PostgreSQL CPU per object, {variant:38s} {median(spent[variant]):5.1f} us "
              f"(runs: {', '.join(f'{x:.1f}' for x in spent[variant])})")
    at_floor = (engine + median(spent[FLOOR_VARIANTS[0]]) + emulated) / 2
    print(f"  with PostgreSQL at the floor and both cores busy all the time, the full pass would need "
          f"{at_floor:.0f} us per object against the fetch-only pass's {fetch_wall:.0f}: full / fetch-only "
          f">= {at_floor / fetch_wall:.2f}")


def stored_pages(url: str) -> tuple[list[tuple[ObjectType, list[str]]], int]:
    """The stored objects as pages of `FLOOR_PAGE` of one type each, the pages of all types shuffled."""
    from stripe_sync_core.registry import REGISTRY

    pages: list[tuple[ObjectType, list[str]]] = []
    with psycopg.connect(url) as conn:
        for object_type in REGISTRY.values():
            texts = [row[0] for row in conn.execute(f"SELECT _raw_data::text FROM stripe.{object_type.table} "
                                                     "ORDER BY id")]
            pages += [(object_type, texts[i:i + FLOOR_PAGE]) for i in range(0, len(texts), FLOOR_PAGE)]
    random.Random(1).shuffle(pages)
    return pages, sum(len(texts) for _, texts in pages)


def write_again(url: str, pages: list[tuple[ObjectType, list[str]]], variant: str) -> float:
    """CPU seconds of the connection's server process and the WAL writer to write `pages` into empty
    copies of their tables (schema `floor_copy`) as `variant` says."""
    from stripe_sync_core.database import upsert_sql
    from stripe_sync_core.typed_columns import LOAD_SQL, TypedColumns, typed_columns_from

    with psycopg.connect(url, autocommit=True) as conn:
        conn.prepare_threshold, conn.prepared_max = 0, 1000
        typed = typed_columns_from(conn.execute(LOAD_SQL)) if variant == FLOOR_VARIANTS[0] else TypedColumns()
        conn.execute("DROP SCHEMA IF EXISTS floor_copy CASCADE")
        conn.execute("CREATE SCHEMA floor_copy")
        conn.execute("INSERT INTO stripe.accounts (_raw_data, _account_id) VALUES "
                     "('{\"id\": \"floor\", \"object\": \"account\"}', 'floor') ON CONFLICT DO NOTHING")
        statements: dict[str, str] = {}
        for object_type in {object_type.table: object_type for object_type, _ in pages}.values():
            table = object_type.table
            conn.execute(f"CREATE TABLE floor_copy.{table} (LIKE stripe.{table} INCLUDING ALL)")
            if variant in FLOOR_VARIANTS[:2]:
                conn.execute(f"ALTER TABLE floor_copy.{table} ADD FOREIGN KEY (_account_id) "
                             "REFERENCES stripe.accounts (id)")
            statements[table] = re.sub(rf"\bstripe\.{table}\b", f"floor_copy.{table}",
                                       upsert_sql(object_type, typed=typed))
        if variant == FLOOR_VARIANTS[3]:
            statements = dict.fromkeys(statements, "SELECT count(j) FROM (SELECT r::jsonb AS j "
                                                   "FROM unnest(%(raw)b::text[]) AS r OFFSET 0) AS v")
        elif variant == FLOOR_VARIANTS[4]:
            statements = dict.fromkeys(statements, "SELECT count(r) FROM unnest(%(raw)b::text[]) AS r")
        pids = [conn.info.backend_pid, *(row[0] for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'"))]
        now = datetime.now(UTC)
        before = sum(map(process_cpu_seconds, pids))
        for object_type, texts in pages:
            params = {"raw": texts, "account": ["floor"] * len(texts), "synced": [now] * len(texts),
                      "parent": [None] * len(texts)}
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = off")  # as the chunk worker's page transaction
                conn.execute(statements[object_type.table], params).fetchall()
        spent = sum(map(process_cpu_seconds, pids)) - before
        conn.execute("DROP SCHEMA floor_copy CASCADE")
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("throughput", "rate", "rss", "floor"):
        p = sub.add_parser(name)
        p.add_argument("--database-url", default=os.environ.get("STRIPE_SYNC_BENCH_DATABASE_URL")
                       or os.environ.get("STRIPE_SYNC_TEST_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test")
        p.add_argument("--repeat", type=int, default=3)
        p.add_argument("--concurrency", type=int, default=8)
    sub.choices["throughput"].add_argument("--no-latency", action="store_true", help="skip the 50 ms cases")
    sub.choices["rss"].add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000])
    e = sub.add_parser("_emulator")
    e.add_argument("--customers", type=int)
    e.add_argument("--seed", type=int, default=1)
    e.add_argument("--rate-limit", default="off")
    e.add_argument("--latency-ms", type=float, default=0)
    e.add_argument("--sizes", default=None, help="JSON object of sizes by emulator type")
    e.add_argument("--only-customers", action="store_true")
    g = sub.add_parser("_engine")
    g.add_argument("--database-url")
    g.add_argument("--api-base")
    g.add_argument("--key")
    g.add_argument("--objects", nargs="+")
    g.add_argument("--concurrency", type=int)
    g.add_argument("--rps", type=float, default=None)
    g.add_argument("--fetch-only", action="store_true")
    args = parser.parse_args()
    if getattr(args, "objects", None) == ["all"]:
        args.objects = "all"
    {"throughput": throughput, "rate": rate, "rss": rss, "floor": floor, "_emulator": emulator_main,
     "_engine": engine_main}[args.command](args)


if __name__ == "__main__":
    main()
