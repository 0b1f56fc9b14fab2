"""The console's listener process: the headless `listen --json` stream, followed into the console's sink."""

from __future__ import annotations

import time

import psutil
import psycopg
import pytest
import stripe

from stripe_sync_core.config import SyncConfig
from stripe_sync_core.progress import RecordingSink
from stripe_sync_tui.demo import demo_environment
from stripe_sync_tui.listener_process import ListenerFailed, ListenerProcess
from stripe_sync_tui.widgets.feed import EventFeed

from .conftest import SIZE, loaded, start_listener, until
from .seed import seed_account


def wait_for(predicate, timeout: float = 20.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {predicate}"
        time.sleep(0.05)


def test_the_listener_process_reports_its_state_and_each_delivery(clean_db, stripe_server):
    config = SyncConfig(database_url=clean_db, stripe_secret_key=stripe_server.secret_key,
                        stripe_api_base=stripe_server.api_base, max_retries=0)
    sink = RecordingSink()
    listener = ListenerProcess(config, sink, "127.0.0.1", 0)
    try:
        ready = listener.start()
        assert ready.running and ready.webhook_id and ready.local_url
        assert not ready.local_url.endswith(":8787/webhooks")  # port 0: the OS picked one
        assert listener.pid != psutil.Process().pid  # not in the console's process
        assert psutil.Process(listener.pid).nice() == min(19, psutil.Process().nice() + 5)  # below the console
        client = stripe.StripeClient(stripe_server.secret_key, base_addresses={"api": stripe_server.api_base})
        client.raw_request("post", "/v1/customers", email="process@console.test")
        wait_for(lambda: any(name == "event_received" and args[1] == "customer.created" for name, args in sink.calls))
        delivered = [args for name, args in sink.calls if name == "event_received"]
        assert all(args[3] == 200 for args in delivered)
        wait_for(lambda: listener.state.ok == len(delivered) and listener.state.catch_up.state == "skipped")
        state = listener.state
        assert state.received == state.ok and (state.client_errors, state.server_errors) == (0, 0)
        assert state.catch_up.backfill_recommended  # nothing logged yet: the same catch-up as in process
        messages = [args[1] for name, args in sink.calls if name == "message"]
        assert messages[0].startswith("Ready! Listening on http://127.0.0.1:")
    finally:
        listener.stop()
    assert listener.process is not None and listener.process.returncode == 0  # stopped cleanly, not killed
    assert not listener.state.running and listener.failure is None


def test_a_listener_that_cannot_start_says_why(clean_db, stripe_server):
    config = SyncConfig(database_url="postgresql://postgres:hunter2@127.0.0.1:1/stripe",
                        stripe_secret_key=stripe_server.secret_key, stripe_api_base=stripe_server.api_base)
    listener = ListenerProcess(config, RecordingSink(), "127.0.0.1", 0)
    with pytest.raises(ListenerFailed) as failure:
        listener.start()
    assert "exit code 1" in str(failure.value) and "hunter2" not in str(failure.value)


async def test_the_console_feeds_from_the_process_and_stops_it_on_exit(make_app, clean_db, stripe_server):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        screen = await start_listener(pilot, timeout=30)
        assert app.engine is not None and app.engine.listener is not None
        child = psutil.Process(app.engine.listener.pid)
        assert child.pid != psutil.Process().pid
        client = stripe.StripeClient(stripe_server.secret_key, base_addresses={"api": stripe_server.api_base})
        client.raw_request("post", "/v1/customers", email="feed@console.test")
        feed = screen.query_one(EventFeed)
        await until(pilot, lambda: any("customer.created" in line.plain for line in feed.lines), timeout=20)
        await until(pilot, lambda: dict(screen.state.counters).get("2xx", 0) >= 1)  # the process's counters
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE  # closing the console stopped it


def test_the_console_demo_empties_only_its_own_database(clean_db):
    seed_account(clean_db, "acct_1KeptByTheDemo")
    with demo_environment(SyncConfig(database_url=clean_db), trickle=False, customers=1, fresh=True) as demo:
        assert demo.database_url == clean_db
    with psycopg.connect(clean_db) as conn:  # a database given with --database-url is never emptied
        assert conn.execute("SELECT count(*) FROM stripe.accounts").fetchone()[0] == 1
