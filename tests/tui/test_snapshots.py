"""SVG snapshots of every screen in each state (empty, populated, dialog open, error).

Deterministic: a frozen clock, fixed ids, still cursors, TEXTUAL_ANIMATIONS=none, a pinned database
label. Update with `--snapshot-update` after checking the change by eye (the report shows the diff).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from stripe_sync_tui import engine as console_engine
from stripe_sync_tui.sink import ConsoleSink
from stripe_sync_tui.widgets.table import FilterableTable

from .conftest import SIZE, loaded, until
from .seed import FROZEN, at, seed_account, seed_events, seed_managed_webhook, seed_runs

Step = Callable[[Any], Awaitable[None]]


def keys(*names: str, screen_loads: bool = False) -> Step:
    async def press(pilot: Any) -> None:
        await pilot.press(*names)
        if screen_loads:
            await loaded(pilot)

    return press


@pytest.fixture
def snap(snap_compare, make_app):
    def take(*steps: Step, app: Any = None, **app_options: Any) -> bool:
        app = app or make_app(**app_options)

        async def run_before(pilot: Any) -> None:
            await loaded(pilot)
            for step in steps:
                await step(pilot)
            await pilot.pause()

        return snap_compare(app, terminal_size=SIZE, run_before=run_before)

    return take


@pytest.fixture
def populated(clean_db, stripe_server):
    account = stripe_server.account_id
    seed_account(clean_db, account)
    seed_runs(clean_db, account)
    seed_managed_webhook(clean_db, account)
    seed_events(clean_db, account)
    return account


@pytest.fixture
def finished(clean_db, stripe_server):
    """Like `populated`, with every run closed (a deletion refuses while a run is open)."""
    account = stripe_server.account_id
    seed_account(clean_db, account)
    seed_runs(clean_db, account, open_run=False)
    seed_managed_webhook(clean_db, account)
    seed_events(clean_db, account)
    return account


# -- 1 sync runs ---------------------------------------------------------------------------------


def test_runs_empty(snap):
    assert snap()


def test_runs_populated(snap, populated):
    assert snap()


def test_runs_filtered(snap, populated):
    assert snap(keys("slash", "c", "h"))


def test_run_chunks(snap, populated):
    async def open_run_two(pilot: Any) -> None:
        pilot.app.screen.query_one("#history", FilterableTable).focus_table()
        await pilot.press("down", "enter")
        await loaded(pilot)

    assert snap(open_run_two)


# -- 2 webhooks ----------------------------------------------------------------------------------


def test_webhooks_empty(snap):
    assert snap(keys("2", screen_loads=True))


def test_webhooks_populated(snap, populated):
    assert snap(keys("2", screen_loads=True))


def fill(selector: str, value: str) -> Step:
    async def set_value(pilot: Any) -> None:
        pilot.app.screen.query_one(selector).value = value
        await pilot.pause()

    return set_value


def test_webhooks_create_dialog(snap, populated):
    assert snap(keys("2", screen_loads=True), keys("n"), fill("#url", "https://hooks.rocketrides.test/stripe"))


def test_webhooks_delete_confirmation(snap, populated):
    assert snap(keys("2", screen_loads=True), keys("d"))


def test_webhooks_read_only(snap, populated):
    assert snap(keys("2", screen_loads=True), read_only=True)


# -- 3 backfill ----------------------------------------------------------------------------------


def test_backfill_empty(snap):
    assert snap(keys("3"))


def test_backfill_plan(snap):
    async def plan(pilot: Any) -> None:
        await pilot.click("#preset-30")
        await pilot.click("#chunk-week")
        await pilot.press("p")

    assert snap(keys("3"), plan)


def test_backfill_interrupted_run(snap, populated):
    async def resumable(pilot: Any) -> None:
        await until(pilot, lambda: pilot.app.screen.resumable is not None)

    assert snap(keys("3", screen_loads=True), resumable)


# -- 4 delete account data ----------------------------------------------------------------------


def test_deletion_choose(snap, populated):
    assert snap(keys("4", screen_loads=True))


def _to_preview(pilot: Any) -> Awaitable[None]:
    async def step(pilot: Any) -> None:
        await pilot.press("enter")
        await until(pilot, lambda: pilot.app.screen.preview is not None)

    return step(pilot)


def test_deletion_refused_while_a_run_is_open(snap, populated):
    async def refused(pilot: Any) -> None:
        await pilot.press("enter")
        await until(pilot, lambda: "refused" in str(pilot.app.screen.query_one("#preview-title").render()))

    assert snap(keys("4", screen_loads=True), refused)


def test_deletion_preview(snap, finished):
    assert snap(keys("4", screen_loads=True), _to_preview)


def test_deletion_confirm(snap, finished, stripe_server):
    async def confirm(pilot: Any) -> None:
        await pilot.click("#preview-continue")
        pilot.app.screen.query_one("#confirm-input").value = stripe_server.account_id[:8]
        await pilot.pause()

    assert snap(keys("4", screen_loads=True), _to_preview, confirm)


def test_deletion_summary(snap, finished, stripe_server):
    async def execute(pilot: Any) -> None:
        screen = pilot.app.screen
        await pilot.click("#preview-continue")
        screen.query_one("#confirm-input").value = stripe_server.account_id
        await pilot.press("enter")
        await until(pilot, lambda: screen.step == "summary")

    assert snap(keys("4", screen_loads=True), _to_preview, execute)


# -- 5 listener ----------------------------------------------------------------------------------


def test_listener_stopped_with_history(snap, populated):
    assert snap(keys("5", screen_loads=True))


def test_listener_feed(snap, populated):
    async def deliveries(pilot: Any) -> None:
        sink = pilot.app.sink
        for i, (kind, status) in enumerate((("customer.created", 200), ("invoice.paid", 200),
                                            ("charge.refunded", 400), ("invoice.upcoming", 200),
                                            ("payment_intent.succeeded", 503))):
            sink.clock.at = at(-i / 60)  # one second apart
            sink.event_received(f"evt_1Feed{i:03d}", kind, "stored" if status < 300 else "error", status)
        sink.clock.at = FROZEN
        await until(pilot, lambda: sink.events_waiting == 0)

    assert snap(keys("5", screen_loads=True), deliveries)


# -- everywhere ----------------------------------------------------------------------------------


def test_help(snap):
    assert snap(keys("question_mark"))


def test_error_database_unreachable(snap):
    assert snap(database_url="postgresql://postgres:hunter2@127.0.0.1:1/stripe", database_label=None)


def test_error_stripe_unreachable(snap):
    assert snap(api_base="http://127.0.0.1:1")



def test_listener_running(snap, clean_db, stripe_server, monkeypatch):
    seed_account(clean_db, stripe_server.account_id)
    # The listener process binds a port the OS picks; the picture shows it as :8787 so that it stays the
    # same: in the state the screen reads and in the lines the process reports (its ready banner).
    real_view, real_message = console_engine.listener_view, ConsoleSink.message
    pin = lambda url: re.sub(r":\d+/", ":8787/", url) if url else url  # noqa: E731

    def pinned_port(listener: Any) -> Any:
        view = real_view(listener)
        return replace(view, local_url=pin(view.local_url), webhook_url=pin(view.webhook_url))

    monkeypatch.setattr(console_engine, "listener_view", pinned_port)
    monkeypatch.setattr(ConsoleSink, "message", lambda sink, level, text: real_message(sink, level, pin(text)))

    async def start(pilot: Any) -> None:
        screen = pilot.app.screen
        await pilot.press("s")
        await until(pilot, lambda: screen.state.state == "ready" and not (screen.state.catch_up or "pending")
                    .startswith(("pending", "running")), timeout=20)

    assert snap(keys("5", screen_loads=True), start)
