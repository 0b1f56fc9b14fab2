"""`verify` benchmark: what a drift check costs next to the backfill that made the copy.

Prints figures; never fails on timing. One fresh database on the server named by --database-url (or
STRIPE_SYNC_BENCH_DATABASE_URL), migrated, dropped afterwards; the emulator over HTTP on 127.0.0.1,
no request budget (so what is measured is the engine and the emulator, not Stripe's rate limit).

    python benchmarks/verify_bench.py --customers 300 --runs 3
    python benchmarks/verify_bench.py --rss 100000 300000 1000000   # memory flat in N

It backfills every type once, then times `verify all` (full), `verify all --sample 20` and a repair of
a few silent changes, each `--runs` times: medians in seconds, objects compared per second, Stripe
requests per verify, and the full verify's time as a ratio of the backfill's.

`--rss`: for each N, N customers (the emulator in a process of its own) are backfilled, then `verify
customers` runs in a fresh process, which prints its peak RSS: a verify compares each page as it comes
and keeps the ids, not the objects, so its memory should barely grow with N.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
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


def _rss(server_url: str, sizes: list[int]) -> None:
    from backfill_bench import emulator, engine_in

    print("verify customers: peak RSS of the verifying process (customers only, backfilled first)")
    for size in sizes:
        with emulator(size, only_customers=True) as emu, fresh_database(server_url, "verify_bench") as url:
            engine_in(url, emu, ["customers"], concurrency=8)
            done = subprocess.run([sys.executable, __file__, "_verify", url, emu["api_base"], emu["secret_key"]],
                                  capture_output=True, text=True, check=True)
            figures = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  N = {size:>9,}: peak RSS {figures['max_rss_mb']:6.1f} MB ({figures['seconds']:.1f} s, "
              f"{figures['checked']:,} compared, drift {figures['drift']})", flush=True)


def _verify_process(url: str, api_base: str, key: str) -> None:
    """The `--rss` child: one `verify customers`, its figures as one JSON line."""
    from stripe_sync_core import StripeSync, SyncConfig

    async def run() -> dict:
        config = SyncConfig(database_url=url, stripe_secret_key=key, stripe_api_base=api_base,
                            max_requests_per_second=0)
        async with StripeSync(config) as sync:
            started = time.perf_counter()
            (result,) = await sync.verify("customers")
            return {"seconds": time.perf_counter() - started, "checked": result.checked, "drift": result.drift,
                    "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

    print(json.dumps(asyncio.run(run())), flush=True)


def main() -> None:
    if sys.argv[1:2] == ["_verify"]:
        _verify_process(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("STRIPE_SYNC_BENCH_DATABASE_URL")
                        or "postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rss", type=int, nargs="+", metavar="N", help="peak RSS of verify at N customers")
    args = parser.parse_args()
    if args.rss:
        _rss(args.database_url, args.rss)
        return
    with fresh_database(args.database_url, "verify_bench") as url:
        asyncio.run(_bench(url, args.customers, args.runs))


if __name__ == "__main__":
    main()
