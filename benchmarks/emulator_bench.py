"""Stripe emulator benchmark: ~1,000,000 objects, RSS, and 100-object list page latency over HTTP.

    .venv/bin/python benchmarks/emulator_bench.py [--customers 43000] [--requests 200] [--runs 3]

Prints build time, object count, peak RSS and, per list endpoint, the median and p99 latency of
``GET /v1/<type>?limit=100`` pages (walking the list with ``starting_after`` so every request
renders a different page), measured client-side on a keep-alive HTTP connection.
"""

from __future__ import annotations

import argparse
import http.client
import json
import resource
import statistics
import sys
import time

from stripe_sync_emulator import StripeEmulator, tune_gc

ENDPOINTS = ["/v1/customers", "/v1/invoices", "/v1/subscriptions", "/v1/charges", "/v1/events"]


def rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # pragma: no cover
        return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def walk(conn: http.client.HTTPConnection, key: str, path: str, n: int, extra: str = "") -> list[float]:
    """n page requests of 100 objects, following starting_after (restarting at the end)."""
    times: list[float] = []
    cursor = None
    headers = {"Authorization": f"Bearer {key}"}
    for _ in range(n):
        q = f"{path}?limit=100{extra}" + (f"&starting_after={cursor}" if cursor else "")
        t0 = time.perf_counter()
        conn.request("GET", q, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        times.append((time.perf_counter() - t0) * 1000)
        if resp.status != 200:
            raise SystemExit(f"{q}: HTTP {resp.status} {body[:200]!r}")
        page = json.loads(body)
        cursor = page["data"][-1]["id"] if page["has_more"] and page["data"] else None
    return times


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=43_000, help="43,000 customers ≈ 1,000,000 objects")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-gc-tuning", action="store_true", help="leave the garbage collector as Python sets it")
    args = ap.parse_args()

    base_rss = rss_mb()
    t0 = time.perf_counter()
    emu = StripeEmulator(seed=args.seed, customers=args.customers, start="2023-01-01", end="2025-01-01")
    build = time.perf_counter() - t0
    counts = emu.control.counts() if args.customers <= 5000 else {
        k: v for k, v in ((n, emu.core.platform.tables[n].count()) for n in emu.core.platform.tables) if v}
    total = sum(v for k, v in counts.items() if k not in ("events", "accounts", "webhook_endpoints"))
    print(f"build: {build:.2f} s for {total:,} objects ({args.customers:,} customers)")
    print(f"RSS after build: {rss_mb():.0f} MB (interpreter + libraries before build: {base_rss:.0f} MB)")
    if not args.no_gc_tuning:
        tune_gc()  # what the standalone CLI does
    print(f"gc tuning: {'off' if args.no_gc_tuning else 'on (as in the CLI)'}")

    with emu:
        # Some events so /v1/events has something to page through.
        emu.mutate_random(300)
        conn = http.client.HTTPConnection("127.0.0.1", emu.port)
        walk(conn, emu.secret_key, "/v1/customers", 20)  # warm-up
        print(f"\n100-object list pages, {args.runs} runs x {args.requests} requests (ms; medians of runs):")
        print(f"{'endpoint':28s} {'median':>8s} {'p99':>8s}")
        for path in ENDPOINTS:
            meds, p99s = [], []
            for _ in range(args.runs):
                ts = walk(conn, emu.secret_key, path, args.requests)
                meds.append(statistics.median(ts))
                p99s.append(pct(ts, 99))
            print(f"{path:28s} {statistics.median(meds):8.2f} {statistics.median(p99s):8.2f}")
        meds = []
        for _ in range(args.runs):
            ts = walk(conn, emu.secret_key, "/v1/customers", args.requests, "&expand[]=data.tax_ids")
            meds.append(statistics.median(ts))
        print(f"{'/v1/customers +tax_ids':28s} {statistics.median(meds):8.2f}")
        conn.close()
    print(f"\npeak RSS: {peak_rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
