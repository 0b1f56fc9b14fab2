"""Webhook load benchmark: prints figures, never fails on timing.

Two parts, both storing into PostgreSQL through the real engine:

* direct: signed deliveries handed to `StripeSync.process_webhook` by N concurrent callers (closed
  loop: events/s), then the same at a fixed offered rate (open loop: p50/p99 latency);
* http: signed deliveries POSTed to the embedded listener by a separate client process, as fast as
  `--connections` concurrent requests allow (events/s sustained), then at a fixed offered rate.

Two event mixes, each event for its own object, built from Stripe's sample objects: `customers`
(customer.updated, ~1.2 KB) and `mixed` (customers, products, disputes, invoices, payment
intents, subscriptions with their items and charges, 0.8-4.6 KB; no prices: a price event's object lacks
the fields Stripe sends only when asked, so the engine fetches each price from the API). Rows the benchmark writes carry `bench` in
their ids and are deleted before and after each run; use a database of its own.

    python benchmarks/webhook_load.py --database-url postgresql://postgres@127.0.0.1:5432/webhooks_bench
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import stripe
from bench_database import own_cpu_seconds, postgres_cpu_seconds

from stripe_sync_core import StripeSync, SyncConfig, run_migrations
from stripe_sync_core.event_writer import PendingWrite
from stripe_sync_core.registry import EVENT_TYPES, REGISTRY

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "data" / "stripe_fixtures.json"
SECRET = "whsec_benchmarkSigningSecret0000"
ACCOUNT = "acct_1Bench0000000000"
MIX = {  # Stripe object -> (event type, id prefix)
    "customer": ("customer.updated", "cus_"),
    "product": ("product.updated", "prod_"),
    "dispute": ("charge.dispute.updated", "dp_"),
    "invoice": ("invoice.updated", "in_"),
    "payment_intent": ("payment_intent.succeeded", "pi_"),
    "subscription": ("customer.subscription.updated", "sub_"),
    "charge": ("charge.updated", "ch_"),
}


def build_payloads(tag: str, count: int, mix: str = "mixed", order: str = "cycled") -> list[str]:
    """`count` event bodies, each for its own object, cycling through the mix (`order="shuffled"`: in a
    seeded random order, so a batch holds any combination of kinds)."""
    samples = json.loads(FIXTURES.read_text())["resources"]
    kinds = ["customer"] if mix == "customers" else list(MIX)
    now = int(time.time())
    bodies = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        event_type, prefix = MIX[kind]
        obj = json.loads(json.dumps(samples[kind]))
        obj["id"] = f"{prefix}bench{tag}_{i}"
        for nested in ("items", "refunds"):
            listed = obj.get(nested)
            if isinstance(listed, dict):
                for k, child in enumerate(listed.get("data") or []):
                    child["id"] = f"{child['id'].split('_')[0]}_bench{tag}_{i}_{k}"
        event = {"id": f"evt_bench{tag}_{i}", "object": "event", "api_version": "2024-06-20", "created": now,
                 "data": {"object": obj}, "livemode": False, "pending_webhooks": 1,
                 "request": {"id": None, "idempotency_key": None}, "type": event_type}
        bodies.append(json.dumps(event))
    if order == "shuffled":  # kinds in random order (seeded): as deliveries come, not in a fixed cycle
        random.Random(7).shuffle(bodies)
    return bodies


def pending_writes(bodies: list[str]) -> list[PendingWrite]:
    """The writes `process_webhook` queues for these bodies, for benchmarks that drive the writer itself."""
    writes = []
    for body in bodies:
        event = json.loads(body)
        obj = event["data"]["object"]
        writes.append(PendingWrite(event["id"], event["type"], ACCOUNT, EVENT_TYPES[event["type"]], obj["id"],
                                   datetime.fromtimestamp(event["created"], UTC), body, obj))
    return writes


def sign(body: str) -> str:
    return stripe.WebhookSignature.generate_signature_header(body, SECRET)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def cleanup(sync: StripeSync) -> None:
    tables = [t for t in REGISTRY if t != "accounts"]
    for table in tables:
        await sync.database.execute(f"DELETE FROM stripe.{table} WHERE id LIKE %s", ("%bench%",))
    await sync.database.execute("DELETE FROM stripe._events WHERE id LIKE 'evt_bench%%'")


# -- part 1: process_webhook ---------------------------------------------------------------------


async def direct_throughput(sync: StripeSync, tag: str, count: int, callers: int, mix: str,
                            order: str = "cycled") -> dict[str, float]:
    deliveries = [(body.encode(), sign(body)) for body in build_payloads(tag, count, mix, order)]
    queue = list(reversed(deliveries))
    latencies: list[float] = []

    async def caller() -> None:
        while queue:
            body, signature = queue.pop()
            started = time.perf_counter()
            await sync.process_webhook(body, signature)
            latencies.append(time.perf_counter() - started)

    engine_before, postgres_before = own_cpu_seconds(), await postgres_cpu_seconds(sync.database)
    writer = sync.webhooks.writer
    batches_before, rows_before = writer.batches, writer.rows
    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = time.perf_counter() - started
    engine_cpu, postgres_cpu = own_cpu_seconds() - engine_before, await postgres_cpu_seconds(sync.database) - postgres_before
    return {"events_per_s": count / elapsed, "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000, "engine_us": engine_cpu / count * 1e6,
            "postgres_us": postgres_cpu / count * 1e6,
            "batch": (writer.rows - rows_before) / max(1, writer.batches - batches_before)}


async def direct_fixed_rate(sync: StripeSync, tag: str, rate: float, seconds: float, mix: str,
                            order: str = "cycled") -> dict[str, float]:
    count = int(rate * seconds)
    deliveries = [(body.encode(), sign(body)) for body in build_payloads(tag, count, mix, order)]
    latencies: list[float] = []

    async def one(body: bytes, signature: str, due: float) -> None:
        await sync.process_webhook(body, signature)
        latencies.append(time.perf_counter() - due)  # from when it was due: queueing counts

    start = time.perf_counter()
    tasks = []
    for i, (body, signature) in enumerate(deliveries):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(body, signature, due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return {"offered_per_s": rate, "achieved_per_s": count / elapsed,
            "p50_ms": percentile(latencies, 0.5) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000}


# -- part 2: the listener over HTTP (the client runs in its own process) ------------------------------


async def client_main(spec: dict[str, Any]) -> None:
    import aiohttp

    bodies = build_payloads(spec["tag"], spec["count"], spec["mix"], spec.get("order", "cycled"))
    deliveries = [(body.encode(), sign(body)) for body in bodies]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=spec["connections"])
    async with aiohttp.ClientSession(connector=connector) as session:
        async def post(body: bytes, signature: str, due: float) -> None:
            async with session.post(spec["url"], data=body, headers={
                    "Stripe-Signature": signature, "Content-Type": "application/json"}) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
            latencies.append(time.perf_counter() - due)

        start = time.perf_counter()
        if spec["rate"]:
            tasks = []
            for i, (body, signature) in enumerate(deliveries):
                due = start + i / spec["rate"]
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(post(body, signature, due)))
            await asyncio.gather(*tasks)
        else:
            queue = list(reversed(deliveries))

            async def worker() -> None:
                while queue:
                    body, signature = queue.pop()
                    await post(body, signature, time.perf_counter())

            await asyncio.gather(*(worker() for _ in range(spec["connections"])))
        elapsed = time.perf_counter() - start
    print(json.dumps({"events_per_s": len(deliveries) / elapsed, "p50_ms": percentile(latencies, 0.5) * 1000,
                      "p99_ms": percentile(latencies, 0.99) * 1000, "statuses": statuses}))


async def run_client(spec: dict[str, Any]) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--client", json.dumps(spec), stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    return json.loads(out.decode().strip().splitlines()[-1])


# -- driver ------------------------------------------------------------------------------------------


def runs_text(runs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['events_per_s']:,.0f}" for r in runs)


def median_of(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


async def main(args: argparse.Namespace) -> None:
    run_migrations(args.database_url)
    config = SyncConfig(database_url=args.database_url, stripe_account_id=ACCOUNT, stripe_webhook_secret=SECRET,
                        pool_max_size=args.pool_size)
    print(f"webhook_load: {os.cpu_count()} CPUs, {args.runs} runs per figure (medians shown), "
          f"database {config.masked()['database_url']}")
    mixes = ["customers", "mixed"] if args.mix == "both" else [args.mix]
    async with StripeSync(config) as sync:
        await cleanup(sync)
        if args.part in ("direct", "all"):
            for mix in mixes:
                throughput, fixed = [], []
                for run in range(args.runs):
                    throughput.append(await direct_throughput(sync, f"d{run}", args.events, args.callers, mix,
                                                             args.order))
                    await cleanup(sync)
                    fixed.append(await direct_fixed_rate(sync, f"r{run}", args.rate, args.seconds, mix, args.order))
                    await cleanup(sync)
                print(f"process_webhook [{mix}{'' if mix == 'customers' else ', ' + args.order}], {args.callers} callers, {args.events} events: "
                      f"{median_of(throughput, 'events_per_s'):,.0f} events/s (runs: {runs_text(throughput)}); "
                      f"call latency p50 {median_of(throughput, 'p50_ms'):.1f} ms, "
                      f"p99 {median_of(throughput, 'p99_ms'):.1f} ms")
                engine_us, postgres_us = median_of(throughput, "engine_us"), median_of(throughput, "postgres_us")
                print(f"  CPU per event: engine {engine_us:.0f} us, PostgreSQL {postgres_us:.0f} us; "
                      f"{os.cpu_count()} cores could do at most {(os.cpu_count() or 1) * 1e6 / (engine_us + postgres_us):,.0f}"
                      f" events/s with no idle moment; {median_of(throughput, 'batch'):.1f} events written per statement")
                print(f"process_webhook [{mix}] at {args.rate:.0f} events/s offered for {args.seconds:.0f} s: "
                      f"p50 {median_of(fixed, 'p50_ms'):.1f} ms, p99 {median_of(fixed, 'p99_ms'):.1f} ms")
        if args.part in ("http", "all"):
            writer = sync.webhooks.writer
            listener = sync.listener(port=0, catch_up=False, manage_webhook=False)
            await listener.start()
            url = listener.state.local_url
            try:
                for mix in mixes:
                    throughput, fixed = [], []
                    for run in range(args.runs):
                        engine_before, postgres_before = own_cpu_seconds(), await postgres_cpu_seconds(sync.database)
                        batches_before, rows_before = writer.batches, writer.rows
                        result = await run_client({"url": url, "tag": f"h{run}", "count": args.events,
                                                   "connections": args.connections, "rate": 0, "mix": mix,
                                                   "order": args.order})
                        result["engine_us"] = (own_cpu_seconds() - engine_before) / args.events * 1e6
                        result["postgres_us"] = (await postgres_cpu_seconds(sync.database) - postgres_before) / args.events * 1e6
                        result["batch"] = (writer.rows - rows_before) / max(1, writer.batches - batches_before)
                        throughput.append(result)
                        await cleanup(sync)
                        fixed.append(await run_client({"url": url, "tag": f"f{run}", "mix": mix, "order": args.order,
                                                       "count": int(args.rate * args.seconds),
                                                       "connections": 256, "rate": args.rate}))
                        await cleanup(sync)
                    print(f"listener [{mix}] POST /webhooks, {args.connections} connections, {args.events} events: "
                          f"{median_of(throughput, 'events_per_s'):,.0f} events/s sustained "
                          f"(runs: {runs_text(throughput)}; statuses {throughput[-1]['statuses']})")
                    print(f"  CPU per event: engine {median_of(throughput, 'engine_us'):.0f} us (HTTP included), "
                          f"PostgreSQL {median_of(throughput, 'postgres_us'):.0f} us; "
                          f"{median_of(throughput, 'batch'):.1f} events written per statement")
                    print(f"listener [{mix}] at {args.rate:.0f} events/s offered for {args.seconds:.0f} s: "
                          f"p50 {median_of(fixed, 'p50_ms'):.1f} ms, p99 {median_of(fixed, 'p99_ms'):.1f} ms "
                          f"(statuses {fixed[-1]['statuses']})")
            finally:
                await listener.stop()
        await cleanup(sync)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("STRIPE_SYNC_BENCH_DATABASE_URL")
                        or os.environ.get("STRIPE_SYNC_TEST_DATABASE_URL"))
    parser.add_argument("--part", choices=("direct", "http", "all"), default="all")
    parser.add_argument("--mix", choices=("customers", "mixed", "both"), default="both")
    parser.add_argument("--order", choices=("cycled", "shuffled"), default="cycled",
                        help="the mix's kinds in a fixed cycle (every batch holds each kind) or shuffled")
    parser.add_argument("--events", type=int, default=20000, help="events per throughput run")
    parser.add_argument("--callers", type=int, default=10, help="concurrent process_webhook callers")
    parser.add_argument("--connections", type=int, default=32, help="concurrent HTTP requests")
    parser.add_argument("--rate", type=float, default=500.0, help="offered events/s for the latency runs")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each latency run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.client and not args.database_url:
        parser.error("--database-url (or STRIPE_SYNC_BENCH_DATABASE_URL) is required")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.client:
        asyncio.run(client_main(json.loads(arguments.client)))
    else:
        asyncio.run(main(arguments))
