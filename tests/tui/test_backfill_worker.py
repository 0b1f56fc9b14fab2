"""The console does no bulk work: a backfill started on screen 3 runs in a worker process (the headless
CLI), which the console follows, stops, resumes and, when quitting, stops or leaves running.

Real parts throughout: PostgreSQL, the emulator over HTTP, and a real child process. A request budget of
2/s keeps a run of every type going long enough to act on it mid-run; nothing here measures time.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from textual.widgets import Button, Input, Static

from stripe_sync_core.config import SyncConfig
from stripe_sync_core.progress import RecordingSink
from stripe_sync_core.results import ObjectBackfillResult
from stripe_sync_core.stripe_api import ApiStats
from stripe_sync_tui.backfill_process import BackfillCommand, BackfillProcess, RequestStats
from stripe_sync_tui.output import HeadlessProgress, Output
from stripe_sync_tui.screens.backfill import BackfillScreen
from stripe_sync_tui.screens.dialogs import QuitDialog
from stripe_sync_tui.widgets.grid import ChunkGrid

from .conftest import SIZE, backfill_screen, loaded, until

WORKER_STARTS = 90.0
"""Seconds a test waits for a worker to start or end (a Python process, on a machine shared with others)."""


def chunk_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT status, count(*) FROM stripe._sync_obj_runs GROUP BY status").fetchall()
    return {status: count for status, count in rows}


def open_runs(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM stripe._sync_runs WHERE closed_at IS NULL").fetchone()[0]


def command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")


async def wait_for(predicate: Any, timeout: float = WORKER_STARTS) -> None:
    """Outside the app (after it exited): poll until `predicate()` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {predicate}"
        await asyncio.sleep(0.05)


def worker_settings(pid: int) -> dict[str, Any]:
    environment = dict(entry.split("=", 1) for entry in
                       Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in entry)
    return json.loads(environment["STRIPE_SYNC_SETTINGS"])


def title(screen: BackfillScreen) -> str:
    return str(screen.query_one("#backfill-title", Static).render())


@contextmanager
def reaped(workers: list[BackfillProcess]) -> Iterator[None]:
    """Whatever a test leaves running is stopped, and a detached worker's files removed."""
    try:
        yield
    finally:
        for worker in workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait(30)
            if worker.directory is not None:
                shutil.rmtree(worker.directory, ignore_errors=True)


async def start_backfill(pilot: Any, *, objects: list[str] | None = None, budget: str = "2",
                         concurrency: str = "") -> tuple[BackfillScreen, BackfillProcess]:
    """Screen 3, the given types (default: the form's, every type), `s`; returns once the worker runs."""
    app = pilot.app
    screen = await backfill_screen(pilot, objects)
    screen.query_one("#budget", Input).value = budget
    screen.query_one("#concurrency", Input).value = concurrency
    await pilot.press("s")
    assert screen.running
    await until(pilot, lambda: app.engine.backfill_worker is not None, WORKER_STARTS)
    worker = app.engine.backfill_worker
    assert worker is not None and worker.pid != os.getpid()
    return screen, worker


# -- the command and its stream, without a process ----------------------------------------------------


def test_the_workers_command_line_is_one_the_cli_accepts():
    from stripe_sync_core.chunking import parse_created_bound
    from stripe_sync_tui.cli import build_parser

    command = BackfillCommand(("customers", "invoices"), created_gte=1_765_843_200, created_lte=1_768_435_199,
                              chunk="week", concurrency=1)
    args = build_parser().parse_args(command.arguments())
    assert (args.headless, args.json, args.command, args.objects, args.chunk, args.concurrency, args.join) == \
        (True, True, "backfill", ["customers,invoices"], "week", 1, False)
    assert (parse_created_bound(args.since), parse_created_bound(args.until, end=True)) == (1_765_843_200, 1_768_435_199)
    joined = build_parser().parse_args(BackfillCommand(None, concurrency=3).arguments())
    assert (joined.join, joined.concurrency, joined.since, joined.chunk) == (True, 3, None, None)
    assert build_parser().parse_args(BackfillCommand(("all",)).arguments()).objects == ["all"]


def test_each_record_of_the_stream_replays_as_the_call_that_printed_it():
    """What `HeadlessProgress` prints with --json, `BackfillProcess.replay` turns back into the same
    progress-sink calls: the console's sink sees a worker as it saw the engine in process."""
    stats = ApiStats(requests=40, retries=3, rate_limited=2)
    calls: list[tuple[str, tuple]] = [
        ("run_started", (7, ["customers", "invoices"], 3)),
        ("chunk_started", (7, "customers", 11, 100, 200)),
        ("objects_estimated", (7, "customers", 250)),
        ("objects_stored", (7, "customers", 11, 100)),
        ("request_rate", (12.5,)),
        ("chunk_done", (7, "customers", 11, "complete", 100, None)),
        ("chunk_started", (7, "invoices", 12, None, None)),
        ("chunk_done", (7, "invoices", 12, "error", 0, "Stripe answered 500")),
        ("message", ("warning", "split chunk 11")),
    ]
    stream = io.StringIO()
    printer = HeadlessProgress(Output(json_mode=True, stdout=stream, stderr=io.StringIO()))
    printer.api_stats = stats
    for name, args in calls:
        getattr(printer, name)(*args)
    result = ObjectBackfillResult(stored=100, errors=1, error_messages=["Stripe answered 500"], duration=1.5,
                                  chunks=2, status="error", estimated_total=250, run_id=7)
    stream.write(json.dumps({"kind": "backfill", "object": "customers", **result.to_dict()}) + "\n")

    worker = BackfillProcess(BackfillCommand(("customers",)), SyncConfig())
    sink = RecordingSink()
    for line in stream.getvalue().splitlines():
        worker.replay(json.loads(line), sink)
    assert sink.calls == calls
    assert worker.run_id == 7 and worker.results == {"customers": result}
    assert worker.held_chunks == set()  # every chunk it started, it reported done
    assert worker.stats == RequestStats(12.5, requests=40, rate_limited=2, retries=3)


# -- the console and a real worker --------------------------------------------------------------------


async def test_a_backfill_started_here_runs_in_a_worker_process_and_completes(make_app, clean_db, stripe_server):
    app = make_app()
    workers: list[BackfillProcess] = []
    with reaped(workers):
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            console_requests = app.engine.sync.stripe.stats.requests
            screen, worker = await start_backfill(pilot, objects=["customers"], budget="0")
            workers.append(worker)
            arguments = command_line(worker.pid)
            assert arguments[1:] == ["-m", "stripe_sync_tui.cli", "--headless", "--json", "backfill", "customers",
                                     "--chunk", "auto"]
            assert not any(stripe_server.secret_key in argument for argument in arguments)
            # The form's request budget is the worker's (its settings), not the console's own engine's.
            assert worker_settings(worker.pid)["max_requests_per_second"] == 0
            # Bulk work yields the CPU to the console: the worker runs at a lower priority.
            assert os.getpriority(os.PRIO_PROCESS, worker.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
            assert app.engine.sync.stripe.budget.rate == 25  # a test key's default, untouched

            await until(pilot, lambda: not screen.running, WORKER_STARTS)
            assert worker.process is not None and worker.process.returncode == 0
            assert any("Backfill finished: 5 objects stored." in text for text in app.notified), app.notified
            await until(pilot, lambda: "finished" in title(screen))
            assert f"Run #{worker.run_id}" in title(screen)
            grid = screen.query_one(ChunkGrid).counts()
            assert set(grid) == {"complete"}
            # The console itself made no request to Stripe for it: the worker did all of it.
            assert app.engine.sync.stripe.stats.requests == console_requests
    assert open_runs(clean_db) == 0
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM stripe.customers").fetchone()[0] == 5


async def test_the_running_runs_title_shows_its_requests_429s_and_retries(make_app, clean_db, stripe_server):
    app = make_app()
    workers: list[BackfillProcess] = []
    with reaped(workers):
        async with app.run_test(size=SIZE) as pilot:
            screen, worker = await start_backfill(pilot)
            workers.append(worker)
            await until(pilot, lambda: worker.stats is not None, WORKER_STARTS)
            await until(pilot, lambda: "req/s" in title(screen))
            shown = title(screen)
            assert "429s 0" in shown and "retries 0" in shown and f"pid {worker.pid}" in shown
            await pilot.press("c")
            await until(pilot, lambda: not screen.running, WORKER_STARTS)


async def test_cancel_stops_the_worker_cleanly_and_leaves_the_run_resumable(make_app, clean_db, stripe_server):
    app = make_app()
    workers: list[BackfillProcess] = []
    with reaped(workers):
        async with app.run_test(size=SIZE) as pilot:
            screen, worker = await start_backfill(pilot)
            workers.append(worker)
            await until(pilot, lambda: screen.run_id is not None, WORKER_STARTS)
            await pilot.press("c")
            assert "stopping" in title(screen) or not screen.running  # a worker may stop before this frame
            await pilot.press("c")  # impatient: still one clean stop, not an interrupted clean-up
            await until(pilot, lambda: not screen.running, WORKER_STARTS)
            assert worker.process is not None and worker.process.returncode == 130  # the CLI's Ctrl-C
            assert any("Backfill cancelled" in text for text in app.notified), app.notified
            await until(pilot, lambda: screen.resumable is not None)
            assert screen.resumable.run_id == worker.run_id
            assert not screen.query_one("#start", Button).disabled
    counts = chunk_counts(clean_db)
    assert open_runs(clean_db) == 1
    assert counts.get("running", 0) == 0 and counts.get("pending", 0) >= 1, counts


async def test_a_worker_stopped_from_elsewhere_says_so(make_app, clean_db, stripe_server):
    app = make_app()
    workers: list[BackfillProcess] = []
    with reaped(workers):
        async with app.run_test(size=SIZE) as pilot:
            screen, worker = await start_backfill(pilot)
            workers.append(worker)
            await until(pilot, lambda: worker.run_id is not None, WORKER_STARTS)
            os.kill(worker.pid, signal.SIGTERM)  # an operator's `kill`: the CLI stops as on Ctrl-C
            await until(pilot, lambda: not screen.running, WORKER_STARTS)
            assert any("stopped by a signal from outside the console" in text for text in app.notified), \
                app.notified
            await until(pilot, lambda: screen.resumable is not None)
    assert chunk_counts(clean_db).get("running", 0) == 0


async def test_a_killed_worker_is_reported_and_resume_completes_the_run(make_app, clean_db, stripe_server):
    app = make_app()
    workers: list[BackfillProcess] = []
    with reaped(workers):
        async with app.run_test(size=SIZE) as pilot:
            screen, worker = await start_backfill(pilot)
            workers.append(worker)
            await until(pilot, lambda: bool(worker.held_chunks), WORKER_STARTS)
            os.kill(worker.pid, signal.SIGKILL)
            await until(pilot, lambda: not screen.running, WORKER_STARTS)
            killed = [text for text in app.notified if "was killed (SIGKILL)" in text]
            assert killed, app.notified
            assert "still read 'running'" in killed[0] and "shift+r resumes" in killed[0]
            assert chunk_counts(clean_db).get("running", 0) >= 1  # nobody gave them back
            await until(pilot, lambda: screen.resumable is not None, WORKER_STARTS)
            assert "worker killed" in title(screen)

            screen.query_one("#budget", Input).value = "0"
            await pilot.press("R")
            await until(pilot, lambda: app.engine.backfill_worker is not None, WORKER_STARTS)
            resumed = app.engine.backfill_worker
            assert resumed is not None and resumed.pid != worker.pid
            workers.append(resumed)
            assert "--join" in command_line(resumed.pid)
            await until(pilot, lambda: not screen.running, WORKER_STARTS)
            assert resumed.process is not None and resumed.process.returncode == 0
            assert resumed.run_id == worker.run_id
    assert open_runs(clean_db) == 0
    assert set(chunk_counts(clean_db)) <= {"complete"}
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM stripe.customers").fetchone()[0] == 5


async def test_resume_runs_at_the_forms_concurrency(make_app, clean_db, stripe_server):
    """The defect: resume ignored concurrency 1 and ran 7-8 chunks at once."""
    app = make_app()
    workers: list[BackfillProcess] = []
    with reaped(workers):
        async with app.run_test(size=SIZE) as pilot:
            screen, worker = await start_backfill(pilot)
            workers.append(worker)
            await until(pilot, lambda: screen.run_id is not None, WORKER_STARTS)
            await pilot.press("c")
            await until(pilot, lambda: screen.resumable is not None, WORKER_STARTS)
            assert chunk_counts(clean_db).get("pending", 0) >= 2

            screen.query_one("#concurrency", Input).value = "1"
            screen.query_one("#budget", Input).value = "0"
            await pilot.press("R")
            await until(pilot, lambda: app.engine.backfill_worker is not None, WORKER_STARTS)
            resumed = app.engine.backfill_worker
            assert resumed is not None
            workers.append(resumed)
            arguments = command_line(resumed.pid)
            assert arguments[arguments.index("--concurrency") + 1] == "1"
            most_running = 0
            while screen.running:
                most_running = max(most_running, chunk_counts(clean_db).get("running", 0))
                await pilot.pause(0.02)
            assert resumed.process is not None and resumed.process.returncode == 0
            assert most_running <= 1
    assert open_runs(clean_db) == 0


async def test_quit_with_a_worker_running_asks_and_detach_leaves_it_running(make_app, clean_db, stripe_server):
    app = make_app()
    workers: list[BackfillProcess] = []
    with reaped(workers):
        async with app.run_test(size=SIZE) as pilot:
            screen, worker = await start_backfill(pilot)
            workers.append(worker)
            await until(pilot, lambda: worker.run_id is not None, WORKER_STARTS)
            await pilot.press("ctrl+c")
            assert isinstance(app.screen, QuitDialog)
            assert app.screen.focused is app.screen.query_one("#cancel", Button)
            await pilot.press("escape")
            assert app.screen is screen and worker.running
            await pilot.press("q")
            assert isinstance(app.screen, QuitDialog)
            await pilot.click("#detach")
        assert app.detached_worker is worker
        assert worker.process is not None and worker.process.poll() is None, "detached: still working"
        streamed = worker.progress_path.stat().st_size
        await wait_for(lambda: worker.progress_path.stat().st_size > streamed)  # still reporting progress
        worker.process.send_signal(signal.SIGINT)  # the way the console's exit message says to stop it
        assert worker.process.wait(WORKER_STARTS) == 130
    assert open_runs(clean_db) == 1 and chunk_counts(clean_db).get("running", 0) == 0


async def test_quit_and_stop_stops_the_worker_cleanly_before_exiting(make_app, clean_db, stripe_server):
    app = make_app()
    workers: list[BackfillProcess] = []
    with reaped(workers):
        async with app.run_test(size=SIZE) as pilot:
            _, worker = await start_backfill(pilot)
            workers.append(worker)
            await until(pilot, lambda: worker.run_id is not None, WORKER_STARTS)
            await pilot.press("q")
            assert isinstance(app.screen, QuitDialog)
            await pilot.click("#stop")
            await until(pilot, lambda: not worker.running, WORKER_STARTS)
        assert worker.process is not None and worker.process.returncode == 130
        assert not worker.progress_path.parent.exists()  # not detached: its files are gone with it
    assert open_runs(clean_db) == 1 and chunk_counts(clean_db).get("running", 0) == 0
