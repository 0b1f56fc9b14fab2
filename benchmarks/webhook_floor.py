"""What PostgreSQL spends per webhook event as batches grow: prints figures, never fails on timing.

`webhook_load.py` measures the whole path at N concurrent callers, where a batch holds at most N events.
This script isolates PostgreSQL: the event bodies `webhook_load.py` builds (`--mix`, shuffled) are handed to
the engine's `EventWriter` in waves of exactly B events (one batch each, one batch at a time), and the server
processes' CPU is read from /proc (server on this machine). For each B it prints PostgreSQL's CPU per
event; with B large, the part of a batch that does not depend on its size vanishes, so the last row is
the floor the rows themselves cost. More rows split the figures:

* `typed columns left NULL` (smallest and largest batches): the writer's statements without the typed
  columns, so the difference is what computing and storing them costs;
* `parse`: only turning the batch's JSON into jsonb (`SELECT jsonb_array_length($1::jsonb)` over the very
  document a batch statement receives), which every way of storing the objects as jsonb pays;
* `receive`: only receiving the document as text (`length($1::text)`), the protocol's share;
* `start-up`: the writer's statement for the mix's kinds run on an empty batch, prepared: what every
  statement costs before its first event, the part of a small batch that its events share.

    python benchmarks/webhook_floor.py --database-url postgresql://postgres@127.0.0.1:5432/floor_bench

Use a database of its own: rows carry `bench` in their ids and are deleted after each run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import psycopg
from bench_database import postgres_cpu_seconds
from webhook_load import ACCOUNT, SECRET, build_payloads, cleanup, pending_writes

from stripe_sync_core import StripeSync, SyncConfig, run_migrations
from stripe_sync_core.database import Database
from stripe_sync_core.event_writer import BUNDLE_SIZE, EventWriter, PendingWrite, batch_document, batch_sql
from stripe_sync_core.typed_columns import TypedColumns


class WithoutTypedColumns:
    """The engine's database as the writer sees it, but with no typed column to fill: the writer's statements
    then leave them NULL, so a run with it shows what computing and storing them costs."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def __getattr__(self, name: str) -> object:
        return getattr(self._database, name)

    async def typed_columns(self, conn: object = None) -> TypedColumns:
        return TypedColumns()


async def batched_writes(sync: StripeSync, writes: list[PendingWrite], size: int, *, typed: bool = True) -> float:
    """PostgreSQL CPU (us) per event when `writes` go in batches of exactly `size` events (`typed=False`:
    the typed columns left NULL)."""
    database = sync.database if typed else WithoutTypedColumns(sync.database)
    writer = EventWriter(database, max_batch=size, max_writers=1)  # type: ignore[arg-type]
    writer.remember_accounts({ACCOUNT})
    before = await postgres_cpu_seconds(sync.database)
    for start in range(0, len(writes), size):
        wave = writes[start:start + size]
        outcomes = await asyncio.gather(*(writer.write(item) for item in wave))
        assert set(outcomes) == {"stored"}, set(outcomes)
    spent = await postgres_cpu_seconds(sync.database) - before
    assert writer.batches == -(-len(writes) // size), (writer.batches, size)
    return spent / len(writes) * 1e6


async def statement_cpu(sync: StripeSync, sql: str, documents: list[str], *, warm_up: int = 0) -> float:
    """PostgreSQL CPU seconds to run `sql`, prepared, on each of `documents` (`$1`) in turn, after `warm_up`
    uncounted runs on the first (past the custom plans PostgreSQL tries first)."""
    async with sync.database.pool.connection() as conn:
        cursor = psycopg.AsyncRawCursor(conn)

        async def run(document: str) -> None:
            await cursor.execute(sql, (document,), prepare=True)
            await cursor.fetchall()

        for _ in range(warm_up):
            await run(documents[0])
        before = await postgres_cpu_seconds(sync.database)
        for document in documents:
            await run(document)
        return await postgres_cpu_seconds(sync.database) - before


async def statement_only(sync: StripeSync, writes: list[PendingWrite], size: int, sql: str) -> float:
    """PostgreSQL CPU (us) per event of `sql` run on each batch's document (`$1`)."""
    groups = {(w.object_type.table, w.deleting): 0 for w in writes}  # `g` means nothing to `sql`
    documents = [batch_document(writes[start:start + size], groups) for start in range(0, len(writes), size)]
    return await statement_cpu(sync, sql, documents) / len(writes) * 1e6


async def start_up(sync: StripeSync, groups: tuple[tuple[str, bool], ...], executions: int = 300) -> float:
    """PostgreSQL CPU (us) per execution of the writer's statement for `groups` on an empty batch (`[]`):
    what a statement costs before its first event (start-up of every table's write, the typed columns'
    expressions, the event log's insert), prepared as the pool's are."""
    sql = batch_sql(groups, await sync.database.typed_columns())
    return await statement_cpu(sync, sql, ["[]"] * executions, warm_up=10) / executions * 1e6


async def main(args: argparse.Namespace) -> None:
    run_migrations(args.database_url)
    config = SyncConfig(database_url=args.database_url, stripe_account_id=ACCOUNT, stripe_webhook_secret=SECRET,
                        pool_max_size=2)
    print(f"webhook_floor: {os.cpu_count()} CPUs, {args.runs} runs per figure (medians shown), {args.events} "
          f"{args.mix} events per run (shuffled), one batch at a time, load average "
          f"{os.getloadavg()[0]:.1f}")
    rows: dict[str, list[float]] = {}
    async with StripeSync(config) as sync:
        await sync.database.ensure_accounts([ACCOUNT])
        await cleanup(sync)
        for run in range(args.runs):
            for size in args.batch_sizes:
                writes = pending_writes(build_payloads(f"f{run}b{size}_{int(time.time())}", args.events, args.mix,
                                                       "shuffled"))
                rows.setdefault(f"batches of {size}", []).append(await batched_writes(sync, writes, size))
                await cleanup(sync)
            for size in (min(args.batch_sizes), max(args.batch_sizes)):
                writes = pending_writes(build_payloads(f"u{run}b{size}_{int(time.time())}", args.events, args.mix,
                                                       "shuffled"))
                rows.setdefault(f"batches of {size}, typed columns left NULL", []).append(
                    await batched_writes(sync, writes, size, typed=False))
                await cleanup(sync)
            writes = pending_writes(build_payloads(f"p{run}", args.events, args.mix, "shuffled"))
            largest = max(args.batch_sizes)
            rows.setdefault(f"parse (batches of {largest})", []).append(
                await statement_only(sync, writes, largest, "SELECT jsonb_array_length($1::jsonb)"))
            rows.setdefault(f"receive (batches of {largest})", []).append(
                await statement_only(sync, writes, largest, "SELECT length($1::text)"))
            groups = tuple(dict.fromkeys((w.object_type.table, w.deleting) for w in writes))[:BUNDLE_SIZE]
            rows.setdefault(f"start-up: one statement of {len(groups)} kinds, no event (per statement)",
                            []).append(await start_up(sync, groups))
    print("| what PostgreSQL does | CPU per event, median (runs) |")
    print("|---|---|")
    for label, values in rows.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {label} | {statistics.median(values):.0f} us ({runs}) |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("STRIPE_SYNC_BENCH_DATABASE_URL")
                        or os.environ.get("STRIPE_SYNC_TEST_DATABASE_URL"))
    parser.add_argument("--mix", choices=("customers", "mixed"), default="mixed")
    parser.add_argument("--events", type=int, default=10000, help="events per run and batch size")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 10, 100, 1000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url (or STRIPE_SYNC_BENCH_DATABASE_URL) is required")
    if min(args.batch_sizes) < 1 or args.events < max(args.batch_sizes):
        parser.error("batch sizes must be at least 1 and at most --events")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
