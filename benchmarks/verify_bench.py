"""`verify` benchmark: what a drift check costs next to the backfill that made the copy.

Prints figures; never fails on timing. One fresh database on the server named by --database-url (or
STRIPE_SYNC_BENCH_DATABASE_URL), migrated, dropped afterwards; the emulator over HTTP on 127.0.0.1,
no request budget (so what is measured is the engine and the emulator, not Stripe's rate limit).

    python benchmarks/verify_bench.py --customers 300 --runs 3

It backfills every type once, then times `verify all` (full), `verify all --sample 20` and a repair of
a few silent changes, each `--runs` times: medians in seconds, objects compared per second, Stripe
requests per verify, and the full verify's time as a ratio of the backfill's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from bench_database import fresh_database


async def _bench(url: str, customers: int, runs: int) -> None:
    from stripe_sync_core import StripeSync, SyncConfig
    from stripe_sync_emulator import StripeEmulator

    with StripeEmulator(seed=5, customers=customers, start="2024-01-01", end="2024-12-31") as emu:
        config = SyncConfig(database_url=url, stripe_secret_key=emu.secret_key, stripe_api_base=emu.api_base,
                            max_requests_per_second=0)
        async with StripeSync(config) as sync:
            started = time.perf_counter()
            await sync.process_until_done("all")
            backfill = time.perf_counter() - started
            figures: dict[str, list[float]] = {"full": [], "sample": [], "repair": []}
            compared: dict[str, int] = {}
            requests: dict[str, int] = {}
            for _ in range(runs):
                for name, kwargs in (("full", {}), ("sample", {"sample": 20})):
                    before = emu.stats()["requests"]
                    started = time.perf_counter()
                    results = await sync.verify("all", **kwargs)
                    figures[name].append(time.perf_counter() - started)
                    compared[name] = sum(r.checked for r in results)
                    requests[name] = emu.stats()["requests"] - before
                for customer in emu.objects("customers")[:5]:
                    emu.action("customers", customer["id"], "update", {"description": "drift"}, silent=True)
                started = time.perf_counter()
                await sync.verify("customers", repair=True)
                figures["repair"].append(time.perf_counter() - started)
    print(f"backfill all: {backfill:.2f} s ({customers} customers and everything they bring)")
    for name in ("full", "sample"):
        median = statistics.median(figures[name])
        print(f"verify all{' --sample 20' if name == 'sample' else ''}: median {median:.2f} s over {runs} runs, "
              f"{compared[name]:,} objects compared ({compared[name] / median:,.0f}/s), "
              f"{requests[name]:,} Stripe requests")
    print(f"verify customers --repair (5 changed): median {statistics.median(figures['repair']):.2f} s")
    print(f"full verify / backfill: {statistics.median(figures['full']) / backfill:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("STRIPE_SYNC_BENCH_DATABASE_URL")
                        or "postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with fresh_database(args.database_url, "verify_bench") as url:
        asyncio.run(_bench(url, args.customers, args.runs))


if __name__ == "__main__":
    main()
