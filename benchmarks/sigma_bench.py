"""Rows per second landed by a Sigma backfill of one large table (the emulator's synthetic rows, rate
limits off): query runs, CSV downloads, parsing and the typed upsert, page by page. The emulator runs in
a process of its own (as Stripe would), so the figure is the engine's, not the two sharing one GIL.

    python benchmarks/sigma_bench.py --database-url postgresql://postgres@127.0.0.1:5432/postgres \\
        --rows 1000000 --runs 3

Prints each run and the median rows/s. Each run lands the whole table into a fresh database."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_database import fresh_database  # noqa: E402

from stripe_sync_core import StripeSync, SyncConfig  # noqa: E402
from stripe_sync_core.backfill import BackfillOptions  # noqa: E402
from stripe_sync_core.sigma.client import PollOptions  # noqa: E402

TABLE = "balance_transactions"


@contextmanager
def emulator(rows: int) -> Iterator[tuple[str, str]]:
    """(API base, live key) of an emulator process whose Sigma table holds `rows` synthetic rows."""
    process = subprocess.Popen([sys.executable, "-m", "stripe_sync_tui.cli", "--headless", "emulator", "--port", "0",
                                "--customers", "10"], stdout=subprocess.PIPE, text=True)
    try:
        api_base = key = ""
        assert process.stdout is not None
        for line in process.stdout:
            if "listening on" in line:
                api_base = line.split("listening on", 1)[1].strip()
            elif line.startswith("API key:"):
                key = line.split(":", 1)[1].strip().replace("sk_test_", "sk_live_", 1)
            if api_base and key:
                break
        if not api_base:
            raise SystemExit("the emulator did not start")
        request = urllib.request.Request(f"{api_base}/_emulator/sigma", method="POST",
                                         data=json.dumps({"polls": 1, "synthetic_rows": {TABLE: rows}}).encode(),
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=600).read()
        yield api_base, key
    finally:
        process.terminate()
        process.wait(30)


async def land(url: str, api_base: str, key: str, page_size: int) -> tuple[int, float]:
    config = SyncConfig(database_url=url, stripe_secret_key=key, stripe_api_base=api_base,
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
    with emulator(args.rows) as (api_base, key):
        for run in range(1, args.runs + 1):
            with fresh_database(args.database_url, "sigma_bench") as url:
                stored, elapsed = asyncio.run(land(url, api_base, key, args.page_size))
            rates.append(stored / elapsed)
            print(f"run {run}: {stored:,} rows in {elapsed:.1f} s = {stored / elapsed:,.0f} rows/s "
                  f"(pages of {args.page_size:,})", flush=True)
    print(f"median: {statistics.median(rates):,.0f} rows/s over {len(rates)} run(s) of {stored:,} rows")


if __name__ == "__main__":
    main()
