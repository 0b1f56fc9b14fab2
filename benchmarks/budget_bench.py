"""Request budget benchmarks: the cost of a token grant, and the rate two processes sustain together.

Prints figures; never fails on timing. Each run gets a fresh database on the server named by
--database-url (or STRIPE_SYNC_BENCH_DATABASE_URL), migrated, dropped afterwards. No HTTP is involved:
callers take tokens from the shared budget (`SharedRequestBudget.acquire`) as a Stripe call would.

    python benchmarks/budget_bench.py grant --count 2000        # one grant statement: median and p99 in us
    python benchmarks/budget_bench.py rate --seconds 10         # 2 processes at the live preset: rate vs limit

`rate`: two processes share one account's budget (100/s, 25/s per endpoint); each runs 16 bulk callers
over 8 endpoints (so the account's limit binds, not the endpoints') and one interactive caller asking
every 100 ms, whose wait for a token is reported (the lane's point: it should not queue behind bulk).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from bench_database import fresh_database

ENDPOINTS = [f"GET /v1/bench_{i}" for i in range(8)]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# -- grant: the cost of one statement --------------------------------------------------------------

async def _grant_costs(url: str, count: int) -> dict[str, Any]:
    from stripe_sync_core.database import Database
    from stripe_sync_core.request_budget import SharedRequestBudget, lane

    database = Database(url, max_size=2)
    await database.open()
    try:
        # A rate no caller reaches: every statement grants, so what is measured is the statement itself.
        budget = SharedRequestBudget(database, "bench grant", 1e9, endpoint_rate=1e8)
        for _ in range(50):  # warm: connection, prepared statement, rows
            await budget.take(False, [ENDPOINTS[0]], [1])
        take, acquire, batch = [], [], []
        for _ in range(count):
            start = time.perf_counter()
            await budget.take(False, [ENDPOINTS[0]], [1])
            take.append(time.perf_counter() - start)
        with lane("interactive"):
            for _ in range(count):
                start = time.perf_counter()
                await budget.acquire(ENDPOINTS[1])
                acquire.append(time.perf_counter() - start)
        for _ in range(count):  # a bulk pump's statement: 8 tokens over 4 endpoints
            start = time.perf_counter()
            await budget.take(True, ENDPOINTS[:4], [2, 2, 2, 2])
            batch.append(time.perf_counter() - start)
    finally:
        await database.close()
    us = 1e6
    return {"count": count,
            "take_median_us": statistics.median(take) * us, "take_p99_us": _percentile(take, 0.99) * us,
            "acquire_median_us": statistics.median(acquire) * us,
            "bulk_batch_of_8_median_us": statistics.median(batch) * us}


def grant(args: argparse.Namespace) -> None:
    with fresh_database(args.database_url, "stripe_sync_budget_bench") as url:
        figures = asyncio.run(_grant_costs(url, args.count))
    print(f"[grant] one grant statement (1 token, global + endpoint bucket), {figures['count']} in a row: "
          f"median {figures['take_median_us']:.0f} us, p99 {figures['take_p99_us']:.0f} us; "
          f"interactive acquire() median {figures['acquire_median_us']:.0f} us; "
          f"a bulk statement of 8 tokens over 4 endpoints median {figures['bulk_batch_of_8_median_us']:.0f} us")


# -- rate: two processes, one account --------------------------------------------------------------

async def _saturate(url: str, rate: float, seconds: float, start_at: float) -> dict[str, Any]:
    from stripe_sync_core.database import Database
    from stripe_sync_core.request_budget import SharedRequestBudget, lane

    database = Database(url, max_size=4)
    await database.open()
    budget = SharedRequestBudget(database, "bench rate", rate, endpoint_rate=25.0)
    bulk: Counter[str] = Counter()
    interactive_waits: list[float] = []
    await asyncio.sleep(max(0.0, start_at - time.time()))
    end = time.monotonic() + seconds

    async def bulk_caller(i: int) -> None:
        endpoint = ENDPOINTS[i % len(ENDPOINTS)]
        with lane("bulk"):
            while time.monotonic() < end:
                await budget.acquire(endpoint)
                bulk[endpoint] += 1

    async def interactive_caller() -> None:
        with lane("interactive"):
            while time.monotonic() < end:
                await asyncio.sleep(0.1)
                asked = time.monotonic()
                await budget.acquire("GET /v1/account")
                interactive_waits.append(time.monotonic() - asked)

    statements_before = budget.statements
    tasks = [asyncio.create_task(bulk_caller(i)) for i in range(16)] + [asyncio.create_task(interactive_caller())]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await budget.close()
    await database.close()
    return {"bulk": sum(bulk.values()), "per_endpoint": dict(bulk), "interactive": len(interactive_waits),
            "interactive_wait_median_ms": statistics.median(interactive_waits) * 1e3 if interactive_waits else None,
            "interactive_wait_max_ms": max(interactive_waits) * 1e3 if interactive_waits else None,
            "statements": budget.statements - statements_before, "fallback": budget.fallback.granted}


def rate_worker(args: argparse.Namespace) -> None:
    print(json.dumps(asyncio.run(_saturate(args.url, args.rate, args.seconds, args.start_at))), flush=True)


def rate(args: argparse.Namespace) -> None:
    with fresh_database(args.database_url, "stripe_sync_budget_bench") as url:
        start_at = time.time() + 3.0  # both processes imported and connected by then
        workers = [subprocess.Popen([sys.executable, __file__, "rate-worker", "--url", url, "--rate", str(args.rate),
                                     "--seconds", str(args.seconds), "--start-at", str(start_at)],
                                    stdout=subprocess.PIPE, text=True) for _ in range(args.processes)]
        results = [json.loads(worker.communicate()[0]) for worker in workers]
    seconds = args.seconds
    total = sum(r["bulk"] + r["interactive"] for r in results)
    endpoint_totals: Counter[str] = Counter()
    for r in results:
        endpoint_totals.update(r["per_endpoint"])
    busiest = max(endpoint_totals.values()) / seconds if endpoint_totals else 0.0
    from stripe_sync_core.request_budget import bucket_capacity

    burst = bucket_capacity(args.rate)  # the full bucket at the start
    print(f"[rate] {args.processes} processes sharing one account's budget ({args.rate:g}/s, 25/s per endpoint), "
          f"{seconds:g} s: {total / seconds:.1f} requests/s together = {total / seconds / args.rate:.0%} of the "
          f"limit; {(total - burst) / seconds / args.rate:.0%} without the starting burst of {burst:g}; "
          f"busiest endpoint {busiest:.1f}/s")
    for i, r in enumerate(results):
        print(f"  process {i}: bulk {r['bulk'] / seconds:.1f}/s, interactive {r['interactive']} calls "
              f"(wait median {r['interactive_wait_median_ms']:.1f} ms, max {r['interactive_wait_max_ms']:.1f} ms), "
              f"{r['statements'] / seconds:.0f} grant statements/s, {r['fallback']} paced alone")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("grant", "rate"):
        p = sub.add_parser(name)
        p.add_argument("--database-url", default=os.environ.get("STRIPE_SYNC_BENCH_DATABASE_URL")
                       or os.environ.get("STRIPE_SYNC_TEST_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres")
    sub.choices["grant"].add_argument("--count", type=int, default=2000)
    sub.choices["rate"].add_argument("--seconds", type=float, default=10.0)
    sub.choices["rate"].add_argument("--rate", type=float, default=100.0)
    sub.choices["rate"].add_argument("--processes", type=int, default=2)
    w = sub.add_parser("rate-worker")
    w.add_argument("--url", required=True)
    w.add_argument("--rate", type=float, required=True)
    w.add_argument("--seconds", type=float, required=True)
    w.add_argument("--start-at", type=float, required=True)
    args = parser.parse_args()
    {"grant": grant, "rate": rate, "rate-worker": rate_worker}[args.command](args)


if __name__ == "__main__":
    main()
