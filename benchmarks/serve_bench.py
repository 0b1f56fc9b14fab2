"""`serve` under webhook load: prints figures, never fails on timing.

Each run starts `stripe-sync-tui --headless serve --port 0` as its own process (the local Stripe emulator
as Stripe, a fresh database on the server `--database-url` names), then, from this process over HTTP:

* sustained: signed deliveries POSTed to `/webhooks` by `--connections` concurrent requests: events/s;
* offered: `--rate` deliveries/s for `--seconds`: p50/p99 latency from each delivery's due time;
* drain: the same offered load, SIGTERM after `--drain-after` seconds: the time from SIGTERM to the
  process's exit, the deliveries answered after the signal, and "lost": deliveries answered 2xx whose
  event is not in `stripe._events` (must be 0; the others got 503 or no connection, which Stripe retries).

Figures are medians of `--repeat` runs. Event bodies and signatures are `webhook_load.py`'s (customer
events, ~1.2 kB, each for its own object).

    python benchmarks/serve_bench.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import aiohttp
import psycopg
from bench_database import fresh_database
from webhook_load import SECRET, build_payloads, percentile, sign

from stripe_sync_emulator import StripeEmulator


class ServeProcess:
    """`serve` (or, to compare, the plain `listen` command) on a port the OS picks."""

    def __init__(self, database_url: str, emu: StripeEmulator, command: str = "serve") -> None:
        env = {**os.environ, "STRIPE_SYNC_CONFIG": "/nonexistent", "DATABASE_URL": database_url,
               "STRIPE_API_KEY": emu.secret_key, "STRIPE_API_BASE": emu.api_base, "STRIPE_WEBHOOK_SECRET": SECRET}
        env.pop("PORT", None)
        extra = ["--sync-interval", "0", "--no-catch-up"] if command == "serve" else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stripe_sync_tui.cli", "--headless", "--json", command, "--port", "0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True, env=env)
        assert self.proc.stdout is not None
        first: dict[str, Any] = {}
        while first.get("kind") not in ("serving", "listening"):
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{command} exited before it served")
            first = json.loads(line)
        self.url = f"{first['url']}/webhooks" if command == "serve" else first["local_url"]
        # The rest of stdout is read and dropped: a full pipe would stop the process (listen writes a
        # line per delivery, serve a few lines in all).
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()


async def post_all(url: str, deliveries: list[tuple[bytes, str]], *, connections: int, rate: float,
                   on_sent: Any = None) -> dict[str, Any]:
    """Send every delivery (open loop at `rate`, or closed loop when 0); statuses and latencies."""
    results: list[tuple[int, float | int | str, float]] = []  # (index, status, latency)
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def post(i: int, due: float) -> None:
            body, signature = deliveries[i]
            try:
                async with session.post(url, data=body, headers={"Stripe-Signature": signature,
                                                                 "Content-Type": "application/json"}) as response:
                    await response.read()
                    status: int | str = response.status
            except aiohttp.ClientError as error:
                status = type(error).__name__
            results.append((i, status, time.perf_counter() - due))

        start = time.perf_counter()
        if rate:
            tasks = []
            for i in range(len(deliveries)):
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if on_sent is not None and on_sent(i, time.perf_counter() - start):
                    break
                tasks.append(asyncio.create_task(post(i, due)))
            await asyncio.gather(*tasks)
        else:
            pending = list(range(len(deliveries) - 1, -1, -1))

            async def worker() -> None:
                while pending:
                    i = pending.pop()
                    await post(i, time.perf_counter())

            await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    ok = [latency for _, status, latency in results if status == 200]
    statuses: dict[str, int] = {}
    for _, status, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {"events_per_s": len(ok) / elapsed, "p50_ms": percentile(ok, 0.5) * 1000,
            "p99_ms": percentile(ok, 0.99) * 1000, "statuses": statuses, "results": results}


async def load(url: str, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    """Closed loop, then the offered rate."""
    sustained = await post_all(url, [(b.encode(), sign(b)) for b in build_payloads(f"s{tag}", args.events,
                                                                                    "customers")],
                               connections=args.connections, rate=0)
    offered = await post_all(url, [(b.encode(), sign(b)) for b in
                                   build_payloads(f"o{tag}", int(args.rate * args.seconds), "customers")],
                             connections=256, rate=args.rate)
    return {"sustained": sustained["events_per_s"], "offered_rate": offered["events_per_s"],
            "p50_ms": offered["p50_ms"], "p99_ms": offered["p99_ms"], "offered_statuses": offered["statuses"]}


async def listen_run(args: argparse.Namespace, database_url: str, emu: StripeEmulator, run: int) -> dict[str, Any]:
    """The same load on the plain `listen` command: what serve's routes, middleware and metrics cost."""
    listen = ServeProcess(database_url, emu, "listen")
    try:
        return await load(listen.url, args, f"l{run}")
    finally:
        listen.proc.send_signal(signal.SIGINT)
        try:
            listen.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            listen.proc.kill()
            listen.proc.wait()


async def one_run(args: argparse.Namespace, database_url: str, emu: StripeEmulator, run: int) -> dict[str, Any]:
    serve = ServeProcess(database_url, emu)
    try:
        figures = await load(serve.url, args, str(run))
        # Drain under load: offered deliveries keep coming until the process has exited.
        count = int(args.rate * (args.drain_after + 40))
        deliveries = [(b.encode(), sign(b)) for b in build_payloads(f"d{run}", count, "customers")]
        signalled: dict[str, float] = {}

        def on_sent(i: int, elapsed: float) -> bool:
            if "at" not in signalled and elapsed >= args.drain_after:
                serve.proc.send_signal(signal.SIGTERM)
                signalled["at"] = time.perf_counter()
            if "at" in signalled and serve.proc.poll() is not None:
                signalled.setdefault("exited", time.perf_counter())
                return True
            return False

        drain = await post_all(serve.url, deliveries, connections=256, rate=args.rate, on_sent=on_sent)
        serve.proc.wait(timeout=60)
        exited = signalled.get("exited", time.perf_counter())
        acknowledged = {f"evt_benchd{run}_{i}" for i, status, _ in drain["results"] if status == 200}
        with psycopg.connect(database_url) as conn:
            stored = {r[0] for r in conn.execute("SELECT id FROM stripe._events WHERE id LIKE %s",
                                                 (f"evt_benchd{run}_%",))}
        return {**figures, "drain_s": exited - signalled["at"], "drain_statuses": drain["statuses"],
                "exit_code": serve.proc.returncode, "lost": len(acknowledged - stored)}
    finally:
        if serve.proc.poll() is None:
            serve.proc.kill()
            serve.proc.wait()


async def main(args: argparse.Namespace) -> None:
    print(f"serve_bench: {os.cpu_count()} CPUs, {args.repeat} runs (medians shown); {args.events} events "
          f"closed loop over {args.connections} connections, {args.rate:.0f}/s offered for {args.seconds:.0f} s, "
          f"SIGTERM after {args.drain_after:.0f} s of {args.rate:.0f}/s")
    runs: list[dict[str, Any]] = []
    listens: list[dict[str, Any]] = []
    with StripeEmulator(seed=1, customers=5) as emu:
        for run in range(args.repeat):  # serve and listen alternately: the machine's load hits both alike
            with fresh_database(args.database_url, "serve_bench") as url:
                runs.append(await one_run(args, url, emu, run))
                if args.compare_listen:
                    listens.append(await listen_run(args, url, emu, run))
            for name, result in (("serve", runs[-1]), ("listen", listens[-1] if listens else None)):
                if result is not None:
                    shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()}
                    print(f"  run {run + 1} {name}: {json.dumps(shown)}")

    def median(key: str, of: list[dict[str, Any]] = runs) -> float:
        return statistics.median(r[key] for r in of)

    print(f"serve POST /webhooks, {args.connections} connections: {median('sustained'):,.0f} events/s sustained")
    print(f"serve at {args.rate:.0f} events/s offered: {median('offered_rate'):,.0f} answered 2xx per s, "
          f"p50 {median('p50_ms'):.1f} ms, p99 {median('p99_ms'):.1f} ms")
    drains = ", ".join(f"{r['drain_s']:.2f}" for r in runs)
    print(f"drain under {args.rate:.0f} events/s: SIGTERM to exit {median('drain_s'):.2f} s "
          f"(runs: {drains}); exit codes {[r['exit_code'] for r in runs]}; "
          f"acknowledged but not stored: {sum(r['lost'] for r in runs)}")
    if listens:
        print(f"plain listen, same load: {median('sustained', listens):,.0f} events/s sustained "
              f"(serve / listen {median('sustained') / median('sustained', listens):.2f}); at {args.rate:.0f}/s "
              f"p50 {median('p50_ms', listens):.1f} ms, p99 {median('p99_ms', listens):.1f} ms")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("STRIPE_SYNC_BENCH_DATABASE_URL")
                        or os.environ.get("STRIPE_SYNC_TEST_DATABASE_URL"),
                        help="a server to create (and drop) one database per run on")
    parser.add_argument("--events", type=int, default=5000, help="events of the closed-loop run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=500.0, help="offered events/s")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the offered-rate run")
    parser.add_argument("--drain-after", type=float, default=3.0, help="seconds of load before SIGTERM")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compare-listen", action="store_true",
                        help="after each serve run, the same load on the plain `listen` command")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url (or STRIPE_SYNC_BENCH_DATABASE_URL) is required")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
