"""What pooler mode costs: backfill objects/s and webhook events/s on a direct connection with psycopg's
default server-side prepared statements (`prepare_threshold=5`, what the engine does on a connection it
knows to be direct), on a direct connection without them (what it does through a pooler), and through
PgBouncer in transaction mode.

Prints medians of --repeat runs and the ratios to the first mode, measured in one run; never fails on
timing. Needs `pgbouncer` (Debian's package) and a PostgreSQL server (--database-url or
STRIPE_SYNC_BENCH_DATABASE_URL); each mode gets a fresh database.

    python benchmarks/pooler_bench.py --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

from bench_database import fresh_database

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

MODES = ("direct, prepared", "direct, unprepared", "pgbouncer")
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "data" / "stripe_fixtures.json"


def engine_config(url: str, emu):  # noqa: ANN001, ANN201 - a StripeEmulator, a SyncConfig
    from stripe_sync_core import SyncConfig

    return SyncConfig(database_url=url, stripe_secret_key=emu.secret_key, stripe_api_base=emu.api_base,
                      max_requests_per_second=0, pool_max_size=12)


async def backfill_rate(url: str, emu) -> float:  # noqa: ANN001 - a StripeEmulator
    from stripe_sync_core import StripeSync

    async with StripeSync(engine_config(url, emu)) as sync:
        started = time.perf_counter()
        summary = await sync.process_until_done("customers", concurrency=8)
        elapsed = time.perf_counter() - started
    return summary["customers"].stored / elapsed


async def webhook_rate(url: str, emu, events: list[dict]) -> float:  # noqa: ANN001 - a StripeEmulator
    from stripe_sync_core import StripeSync

    async with StripeSync(engine_config(url, emu)) as sync:
        started = time.perf_counter()
        for start in range(0, len(events), 50):  # 50 deliveries in flight, like a burst from Stripe
            await asyncio.gather(*(sync.process_event(e) for e in events[start:start + 50]))
        elapsed = time.perf_counter() - started
    return len(events) / elapsed


def make_events(count: int) -> list[dict]:
    customer = json.loads(FIXTURES.read_text())["resources"]["customer"]
    now = int(time.time())
    return [{"id": f"evt_bench_{i}", "object": "event", "type": "customer.updated", "created": now,
             "livemode": False, "data": {"object": {**customer, "id": f"cus_bench{i}"}}} for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("STRIPE_SYNC_BENCH_DATABASE_URL",
                                                                   "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()

    from pgbouncer_support import missing_reason, pgbouncer

    from stripe_sync_core import database
    from stripe_sync_emulator import RATIOS, StripeEmulator

    if missing_reason():
        raise SystemExit(missing_reason())
    events = make_events(args.events)
    rates: dict[str, dict[str, list[float]]] = {mode: {"backfill": [], "webhooks": []} for mode in MODES}
    sizes = {name: 0 for name in RATIOS}
    with StripeEmulator(seed=1, customers=args.customers, sizes=sizes, start="2023-01-01",
                        end="2025-01-01") as emu:
        for _ in range(args.repeat):
            for mode in MODES:  # interleaved, so that a busy moment of the machine hits every mode
                # Read by database.prepare_if_direct when the pool opens a connection.
                database.PREPARE_THRESHOLD = 5 if mode == "direct, prepared" else None
                with fresh_database(args.database_url, "pooler_bench") as direct:
                    if mode == "pgbouncer":
                        with pgbouncer(direct) as pooled:
                            backfill = asyncio.run(backfill_rate(pooled, emu))
                            webhooks = asyncio.run(webhook_rate(pooled, emu, events))
                    else:
                        backfill = asyncio.run(backfill_rate(direct, emu))
                        webhooks = asyncio.run(webhook_rate(direct, emu, events))
                rates[mode]["backfill"].append(backfill)
                rates[mode]["webhooks"].append(webhooks)
    base = {kind: statistics.median(rates[MODES[0]][kind]) for kind in ("backfill", "webhooks")}
    print(f"{args.customers} customers backfilled (concurrency 8), {args.events} customer.updated events "
          f"(50 in flight); median of {args.repeat}")
    for mode in MODES:
        backfill = statistics.median(rates[mode]["backfill"])
        webhooks = statistics.median(rates[mode]["webhooks"])
        print(f"  {mode:<20} backfill {backfill:8.0f} objects/s ({backfill / base['backfill']:.2f}x)   "
              f"webhooks {webhooks:7.0f} events/s ({webhooks / base['webhooks']:.2f}x)")


if __name__ == "__main__":
    main()
