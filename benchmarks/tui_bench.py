"""Console benchmarks: key-to-frame latency under load, and the console's CPU when idle. Prints figures only.

    STRIPE_SYNC_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python benchmarks/tui_bench.py [--size 100000] [--runs 3] [--keys 100]

Each run, on a fresh database, against one emulator process of `--size` customers (its rate limit off):

- start-up: a fresh process from spawn to the first frame, and to the first data on screen;
- under load: the console (in this process, interactive settings: 1 s refresh, health checks) runs a
  backfill of every object type at full speed (`max_requests_per_second=0`, started through
  `ConsoleEngine.backfill`, as screen 3 does) while its listener takes `--events-per-second` signed
  deliveries from a client process (`webhook_load.py --client`); key-to-frame latency is measured from a
  key posted as a terminal would until the first frame showing its effect: cursor moves on screen 1's
  live table, and switches between screens 1 and 5 (the feed following the deliveries; the first visit
  to screen 5, which builds it, is reported apart);
- idle: the backfill cancelled (its run left interrupted, as an operator leaves it), the listener idle;
  the CPU this process uses on each screen over `--idle-seconds` (all its threads: UI, engine, the
  listener's reader), and the listener process's.

Figures are medians over the runs; p99 is taken over all keys of a run, then the median of the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from bench_database import fresh_database
from bench_emulator import EmulatorProcess

from stripe_sync_tui.worker_priority import BACKFILL_NICENESS, LISTENER_NICENESS, run_below_console

os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
NAME = "stripe_sync_tui_bench"
HERE = Path(__file__).resolve().parent
SECRET = "whsec_benchmarkSigningSecret0000"  # webhook_load.py signs with it
SCREENS = ("runs", "webhooks", "backfill", "deletion", "listener")

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


def summary(latencies: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(latencies), "p99": percentile(latencies, 0.99), "max": max(latencies),
            "n": len(latencies)}


# -- processes around the console ------------------------------------------------------------------


def stripe_side(pid: int, niceness: int) -> None:
    """Run a stand-in for Stripe (the emulator, the delivery client) `niceness` below this process: on a
    real deployment Stripe's side is not on the operator's machine at all."""
    if niceness:
        run_below_console(pid, niceness)  # as the console runs its own workers


class Emulator(EmulatorProcess):
    """The emulator, run `niceness` below this process when asked (`--stripe-niceness`)."""

    def __init__(self, customers: int, niceness: int = 0) -> None:
        super().__init__(customers)
        stripe_side(self.process.pid, niceness)


def startup(url: str, key: str, api_base: str, runs: int) -> list[dict]:
    results = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", STARTUP_PROBE, str(time.time()), url, key, api_base],
                             capture_output=True, text=True, timeout=120)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


# -- one run ---------------------------------------------------------------------------------------


async def one_run(url: str, emulator: Emulator, args: argparse.Namespace) -> dict[str, Any]:
    from stripe_sync_core.config import SyncConfig
    from stripe_sync_tui.app import ConsoleApp, ConsoleSettings

    config = SyncConfig(database_url=url, stripe_secret_key=emulator.key, stripe_api_base=emulator.api_base,
                        stripe_webhook_secret=SECRET, max_requests_per_second=0, listener_port=0)
    app = ConsoleApp(config, settings=ConsoleSettings())  # the interactive console's settings
    figures: dict[str, Any] = {}
    frames: list[float] = []
    display = app._display

    def recording_display(*arguments: object) -> None:  # every frame the app writes to the terminal
        frames.append(time.perf_counter())
        display(*arguments)  # type: ignore[arg-type]

    app._display = recording_display  # type: ignore[method-assign]

    async def frame_after(started: float, done: Any) -> float:
        while not (done() and frames and frames[-1] > started):
            await asyncio.sleep(0.0005)
            if time.perf_counter() - started > 10:
                break
        return (frames[-1] - started) * 1000

    async def cursor_keys(count: int, still_loaded: Any) -> list[float]:
        latencies = []
        for i in range(count):
            if not still_loaded():
                break
            table = app.screen.query_one("#current DataTable")
            table.focus()
            before = table.cursor_row
            started = time.perf_counter()
            app.simulate_key("down" if i % 2 == 0 else "up")
            latencies.append(await frame_after(started, lambda t=table, b=before: t.cursor_row != b))
            await asyncio.sleep(args.key_gap)
        return latencies

    switch_cpu: list[float] = []
    first_visit: list[float] = []

    async def screen_switches(count: int) -> list[float]:
        """Key-to-frame of each switch; `switch_cpu` gets the UI thread's CPU over the same interval (the
        work a switch costs, whatever the machine's load)."""
        latencies = []
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile(time.thread_time)  # the UI thread's CPU: what load does not inflate
            profiler.enable()
        for i in range(count + 2):
            target = "listener" if i % 2 == 0 else "runs"
            started, cpu_started = time.perf_counter(), time.thread_time()
            app.simulate_key("5" if target == "listener" else "1")
            latency = await frame_after(started, lambda t=target: app.screen.name == t)
            if i < 2:  # the first visit to screen 5 builds it (once per console): reported apart
                first_visit.append(latency)
            else:
                latencies.append(latency)
                switch_cpu.append((time.thread_time() - cpu_started) * 1000)
            await asyncio.sleep(args.key_gap * 4)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        return latencies

    gc_pauses: list[float] = []
    gc_started: list[float] = []

    def time_collections(phase: str, info: dict) -> None:  # the collector's pauses in this process
        if phase == "start":
            gc_started[:] = [time.perf_counter()]
        elif gc_started and info.get("generation") == 2:
            gc_pauses.append((time.perf_counter() - gc_started[0]) * 1000)

    gc.callbacks.append(time_collections)
    async with app.run_test(size=(120, 36)) as pilot:
        while not app.connected:
            await pilot.pause(0.05)
        engine = app.engine
        assert engine is not None
        view = await engine.start_listener("127.0.0.1", 0)
        listener_pid = getattr(engine.listener, "pid", None)  # None: a listener in this process
        backfill = app.run_worker(engine.backfill(["all"]), group="bench-backfill", exit_on_error=False)
        current = app.screen.query_one("#current")
        deadline = time.monotonic() + 60
        while len(getattr(current, "shown_keys", [])) < 2 and time.monotonic() < deadline:
            await pilot.pause(0.05)
        if args.no_backfill:  # attribution: the same screen, with the run's rows, and no backfill going
            backfill.cancel()
            while not backfill.is_finished:
                await pilot.pause(0.05)

        def running() -> bool:
            return args.no_backfill or not backfill.is_finished

        # The deliveries: a client process at a fixed rate for about as long as the keys take.
        seconds = args.keys * (args.key_gap + 0.02) + args.switches * (args.key_gap * 4 + 0.05) + 3
        spec = {"url": view.local_url, "tag": f"tui{os.getpid()}_{time.monotonic_ns()}", "mix": "customers",
                "count": max(1, int(args.events_per_second * seconds)), "connections": 256,
                "rate": args.events_per_second or 1}
        client = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE / "webhook_load.py"), "--client", json.dumps(spec), stdout=asyncio.subprocess.PIPE)
        stripe_side(client.pid, args.stripe_niceness)
        await asyncio.sleep(1.0)  # the deliveries are flowing
        received_before = app.sink.events_received
        console = psutil.Process()
        cpu_before, wall_before = cpu_seconds(console), time.perf_counter()
        figures["cursor"] = summary(await cursor_keys(args.keys, running))
        figures["switch"] = summary(await screen_switches(args.switches))
        figures["switch_cpu"] = summary(switch_cpu)
        figures["first_visit"] = first_visit[0]
        figures["load_cpu"] = (cpu_seconds(console) - cpu_before) / (time.perf_counter() - wall_before) * 100
        figures["full_collections"] = {"n": len(gc_pauses), "max_ms": max(gc_pauses, default=0.0),
                                       "total_ms": sum(gc_pauses)}
        figures["backfill_running_throughout"] = running()
        out, _ = await client.communicate()
        figures["client"] = json.loads(out.decode().strip().splitlines()[-1])
        figures["events_in_feed"] = app.sink.events_received - received_before
        backfill.cancel()
        while not backfill.is_finished:
            await pilot.pause(0.05)
        runs_view = await engine.runs_view(app.clock.now())
        figures["stored_before_cancel"] = runs_view.current.total_processed if runs_view.current else 0
        figures["run_left"] = runs_view.current.status if runs_view.current else None

        idle: dict[str, float] = {}
        listener_idle: dict[str, float] = {}
        child = psutil.Process(listener_pid) if listener_pid else None
        for name in SCREENS:
            app.simulate_key(str(SCREENS.index(name) + 1))
            while app.screen.name != name:
                await pilot.pause(0.05)
            await asyncio.sleep(args.settle)
            before, child_before, wall = cpu_seconds(console), cpu_seconds(child) if child else 0.0, time.perf_counter()
            await asyncio.sleep(args.idle_seconds)
            elapsed = time.perf_counter() - wall
            idle[name] = (cpu_seconds(console) - before) / elapsed * 100
            if child:
                listener_idle[name] = (cpu_seconds(child) - child_before) / elapsed * 100
        figures["idle_cpu"] = idle
        figures["listener_idle_cpu"] = listener_idle
    gc.callbacks.remove(time_collections)
    return figures


def median_of(runs: list[dict], *path: str) -> float:
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value[key]
        values.append(value)
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000, help="customers in the emulator (every type scales)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keys", type=int, default=100, help="cursor keys per run under load")
    parser.add_argument("--switches", type=int, default=20, help="screen switches per run under load")
    parser.add_argument("--key-gap", type=float, default=0.05, help="seconds between keys")
    parser.add_argument("--events-per-second", type=float, default=500.0)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds on a screen before its idle CPU counts")
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up figures")
    parser.add_argument("--stripe-niceness", type=int, default=0, metavar="N",
                        help="run the emulator and the delivery client (Stripe's side, remote on a real "
                             "deployment) N below the console's CPU priority (default 0: they compete alike)")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the UI thread's CPU time during the switches")
    parser.add_argument("--no-backfill", action="store_true",
                        help="attribution: cancel the backfill once its rows show, before the keys")
    args = parser.parse_args()
    server = os.environ.get("STRIPE_SYNC_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    emulator = Emulator(args.size, args.stripe_niceness)
    print(f"tui_bench: {os.cpu_count()} CPUs, emulator of {args.size:,} customers ({emulator.objects:,} objects, "
          f"rate limit off), {args.runs} run(s), medians shown; Stripe's side (emulator, delivery client) at "
          f"niceness +{args.stripe_niceness}, the console's backfill worker and listener at their own "
          f"(+{BACKFILL_NICENESS}, +{LISTENER_NICENESS}); load average {os.getloadavg()[0]:.1f}")
    try:
        if not args.no_startup:
            with fresh_database(server, NAME) as url:
                runs = startup(url, emulator.key, emulator.api_base, args.runs)
            for name in ("imports", "first_frame", "first_data"):
                values = [r[name] for r in runs]
                print(f"start-up {name:<12} median {statistics.median(values) * 1000:7.0f} ms  "
                      f"(runs: {', '.join(f'{v * 1000:.0f}' for v in values)})")
        results = []
        for _ in range(args.runs):
            with fresh_database(server, NAME) as url:
                results.append(asyncio.run(one_run(url, emulator, args)))
    finally:
        emulator.close()

    for label, key in (("cursor keys on screen 1", "cursor"), ("screen switches 1<->5", "switch")):
        keys = ", ".join(str(r[key]["n"]) for r in results)
        p99s = ", ".join(f"{r[key]['p99']:.0f}" for r in results)
        print(f"key-to-frame under load, {label}: p50 {median_of(results, key, 'p50'):.1f} ms, "
              f"p99 {median_of(results, key, 'p99'):.1f} ms, max {median_of(results, key, 'max'):.1f} ms "
              f"({keys} keys; p99 per run: {p99s} ms)")
    print(f"  first switch to screen 5 (builds the screen and its feed, once per console; not in the figures "
          f"above): median {median_of(results, 'first_visit'):.1f} ms")
    print(f"  full garbage collections in the console process under load: "
          f"{', '.join(str(r['full_collections']['n']) for r in results)} per run, longest "
          f"{median_of(results, 'full_collections', 'max_ms'):.0f} ms, "
          f"{median_of(results, 'full_collections', 'total_ms'):.0f} ms in all (median of the runs)")
    print(f"  UI thread CPU per screen switch: p50 {median_of(results, 'switch_cpu', 'p50'):.1f} ms, "
          f"p99 {median_of(results, 'switch_cpu', 'p99'):.1f} ms (the switch's own work, whatever the load)")
    print(f"  load: backfill of every type running throughout: {[r['backfill_running_throughout'] for r in results]}; "
          f"{median_of(results, 'stored_before_cancel'):,.0f} objects stored before cancel; "
          f"deliveries {median_of(results, 'client', 'events_per_s'):,.0f}/s achieved "
          f"(statuses {results[-1]['client']['statuses']}, p99 {median_of(results, 'client', 'p99_ms'):.0f} ms), "
          f"{median_of(results, 'events_in_feed'):,.0f} reached the console's feed; "
          f"console CPU under load {median_of(results, 'load_cpu'):.0f}% of one core")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}")
    print(f"idle CPU of the console process (backfill cancelled, its run left open: {results[-1]['run_left']}; "
          "listener idle):")
    for name in SCREENS:
        listener = (f"; listener process {median_of(results, 'listener_idle_cpu', name):.1f}%"
                    if all(r["listener_idle_cpu"] for r in results) else "")
        per_run = ", ".join(f"{r['idle_cpu'][name]:.1f}" for r in results)
        print(f"  {SCREENS.index(name) + 1} {name:<9} {median_of(results, 'idle_cpu', name):5.1f}% of one core "
              f"(runs: {per_run}){listener}")


if __name__ == "__main__":
    main()
