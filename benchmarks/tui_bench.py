"""Console benchmarks: start-up time and key-to-frame latency while a backfill runs. Prints figures only.

    STRIPE_SYNC_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python benchmarks/tui_bench.py [--customers 3000] [--keys 60]

- start-up: a fresh process from spawn to the first frame, and to the first data on screen;
- key-to-frame: a key press until its frame is composed, with a backfill of the emulator running in the
  console's engine thread and the live refresh at 1 s;
- a feed of 100,000 events and a table of 10,000 chunks: ingest time and the key latency after.
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

import psycopg

os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
NAME = "stripe_sync_tui_bench"

STARTUP_PROBE = r"""
import json, sys, time
spawned = float(sys.argv[1])
imported_at = None
from stripe_sync_core.config import SyncConfig
from stripe_sync_tui.app import ConsoleApp, ConsoleSettings
imported_at = time.time()
config = SyncConfig(database_url=sys.argv[2], stripe_secret_key=sys.argv[3], stripe_api_base=sys.argv[4])
app = ConsoleApp(config, settings=ConsoleSettings(health_interval=None))
marks = {}
async def pilot(p):
    await p.pause()
    marks["first_frame"] = time.time() - spawned
    while not (app.connected and getattr(app.screen, "loads", 0)):
        await p.pause(0.01)
    marks["first_data"] = time.time() - spawned
    app.exit()
app.run(headless=True, size=(120, 36), auto_pilot=pilot)
marks["imports"] = imported_at - spawned
print(json.dumps(marks))
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def startup(url: str, key: str, api_base: str, runs: int = 3) -> list[dict]:
    results = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", STARTUP_PROBE, str(time.time()), url, key, api_base],
                             capture_output=True, text=True, timeout=60)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


async def key_latency(url: str, key: str, api_base: str, keys: int, budget: float = 25) -> dict:
    from stripe_sync_core.config import SyncConfig
    from stripe_sync_tui.app import ConsoleApp, ConsoleSettings
    from stripe_sync_tui.screens.backfill import BackfillScreen

    config = SyncConfig(database_url=url, stripe_secret_key=key, stripe_api_base=api_base,
                        max_requests_per_second=0)
    app = ConsoleApp(config, settings=ConsoleSettings(health_interval=None))
    figures: dict = {}

    frames: list[float] = []
    display = app._display

    def recording_display(*args: object) -> None:  # every frame the app writes to the terminal
        frames.append(time.perf_counter())
        display(*args)  # type: ignore[arg-type]

    app._display = recording_display  # type: ignore[method-assign]

    async def press_keys(pilot: object, selector: str = "DataTable", count: int | None = None) -> dict:
        """Post a key as a terminal would; latency = until the first frame showing its effect."""
        latencies = []
        for i in range(count or keys):
            table = app.screen.query(selector).first()
            table.focus()
            before = table.cursor_row
            started = time.perf_counter()
            app.simulate_key("down" if i % 2 == 0 else "up")
            while True:
                await asyncio.sleep(0.001)
                if table.cursor_row != before and frames and frames[-1] > started:
                    break
                if time.perf_counter() - started > 5:
                    break
            latencies.append((frames[-1] - started) * 1000)
            await asyncio.sleep(0.05)
        return {"p50": statistics.median(latencies), "p95": percentile(latencies, 0.95),
                "max": max(latencies), "n": len(latencies)}

    async with app.run_test(size=(120, 36)) as pilot:
        while not app.connected:
            await pilot.pause(0.05)
        await pilot.press("question_mark")  # a table with rows, nothing running
        figures["idle_key_to_frame_ms"] = await press_keys(pilot)
        await pilot.press("escape", "3")
        screen = app.screen
        assert isinstance(screen, BackfillScreen)
        screen.query_one("#budget").value = str(budget)  # keep the run going while keys are measured
        await pilot.press("s")
        deadline = time.monotonic() + 60
        while screen.run_id is None and screen.running and time.monotonic() < deadline:
            await pilot.pause(0.05)
        if screen.run_id is None:
            raise SystemExit(f"the backfill did not start: {[n.message for n in app._notifications]}")
        await pilot.press("1")
        while not app.screen.query_one("#current").shown_keys:
            await pilot.pause(0.05)
        figures["key_to_frame_ms"] = await press_keys(pilot)
        figures["backfill_running_during_keys"] = screen.running
        await pilot.press("3", "c")

        await pilot.press("5")
        started = time.perf_counter()
        for i in range(100_000):
            app.sink.event_received(f"evt_{i:06d}", "customer.updated", "stored", 200)
        while app.sink._events or app.sink._events_signalled:
            await pilot.pause(0.01)
        figures["feed_100k_ingest_s"] = time.perf_counter() - started
        feed = app.screen.query_one("EventFeed")
        feed.focus()
        await pilot.pause()
        before_y = feed.scroll_offset.y
        started = time.perf_counter()
        app.simulate_key("up")
        while (feed.scroll_offset.y == before_y or frames[-1] < started) and time.perf_counter() - started < 5:
            await asyncio.sleep(0.001)
        figures["feed_100k_key_ms"] = (frames[-1] - started) * 1000
        figures["feed_lines_kept"] = feed.line_count

        from stripe_sync_tui.screens.runs import CHUNK_COLUMNS
        from stripe_sync_tui.widgets.table import FilterableTable

        await pilot.press("1")
        table = app.screen.query_one("#history", FilterableTable)
        rows = [(str(i), (str(i), "customers", "2025-01-01", "2025-01-02", "complete", "100", "1", ""))
                for i in range(10_000)]
        assert len(rows[0][1]) == len(CHUNK_COLUMNS)
        started = time.perf_counter()
        table.set_rows([(k, cells[:8]) for k, cells in rows])
        await pilot.pause()
        figures["table_10k_rows_set_ms"] = (time.perf_counter() - started) * 1000
        figures["table_10k_key_ms"] = (await press_keys(pilot, "#history DataTable", 10))["p50"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--keys", type=int, default=60)
    args = parser.parse_args()
    server = os.environ.get("STRIPE_SYNC_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    url = server.split("?")[0].rsplit("/", 1)[0] + f"/{NAME}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{NAME}"')
    try:
        from stripe_sync_core.migrate import run_migrations
        from stripe_sync_emulator import StripeEmulator

        run_migrations(url)
        with StripeEmulator(seed=1, customers=args.customers) as emulator:
            runs = startup(url, emulator.secret_key, emulator.api_base)
            for name in ("imports", "first_frame", "first_data"):
                values = [r[name] for r in runs]
                print(f"start-up {name:<12} median {statistics.median(values) * 1000:7.0f} ms  "
                      f"(runs: {', '.join(f'{v * 1000:.0f}' for v in values)})")
            figures = asyncio.run(key_latency(url, emulator.secret_key, emulator.api_base, args.keys))
        idle = figures["idle_key_to_frame_ms"]
        print(f"key-to-frame idle: p50 {idle['p50']:.1f} ms, p95 {idle['p95']:.1f} ms, max {idle['max']:.1f} ms")
        latency = figures["key_to_frame_ms"]
        print(f"key-to-frame under a backfill (running={figures['backfill_running_during_keys']}): "
              f"p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms, max {latency['max']:.1f} ms "
              f"over {latency['n']} keys")
        print(f"feed of 100,000 events: ingested in {figures['feed_100k_ingest_s']:.2f} s "
              f"({figures['feed_lines_kept']:,} lines kept), then a key to frame in {figures['feed_100k_key_ms']:.1f} ms")
        print(f"table of 10,000 rows (bounded to 1,000 shown): set in {figures['table_10k_rows_set_ms']:.0f} ms, "
              f"then key to frame p50 {figures['table_10k_key_ms']:.1f} ms")
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')


if __name__ == "__main__":
    main()
