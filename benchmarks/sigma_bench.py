"""Rows per second landed by a Sigma backfill of one large table (the emulator's synthetic rows, rate
limits off): query runs, CSV downloads, parsing and the typed upsert, page by page.

    python benchmarks/sigma_bench.py --database-url postgresql://postgres@127.0.0.1:5432/postgres \\
        --rows 1000000 --runs 3

Prints each run and the median rows/s. Each run lands the whole table into a fresh database."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_database import fresh_database  # noqa: E402

from stripe_sync_core import StripeSync, SyncConfig  # noqa: E402
from stripe_sync_core.backfill import BackfillOptions  # noqa: E402
from stripe_sync_core.sigma.client import PollOptions  # noqa: E402
from stripe_sync_emulator import StripeEmulator  # noqa: E402

TABLE = "balance_transactions"


async def land(url: str, emu: StripeEmulator, page_size: int) -> tuple[int, float]:
    config = SyncConfig(database_url=url, stripe_secret_key=emu.live_secret_key, stripe_api_base=emu.api_base,
                        max_requests_per_second=0, sigma_page_size=page_size, pool_max_size=4)
    options = BackfillOptions(sigma_poll=PollOptions(first_delay=0.05, factor=1.5, max_delay=0.5))
    async with StripeSync(config, backfill_options=options) as sync:
        start = time.perf_counter()
        summary = await sync.process_until_done([f"sigma.{TABLE}"])
        elapsed = time.perf_counter() - start
    result = summary[f"sigma.{TABLE}"]
    if result.status != "complete":
        raise SystemExit(f"the Sigma backfill did not complete: {result}")
    return result.stored, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="a server the benchmark may create databases on")
    parser.add_argument("--rows", type=int, default=1_000_000, help="synthetic rows in the table")
    parser.add_argument("--page-size", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rates = []
    with StripeEmulator(seed=1, customers=10, rate_limit=None,
                        sigma={"polls": 1, "synthetic_rows": {TABLE: args.rows}}) as emu:
        for run in range(1, args.runs + 1):
            with fresh_database(args.database_url, "sigma_bench") as url:
                stored, elapsed = asyncio.run(land(url, emu, args.page_size))
            rates.append(stored / elapsed)
            print(f"run {run}: {stored:,} rows in {elapsed:.1f} s = {stored / elapsed:,.0f} rows/s "
                  f"(pages of {args.page_size:,})", flush=True)
    print(f"median: {statistics.median(rates):,.0f} rows/s over {len(rates)} run(s) of {stored:,} rows")


if __name__ == "__main__":
    main()
