"""Chaos suite: the engine under the failures it must survive, one table row per scenario.

Not part of the test suite (minutes, not seconds); anyone can rerun it. Everything listens on port 0 of
127.0.0.1 and uses the project's real parts: the emulator over HTTP, a real PostgreSQL (a fresh database
per scenario on the server named by --database-url, dropped afterwards), the embedded listener, and the
test helpers (tests/backfill_support.py, tests/webhook_support.py, tests/test_backfill_resume.py).

    python benchmarks/chaos.py --quick                 # smoke run: small sizes, short outages
    python benchmarks/chaos.py                         # the full table
    python benchmarks/chaos.py --only kill9 hostile    # some rows

Scenarios (a row each; the exit code is 0 when every row holds, 1 otherwise):

* kill9: a backfill worker process killed with SIGKILL at random points, then resumed in this
  process: every table equals the emulator (ids, and each stored object; embedded lists are compared
  through their child tables), each chunk's count equals its objects.
* shuffle: signed events delivered by the emulator with 20% duplicates, 30% reordered and half of them
  in same-second bursts: the stored state equals the emulator, every event logged once.
* outage / frozen: PostgreSQL unreachable (a proxy in a process of its own closes its port and cuts
  every connection) for 10 s and for 60 s, and frozen (the proxy process stopped with SIGSTOP: connections
  stay open, nothing answers) while the emulator delivers: no 2xx before commit (each 2xx event is
  looked up in stripe._events, directly on the server, as the answer leaves), nothing lost once
  redelivered, and every request answered within 15 s (three times the listener's db_timeout: a
  delivery may wait for a writer slot, then for a connection); the longest is reported. Four
  concurrent senders of our own post beside the emulator, which sends one delivery at a time.
* storm429: a backfill through a proxy answering 30% of requests 429: complete and equal.
* hostile: unsigned hostile bodies and signed events PostgreSQL cannot take, POSTed to the listener:
  every answer 2xx or 4xx, the signed unstorable ones acknowledged as dead letters.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

import aiohttp  # noqa: E402
import psycopg  # noqa: E402
import stripe  # noqa: E402
from aiohttp import web  # noqa: E402
from backfill_support import (  # noqa: E402
    FaultProxy,
    chunk_rows,
    emulator_objects,
    engine,
    run_rows,
)
from bench_database import fresh_database  # noqa: E402
from webhook_support import WEBHOOK_SECRET, engine_config, event, mismatches, signed  # noqa: E402

from stripe_sync_core import StripeSync  # noqa: E402
from stripe_sync_core.backfill import tables_for  # noqa: E402
from stripe_sync_core.listener import WebhookListener  # noqa: E402
from stripe_sync_core.registry import REGISTRY  # noqa: E402
from stripe_sync_emulator import StripeEmulator  # noqa: E402

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
FIXTURES = json.loads((TESTS / "data" / "stripe_fixtures.json").read_text())["resources"]
START, END = "2024-01-01", "2025-01-01"


@dataclass
class Sizes:
    kill_customers: int
    kills: int
    kill_latency_ms: float
    """The emulator's answer time in the kill scenario: slow enough for the kill points to spread."""
    shuffle_events: int
    burst: int
    outages: tuple[float, ...]
    outage_rate: float
    """Random changes per second in the emulator while a delivery scenario runs."""
    frozen: float
    storm_customers: int


FULL = Sizes(kill_customers=600, kills=10, kill_latency_ms=2, shuffle_events=10_000, burst=50,
             outages=(10.0, 60.0), outage_rate=20.0, frozen=30.0, storm_customers=600)
QUICK = Sizes(kill_customers=60, kills=3, kill_latency_ms=15, shuffle_events=600, burst=20, outages=(2.0,),
              outage_rate=10.0, frozen=3.0, storm_customers=60)


@dataclass
class Row:
    scenario: str
    runs: str
    ok: bool
    figures: str
    problems: list[str] = field(default_factory=list)


# -- shared pieces ---------------------------------------------------------------------------------------


def comparable_object(obj: dict, includable: tuple[str, ...] = ()) -> dict:
    """An object without its embedded lists: those are compared through their child tables (the
    backfill completes a list Stripe truncated and adds the line items a session never embeds). Nor
    the fields Stripe sends only when asked (`tiers`, line items' `discounts`...): the engine asks for
    them, a plain list of the emulator's objects leaves them out; tests/test_includable_fields.py checks them."""
    return {k: v for k, v in obj.items()
            if not (isinstance(v, dict) and v.get("object") == "list") and k != "line_items" and k not in includable}


def table_differences(url: str, emu: StripeEmulator, tables: list[str]) -> list[str]:
    """Tables whose stored ids or objects differ from the emulator's."""
    problems = []
    for table in tables:
        expected = {o["id"]: o for o in emulator_objects(emu, table)}
        with psycopg.connect(url) as conn:
            stored = {r[0]: r[1] for r in conn.execute(f"SELECT id, _raw_data FROM stripe.{table} WHERE NOT deleted")}
        if set(stored) != set(expected):
            missing, extra = set(expected) - set(stored), set(stored) - set(expected)
            problems.append(f"{table}: {len(missing)} missing, {len(extra)} extra "
                            f"(e.g. {sorted(missing or extra)[:2]})")
            continue
        includable = REGISTRY[table].includable
        differing = [i for i in expected
                     if comparable_object(stored[i], includable) != comparable_object(expected[i], includable)]
        if differing:
            problems.append(f"{table}: {len(differing)} stored objects differ (e.g. {differing[0]})")
    return problems


def counted_once(url: str, emu: StripeEmulator, run_id: int | None) -> list[str]:
    """Each chunk's count went up with its page in one transaction: the run's counts equal the objects."""
    by_object: Counter[str] = Counter()
    children: Counter[str] = Counter()
    problems = []
    for c in chunk_rows(url, run_id):
        if c["status"] != "complete":
            problems.append(f"chunk {c['id']} ({c['object']}) is {c['status']}"
                            + (f": {c['error_message'][:200]}" if c["error_message"] else ""))
        by_object[c["object"]] += c["processed_count"]
        for table, count in c["children_processed"].items():
            children[table] += count
    for table in tables_for("all"):
        counts = children if REGISTRY[table].parent else by_object
        if counts[table] != len(emulator_objects(emu, table)):
            problems.append(f"{table}: counted {counts[table]}, the emulator has {len(emulator_objects(emu, table))}")
    return problems


def seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 100 else f"{value:.0f} s"


# -- 1. kill -9 during a backfill, then resume ------------------------------------------------------------

WORKER = """
import asyncio, sys
from stripe_sync_core import StripeSync, SyncConfig
url, api_base, key = sys.argv[1:4]
config = SyncConfig(database_url=url, stripe_secret_key=key, stripe_api_base=api_base,
                    max_requests_per_second=0, initial_retry_delay_ms=1, max_retry_delay_ms=20)
async def main():
    async with StripeSync(config) as sync:
        await sync.process_until_done("all", concurrency=4)
asyncio.run(main())
"""
"""The backfill worker of tests/test_backfill_resume.py, its output discarded (nothing reads a pipe)."""


def processed(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT COALESCE(sum(processed_count), 0) FROM stripe._sync_obj_runs").fetchone()
    return int(row[0]) if row else 0


async def scenario_kill9(server: str, sizes: Sizes, rng: random.Random) -> Row:
    with fresh_database(server, "chaos_kill9") as url, \
            StripeEmulator(seed=rng.randrange(1000), customers=sizes.kill_customers, start=START, end=END,
                           latency_ms=sizes.kill_latency_ms) as emu:
        roots = sum(len(emulator_objects(emu, t)) for t in tables_for("all") if not REGISTRY[t].parent)
        # Kill points: a share of the top-level objects stored, or (one time in four) a moment right
        # after the process starts (opening the engine, planning the chunks, the first pages).
        points = sorted(rng.uniform(0.02, 0.98) for _ in range(sizes.kills))
        kills, at, finished = 0, [], False
        problems: list[str] = []
        started = time.monotonic()
        with psycopg.connect(url, autocommit=True) as watch:
            for point in points:
                proc = subprocess.Popen([sys.executable, "-c", WORKER, url, emu.api_base, emu.secret_key],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    if rng.random() < 0.25:
                        await asyncio.sleep(rng.uniform(0.1, 2.0))
                    else:
                        target = max(processed(watch) + 1, int(point * roots))
                        deadline = time.monotonic() + 300
                        while processed(watch) < target and proc.poll() is None and time.monotonic() < deadline:
                            await asyncio.sleep(0.01)
                        if time.monotonic() >= deadline:
                            problems.append(f"a worker made no progress for 300 s (stuck at {processed(watch)})")
                        await asyncio.sleep(rng.uniform(0, 0.05))
                    if proc.poll() is None:
                        at.append(processed(watch))
                        proc.send_signal(signal.SIGKILL)
                        proc.wait(timeout=10)
                        kills += 1
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                if any(r["closed_at"] is not None for r in run_rows(url)):
                    finished = True  # the run completed before this kill: nothing left to interrupt
                    break
        killed_runs = run_rows(url)
        resume_started = time.monotonic()
        async with engine(url, emu) as sync:
            summary = await sync.process_until_done("all", concurrency=4)
        resume = time.monotonic() - resume_started
        first_run = (killed_runs or run_rows(url))[0]["id"]  # no run yet if every kill came before it began
        problems += table_differences(url, emu, tables_for("all")) + counted_once(url, emu, first_run)
        errors = sum(s.errors for s in summary.values())
        if errors:
            problems.append(f"{errors} chunk errors in the resumed run")
        final = run_rows(url)
        if not final or final[0]["id"] != first_run or any(r["status"] != "complete" for r in final) \
                or (len(final) != 1 and not finished):
            problems.append(f"runs after resuming: {[(r['id'], r['status']) for r in final]} "
                            "(the killed run, resumed and complete, expected)")
        total = sum(len(emulator_objects(emu, t)) for t in tables_for("all"))
        figures = (f"{total:,} objects ({sizes.kill_customers} customers); killed at "
                   f"{', '.join(f'{a * 100 // max(1, roots)}%' for a in at)} of the top-level objects"
                   + ("; the run completed before the last kill" if finished else "")
                   + f"; resumed in {seconds(resume)}, {seconds(time.monotonic() - started)} in all; "
                   f"{len(tables_for('all'))} tables equal")
        return Row("kill -9 during a backfill, then resume", f"{kills} kill{'s' if kills != 1 else ''}",
                   not problems, figures, problems)


# -- 4. a 429 storm during a backfill ---------------------------------------------------------------------


async def scenario_storm429(server: str, sizes: Sizes, rng: random.Random) -> Row:
    with fresh_database(server, "chaos_storm") as url, \
            StripeEmulator(seed=rng.randrange(1000), customers=sizes.storm_customers, start=START, end=END) as emu:
        async with FaultProxy(emu.api_base, rate_limited=0.3, seed=rng.randrange(1000)) as proxy:
            # The engine's retry policy (5 retries), with delays shortened: the storm's 429s are drawn
            # per request, not per second, so longer waits would change nothing but the duration.
            started = time.monotonic()
            async with engine(url, emu, api_base=proxy.url, initial_retry_delay_ms=20,
                              max_retry_delay_ms=500) as sync:
                summary = await sync.process_until_done("all", concurrency=4)
                elapsed = time.monotonic() - started
                errors = sum(s.errors for s in summary.values())
                problems = counted_once(url, emu, run_rows(url)[0]["id"])
                if errors:
                    problems.append(f"{errors} chunk errors")
                [run] = run_rows(url)
                if run["status"] != "complete":
                    problems.append(f"the run is {run['status']}")
                    # Does running the backfill again recover? (a new run, as a user would start it)
                    await sync.process_until_done("all", concurrency=4)
                    again = run_rows(url)[-1]
                    problems.append(f"a second process_until_done: run {again['id']} {again['status']}")
        problems.sort(key=lambda p: not p.startswith(("chunk", "the run", "a second")))
        problems += table_differences(url, emu, tables_for("all"))
        total = sum(proxy.answered.values())
        figures = (f"{total:,} requests, {proxy.answered.get(429, 0):,} answered 429 "
                   f"({proxy.share_rate_limited:.0%}); {sum(s.stored for s in summary.values()):,} objects "
                   f"in {seconds(elapsed)}; retries 20-500 ms, 5 per request (the default count)")
        return Row("429 storm (30%) during a backfill", "1 backfill", not problems, figures, problems)


# -- delivery scenarios: a listener on the emulator's signed deliveries -------------------------------------


class RequestLog:
    """Times every request the listener serves and checks each 2xx event is committed as it is answered.

    Wraps `WebhookListener._on_webhook` (the class attribute the route is bound from on start), so it
    sees what the listener answers, including requests whose client gave up. The check reads the
    database directly (never through the proxy a scenario breaks)."""

    def __init__(self, direct_url: str) -> None:
        self.direct_url = direct_url
        self.durations: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.answered_2xx: list[str] = []
        self.uncommitted: list[str] = []
        self._checks: set[asyncio.Task] = set()
        self._original: Callable | None = None
        self._conn: psycopg.AsyncConnection | None = None

    async def __aenter__(self) -> RequestLog:
        self._conn = await psycopg.AsyncConnection.connect(self.direct_url, autocommit=True)
        self._original = original = WebhookListener._on_webhook
        log = self

        async def timed(listener: WebhookListener, request: web.Request) -> web.Response:
            started = time.monotonic()
            status = "cancelled"
            try:
                response = await original(listener, request)
                status = str(response.status)
                if 200 <= response.status < 300:
                    event_id = json.loads(await request.read()).get("id")
                    log.answered_2xx.append(event_id)
                    task = asyncio.create_task(log._check(event_id))
                    log._checks.add(task)
                    task.add_done_callback(log._checks.discard)
                return response
            finally:
                log.durations.append(time.monotonic() - started)
                log.statuses[status] += 1

        WebhookListener._on_webhook = timed  # type: ignore[method-assign]
        return self

    async def __aexit__(self, *exc: object) -> None:
        WebhookListener._on_webhook = self._original  # type: ignore[method-assign]
        await asyncio.gather(*self._checks, return_exceptions=True)
        if self._conn is not None:
            await self._conn.close()

    async def _check(self, event_id: str) -> None:
        assert self._conn is not None
        cursor = await self._conn.execute(
            "SELECT EXISTS (SELECT 1 FROM stripe._events WHERE id = %s) "
            "OR EXISTS (SELECT 1 FROM stripe._dead_letters WHERE event_id = %s)", (event_id, event_id))
        row = await cursor.fetchone()
        if not (row and row[0]):
            self.uncommitted.append(event_id)

    @property
    def longest(self) -> float:
        return max(self.durations, default=0.0)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.durations)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def emulator_for_deliveries(seed: int, **faults: Any) -> StripeEmulator:
    """Stripe's redelivery schedule, compressed: 0.5 s doubling to at most 5 s, for long enough."""
    return StripeEmulator(seed=seed, customers=40, start=START, end=END, webhook_retry_base_delay=0.5,
                          webhook_retry_max_delay=5.0, webhook_max_attempts=200, webhook_timeout=10.0, **faults)


def delivery_problems(emu: StripeEmulator, events: list[dict], logged: set[str]) -> list[str]:
    """Events never acknowledged, or not logged once in stripe._events."""
    problems = []
    # The emulator counts down each event's pending_webhooks as deliveries succeed (its delivery log
    # keeps only the last 20,000 attempts).
    pending = {e["id"]: e.get("pending_webhooks") for e in emu.events()}
    succeeded = {d["event"] for d in emu.deliveries() if d["status"] is not None and 200 <= d["status"] < 300}
    ids = [e["id"] for e in events]
    unacknowledged = [i for i in ids if pending.get(i) != 0 and i not in succeeded]
    if unacknowledged:
        problems.append(f"{len(unacknowledged)} events never acknowledged (e.g. {unacknowledged[:2]})")
    missing = [i for i in ids if i not in logged]
    if missing:
        problems.append(f"{len(missing)} events not in stripe._events (e.g. {missing[:2]})")
    gave_up = emu.stats().get("deliveries", {}).get("gave_up", 0)
    if gave_up:
        problems.append(f"the emulator gave up {gave_up} deliveries")
    return problems


def outcome_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT outcome, count(*) FROM stripe._events GROUP BY 1 ORDER BY 2 DESC"))


async def logged_events(sync: StripeSync) -> set[str]:
    return {r["id"] for r in await sync.database.fetch_all("SELECT id FROM stripe._events")}


# -- 2. shuffled deliveries with duplicates and same-second ties ------------------------------------------


async def scenario_shuffle(server: str, sizes: Sizes, rng: random.Random) -> Row:
    with fresh_database(server, "chaos_shuffle") as url, emulator_for_deliveries(rng.randrange(1000)) as emu:
        emu.set_webhook_faults(duplicate=0.2, reorder=0.3)
        async with RequestLog(url) as requests, StripeSync(engine_config(url, emu)) as sync, \
                sync.listener(port=0, manage_webhook=True, catch_up=False):
            started = time.monotonic()
            events: list[dict] = []
            bursts = 0
            while len(events) < sizes.shuffle_events:
                # Half the changes in bursts of one second; the others a few to a second.
                burst = rng.random() < 0.5
                bursts += burst
                n = min(sizes.burst if burst else 5, sizes.shuffle_events - len(events))
                events += await asyncio.to_thread(emu.mutate_random, n, None, burst)
                emu.clock.advance(1)
            drained = await emu.wait_for_deliveries_async(1800)
            elapsed = time.monotonic() - started
            problems = [] if drained else ["deliveries still pending after 1800 s"]
            differing = await mismatches(sync, emu, events)
            problems += differing
            logged = await logged_events(sync)
        problems += delivery_problems(emu, events, logged)
        if requests.uncommitted:
            problems.append(f"{len(requests.uncommitted)} events answered 2xx before they were committed")
        bad = {s: n for s, n in requests.statuses.items() if s != "200"}
        if bad:
            problems.append(f"answers other than 200: {bad}")
        stats = emu.stats().get("deliveries", {})
        per_second = Counter((e["data"]["object"].get("id"), e["created"]) for e in events)
        tied = sum(n for n in per_second.values() if n > 1)
        outcomes = outcome_counts(url)
        figures = (f"{len(events):,} events ({bursts} one-second bursts of {sizes.burst} changes), {tied:,} of "
                   f"them sharing their object's second with another "
                   f"(up to {max(per_second.values())}); {sum(requests.statuses.values()):,} deliveries "
                   f"({stats.get('duplicated', 0):,} duplicated, {stats.get('reordered', 0):,} reordered) in "
                   f"{seconds(elapsed)}; outcomes {outcomes}; {len(differing)} objects differ")
        return Row("signed events shuffled, 20% duplicates, same-second ties", "1", not problems, figures, problems)


# -- 3. the database unreachable or frozen during deliveries ---------------------------------------------

PROXY_MAIN = """
import asyncio, sys
sys.path.insert(0, sys.argv[2])
from webhook_support import PostgresProxy
async def main():
    proxy = await PostgresProxy(sys.argv[1]).start()
    print(proxy.url, flush=True)
    loop = asyncio.get_running_loop()
    while True:
        command = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if command == "down":
            await proxy.down()
        elif command == "up":
            await proxy.up()
        else:
            await proxy.close()
            return
        print("ok", flush=True)
asyncio.run(main())
"""
"""tests/webhook_support.py's PostgresProxy in a process of its own: `down`/`up` on stdin, and SIGSTOP
freezes it (connections stay open, nothing is forwarded, new ones wait in the listen backlog)."""


class ProxyProcess:
    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", PROXY_MAIN, url, str(TESTS)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()

    def _command(self, command: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    async def down(self) -> None:
        await asyncio.to_thread(self._command, "down")

    async def up(self) -> None:
        await asyncio.to_thread(self._command, "up")

    def freeze(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def close(self) -> None:
        self.thaw()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@asynccontextmanager
async def changing(emu: StripeEmulator, rate: float, events: list[dict]) -> AsyncIterator[None]:
    """Random changes in the emulator (each delivered) at `rate` per second while the block runs."""
    stop = asyncio.Event()

    async def run() -> None:
        while not stop.is_set():
            events.extend(await asyncio.to_thread(emu.mutate_random, max(1, int(rate / 10))))
            try:
                await asyncio.wait_for(stop.wait(), 0.1)
            except TimeoutError:
                pass

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        stop.set()
        await task


class Prober:
    """Signed deliveries of our own besides the emulator's, from concurrent senders (Stripe delivers
    concurrently; the emulator sends one endpoint's first attempts one at a time): a new customer each,
    redelivered after any non-2xx answer until acknowledged, with no client timeout, so that how long
    the listener holds a request shows whole."""

    def __init__(self, url: str, senders: int = 4) -> None:
        self.url = url
        self.senders = senders
        self.acknowledged: list[str] = []
        self.attempts = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Prober:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        self._tasks = [asyncio.create_task(self._send(n)) for n in range(self.senders)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            assert self._session is not None
            await self._session.close()

    async def _send(self, sender: int) -> None:
        assert self._session is not None
        serial = 0
        while not self._stop.is_set():
            serial += 1
            customer = {**FIXTURES["customer"], "id": f"cus_probe{sender}x{serial}"}
            ev = event("customer.updated", customer, int(time.time()), f"evt_probe{sender}x{serial}")
            while True:
                body, signature = signed(ev)
                self.attempts += 1
                try:
                    async with self._session.post(self.url, data=body, headers={
                            "Stripe-Signature": signature, "Content-Type": "application/json"}) as response:
                        await response.read()
                        status = response.status
                except aiohttp.ClientError:
                    status = 0
                if 200 <= status < 300:
                    self.acknowledged.append(ev["id"])
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(0.05)


async def scenario_database(server: str, sizes: Sizes, rng: random.Random, how: str, duration: float) -> Row:
    db_timeout = 5.0
    # A delivery may wait for a writer slot, then for a connection, each up to db_timeout: answered
    # within three of them is bounded; a request held as long as the database is frozen is not.
    bound = 3 * db_timeout
    with fresh_database(server, f"chaos_{how}") as url, emulator_for_deliveries(rng.randrange(1000)) as emu:
        proxy = ProxyProcess(url)
        try:
            async with RequestLog(url) as requests, StripeSync(engine_config(proxy.url, emu)) as sync, \
                    sync.listener(port=0, manage_webhook=True, catch_up=False, db_timeout=db_timeout) as listener:
                events: list[dict] = []
                assert listener.state.local_url is not None
                async with changing(emu, sizes.outage_rate, events), Prober(listener.state.local_url) as prober:
                    await asyncio.sleep(2)
                    if how == "frozen":
                        proxy.freeze()
                    else:
                        await proxy.down()
                    await asyncio.sleep(duration)
                    if how == "frozen":
                        proxy.thaw()
                    else:
                        await proxy.up()
                    recovered = time.monotonic()
                    await asyncio.sleep(2)
                drained = await emu.wait_for_deliveries_async(300)
                drain = time.monotonic() - recovered
                problems = [] if drained else ["deliveries still pending 300 s after the database came back"]
                problems += await mismatches(sync, emu, events)
                logged = await logged_events(sync)
        finally:
            proxy.close()
        problems += delivery_problems(emu, events, logged)
        unlogged = [i for i in prober.acknowledged if i not in logged]
        if unlogged:
            problems.append(f"{len(unlogged)} probe events acknowledged but not in stripe._events")
        if requests.uncommitted:
            problems.append(f"{len(requests.uncommitted)} events answered 2xx before they were committed "
                            f"(e.g. {requests.uncommitted[:2]})")
        server_errors = {s: n for s, n in requests.statuses.items() if s not in ("200", "503")}
        if server_errors:
            problems.append(f"answers other than 200 and 503: {server_errors}")
        if requests.longest > bound:
            held = sum(1 for d in requests.durations if d > bound)
            problems.append(f"{held} requests held longer than {bound:.0f} s (the longest {requests.longest:.1f} s)")
        timeouts = sum(1 for d in emu.deliveries() if d["error"] and "Timeout" in d["error"])
        over_10 = sum(1 for d in requests.durations if d > 10)
        name = (f"database frozen {duration:.0f} s (SIGSTOP) during deliveries" if how == "frozen"
                else f"database unreachable {duration:.0f} s during deliveries")
        figures = (f"{len(events):,} emulator events and {len(prober.acknowledged):,} from 4 concurrent senders, "
                   f"{sum(requests.statuses.values()):,} requests "
                   f"({requests.statuses.get('503', 0):,} answered 503, {timeouts} given up by the emulator "
                   f"after 10 s); longest request {requests.longest:.1f} s (p99 {requests.percentile(0.99):.2f} s, "
                   f"{over_10} over 10 s, bound {bound:.0f} s); all delivered {seconds(drain)} after recovery; "
                   f"{len(requests.answered_2xx):,} 2xx each found committed: "
                   f"{'yes' if not requests.uncommitted else 'no'}")
        return Row(name, "1", not problems, figures, problems)


# -- 5. the hostile-input corpus --------------------------------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def hostile_corpus() -> list[tuple[str, bytes, str | None, str]]:
    """(name, body, signature or None, expectation): "4xx" or "dead_letter"."""
    now = int(time.time())
    customer = FIXTURES["customer"]

    def signed_text(name: str, text: str) -> tuple[str, bytes, str, str]:
        body, signature = signed_raw(text)
        return name, body, signature, "dead_letter"

    def signed_bytes(body: bytes) -> tuple[bytes, str]:
        """Signed over the bytes themselves (the SDK signs text)."""
        stamp = int(time.time())
        digest = hmac.new(WEBHOOK_SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        return body, f"t={stamp},v1={digest}"

    def signed_raw(text: str) -> tuple[bytes, str]:
        return text.encode(), stripe.WebhookSignature.generate_signature_header(text, WEBHOOK_SECRET, int(time.time()))

    def evt(obj: dict, tag: str) -> str:
        return json.dumps(event("customer.updated", obj, now, f"evt_chaos_{tag}"))

    big = json.dumps({"id": "evt_big", "type": "charge.updated",
                      "data": {"object": {"items": [{"n": i, "pad": "x" * 20} for i in range(170_000)]}}}).encode()
    assert len(big) > 5_000_000
    corpus: list[tuple[str, bytes, str | None, str]] = [
        ("unsigned: nesting 100,000 deep", b'{"id": "evt_nested", "type": "customer.updated", "data": '
         + nested(100_000).encode() + b"}", "t=1,v1=00", "4xx"),
        ("unsigned: 5 MB JSON", big, "t=1,v1=00", "4xx"),
        ("unsigned: 5 MB JSON, no signature header", big, None, "4xx"),
        ("unsigned: invalid UTF-8", b'{"id": "evt_\xff\xfe"}' + b"\xff\xfe" * 1000, "t=1,v1=00", "4xx"),
        ("unsigned: empty body", b"", "t=1,v1=00", "4xx"),
        ("unsigned: empty body, no signature header", b"", None, "4xx"),
        ("unsigned: a NaN event", evt({**customer, "id": "cus_chaosnan", "balance": float("nan")}, "u").encode(),
         None, "4xx"),
    ]
    plain = evt({**customer, "id": "cus_chaosplain"}, "plain")
    corpus += [
        signed_text("signed: NaN", evt({**customer, "id": "cus_chaosnan", "balance": float("nan")}, "nan")),
        signed_text("signed: Infinity", evt({**customer, "id": "cus_chaosinf", "balance": float("inf")}, "inf")),
        signed_text("signed: -Infinity in metadata",
                    evt({**customer, "id": "cus_chaosninf", "metadata": {"x": float("-inf")}}, "ninf")),
        signed_text("signed: integer beyond bigint", evt({**customer, "id": "cus_chaosbig", "balance": 2**70}, "big")),
        signed_text("signed: \\u0000 in an id", evt({**customer, "id": "cus_chaos\u0000nul"}, "nul")),
        signed_text("signed: escaped lone surrogate", evt({**customer, "id": "cus_chaossur",
                                                           "name": "x\ud800y"}, "sur")),
        signed_text("signed: nesting 5,000 deep", evt({**customer, "id": "cus_chaosdeep", "metadata": "DEEP"},
                                                      "deep").replace('"DEEP"', nested(5000))),
        ("signed: nesting 100,000 deep", *signed_raw('{"id": "evt_chaos_deep100k", "type": "customer.updated", '
                                                     '"data": ' + nested(100_000) + "}"), "dead_letter"),
        ("signed: invalid UTF-8", *signed_bytes(b'{"id": "evt_chaos_utf8", "name": "\xff\xfe"}'), "4xx"),
        ("signed: empty body", *signed_raw(""), "4xx"),
        ("signed: JSON, not an event", *signed_raw('[1, 2, 3]'), "4xx"),
        ("signed: a plain event (control)", *signed_raw(plain), "stored"),
    ]
    return corpus


HOSTILE_SENDER = """
import asyncio, json, sys, aiohttp
large = json.dumps({"id": "evt_large", "type": "charge.updated",
                    "data": {"object": {"items": [{"n": i} for i in range(250_000)]}}}).encode()
deep = b'{"id": "evt_deep", "type": "customer.updated", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
async def send():
    async with aiohttp.ClientSession() as session:
        while True:
            for body in (large, deep):
                async with session.post(sys.argv[1], data=body, headers={"Stripe-Signature": "t=1,v1=00"}) as r:
                    await r.read()
async def main():
    await asyncio.gather(send(), send())
asyncio.run(main())
"""
"""Two clients sending 3 MB and 100,000-deep unsigned bodies, in a process of their own (so that their
own cost is not the listener's)."""


async def latency_amid_hostile_bodies(session: aiohttp.ClientSession, target: str) -> tuple[float, float]:
    """Median answer time of valid events sent one after another, alone and while another process sends
    large or deeply nested unsigned bodies (refused: they must cost little)."""
    serial = 0

    async def valid_events(n: int) -> float:
        nonlocal serial
        times = []
        for _ in range(n):
            serial += 1
            body, signature = signed(event("customer.updated", {**FIXTURES["customer"], "id": f"cus_lat{serial}"},
                                           int(time.time()), f"evt_lat{serial}"))
            started = time.monotonic()
            async with session.post(target, data=body, headers={"Stripe-Signature": signature}) as response:
                await response.read()
            times.append(time.monotonic() - started)
        return sorted(times)[len(times) // 2]

    alone = await valid_events(40)
    sender = subprocess.Popen([sys.executable, "-c", HOSTILE_SENDER, target], stderr=subprocess.DEVNULL)
    try:
        await asyncio.sleep(1.5)  # started and sending
        amid = await valid_events(40)
    finally:
        sender.kill()
        sender.wait()
    return alone, amid


async def scenario_hostile(server: str, sizes: Sizes, rng: random.Random) -> Row:
    corpus = hostile_corpus()
    problems: list[str] = []
    answers: list[str] = []
    slowest = 0.0
    with fresh_database(server, "chaos_hostile") as url, emulator_for_deliveries(rng.randrange(1000)) as emu:
        async with StripeSync(engine_config(url, emu)) as sync, \
                sync.listener(port=0, manage_webhook=False, catch_up=False) as listener, \
                aiohttp.ClientSession() as session:
            target = listener.state.local_url
            assert target is not None
            for name, body, signature, expected in corpus:
                for delivery in (1, 2):  # a retry of the same delivery must get the same kind of answer
                    headers = {"Content-Type": "application/json"}
                    if signature is not None:
                        headers["Stripe-Signature"] = signature
                    started = time.monotonic()
                    async with session.post(target, data=body, headers=headers) as response:
                        status, text = response.status, await response.text()
                    slowest = max(slowest, time.monotonic() - started)
                    try:
                        outcome = json.loads(text).get("outcome")
                    except ValueError:
                        outcome = None
                    if delivery == 1:
                        answers.append(f"{status}" + (f" {outcome}" if outcome else ""))
                    if status >= 500:
                        problems.append(f"{name}: {status} {text[:120]}")
                    elif expected == "4xx" and not 400 <= status < 500:
                        problems.append(f"{name}: {status} {outcome}, a 4xx expected")
                    elif expected != "4xx" and (status >= 300 or outcome not in (expected, "duplicate")):
                        problems.append(f"{name}: {status} {outcome}, {expected} expected")
            dead = await sync.database.fetch_all("SELECT event_id, deliveries, reason FROM stripe._dead_letters")
            events = await sync.database.fetch_all("SELECT id FROM stripe._events")
            alone, amid = await latency_amid_hostile_bodies(session, target)
            server_errors = listener.state.server_errors
        expected_dead = sum(1 for *_, e in corpus if e == "dead_letter")
        if len(dead) != expected_dead or any(r["deliveries"] != 2 for r in dead):
            problems.append(f"dead letters: {[(r['event_id'], r['deliveries']) for r in dead]}, "
                            f"{expected_dead} with 2 deliveries each expected")
        if [r["id"] for r in events] != ["evt_chaos_plain"]:
            problems.append(f"stripe._events holds {[r['id'] for r in events]}, only the control event expected")
        if server_errors:
            problems.append(f"the listener counted {server_errors} server errors")
    kinds = Counter(answers)
    figures = (f"{len(corpus)} inputs, each sent twice: answers {dict(sorted(kinds.items()))}; "
               f"{len(dead)} dead letters; slowest answer {slowest * 1000:.0f} ms; valid events p50 "
               f"{alone * 1000:.0f} ms alone, {amid * 1000:.0f} ms while another process sends 3 MB and "
               "100,000-deep unsigned bodies on 2 connections")
    return Row("hostile input over HTTP", f"{len(corpus)} inputs x 2", not problems, figures, problems)


# -- driver ----------------------------------------------------------------------------------------------

SCENARIO_TIMEOUT = 1800.0
SCENARIOS = ("kill9", "shuffle", "outage", "frozen", "storm429", "hostile")


async def run(args: argparse.Namespace) -> list[Row]:
    sizes = QUICK if args.quick else FULL
    rng = random.Random(args.seed)
    chosen = args.only or list(SCENARIOS)
    rows: list[Row] = []
    jobs: list[tuple[str, Callable[[], Any]]] = []
    for name in SCENARIOS:
        if name not in chosen:
            continue
        if name == "kill9":
            jobs.append(("kill -9 during a backfill", lambda: scenario_kill9(args.database_url, sizes, rng)))
        elif name == "shuffle":
            jobs.append(("shuffled deliveries", lambda: scenario_shuffle(args.database_url, sizes, rng)))
        elif name == "outage":
            for duration in sizes.outages:
                jobs.append((f"database unreachable {duration:.0f} s", lambda d=duration: scenario_database(
                    args.database_url, sizes, rng, "outage", d)))
        elif name == "frozen":
            jobs.append((f"database frozen {sizes.frozen:.0f} s", lambda: scenario_database(
                args.database_url, sizes, rng, "frozen", sizes.frozen)))
        elif name == "storm429":
            jobs.append(("429 storm", lambda: scenario_storm429(args.database_url, sizes, rng)))
        elif name == "hostile":
            jobs.append(("hostile input", lambda: scenario_hostile(args.database_url, sizes, rng)))
    for title, job in jobs:
        print(f"chaos: {title} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            row = await asyncio.wait_for(job(), SCENARIO_TIMEOUT)
        except Exception as error:
            traceback.print_exc()
            row = Row(title, "-", False, "", [f"raised {type(error).__name__}: {error}"[:300]])
        took = time.monotonic() - started
        row.figures += f" [{seconds(took)}]"
        rows.append(row)
        print(f"chaos: {title}: {'holds' if row.ok else 'FAILS'} ({seconds(took)})", file=sys.stderr, flush=True)
        for problem in row.problems[:20]:
            print(f"    {problem}", file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[Row]) -> str:
    def cell(text: str) -> str:
        return " ".join(text.split()).replace("|", "\\|")

    lines = ["| scenario | runs | result | figures |", "|---|---|---|---|"]
    for row in rows:
        result = "holds" if row.ok else "FAILS: " + "; ".join(row.problems[:3])
        lines.append(f"| {cell(row.scenario)} | {cell(row.runs)} | {cell(result)} | {cell(row.figures)} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("STRIPE_SYNC_CHAOS_DATABASE_URL")
                        or os.environ.get("STRIPE_SYNC_TEST_DATABASE_URL") or DEFAULT_SERVER,
                        help="a PostgreSQL server (any database on it): each scenario creates and drops its own")
    parser.add_argument("--quick", action="store_true", help="small sizes and short outages: a smoke run")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, help="run only these scenarios")
    parser.add_argument("--verbose", action="store_true", help="show the engine's warnings (dead letters, retries)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.ERROR,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.verbose:  # the pool's reconnection attempts during an outage are expected
        logging.getLogger("psycopg").setLevel(logging.ERROR)
    started = time.monotonic()
    print(f"chaos: seed {args.seed}, {'quick' if args.quick else 'full'} sizes, {os.cpu_count()} CPUs",
          file=sys.stderr, flush=True)
    rows = asyncio.run(run(args))
    print(markdown(rows))
    print(f"\n{sum(r.ok for r in rows)}/{len(rows)} rows hold; seed {args.seed}; "
          f"{seconds(time.monotonic() - started)} in all")
    return 0 if rows and all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
