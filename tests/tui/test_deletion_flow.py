"""Pilot tests of the deletion wizard's ways out: open runs listed and abandoned, runs a live worker holds,
the running listener's webhook (warned about, then re-registered), and refusals that name what to do."""

from __future__ import annotations

import os
import socket
from typing import Any

import psycopg
import stripe
from textual.widgets import Button, DataTable, Static

from stripe_sync_core.runs import ABANDONED, WORKER_LOCK_CLASS
from stripe_sync_tui.screens.deletion import DeletionScreen
from stripe_sync_tui.screens.dialogs import ConfirmDialog
from stripe_sync_tui.widgets.feed import EventFeed

from .conftest import SIZE, loaded, start_listener, until
from .seed import seed_account, seed_events, seed_runs


def text_of(screen: Any, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def open_wizard(pilot: Any) -> DeletionScreen:
    await loaded(pilot)
    await pilot.press("4")
    await loaded(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, DeletionScreen)
    return screen


async def choose_and_list_runs(pilot: Any, screen: DeletionScreen) -> None:
    await pilot.press("enter")
    await until(pilot, lambda: screen.open_runs is not None)
    assert screen.step == "runs"


def hold_chunk(url: str, run_id: int, worker_id: str, key: int = 4242) -> psycopg.Connection:
    """A live worker elsewhere: its advisory lock (held while the returned connection is open) and a fresh
    heartbeat on the run's running chunk."""
    holder = psycopg.connect(url, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s, %s)", (WORKER_LOCK_CLASS, key))
    holder.execute("UPDATE stripe._sync_obj_runs SET worker_key = %s, worker_id = %s, heartbeat_at = now() "
                   "WHERE run_id = %s AND status = 'running'", (key, worker_id, run_id))
    return holder


def seeded(clean_db: str, account: str) -> int:
    seed_account(clean_db, account)
    run_id = seed_runs(clean_db, account)
    seed_events(clean_db, account)
    assert run_id is not None
    return run_id


async def test_deletion_with_an_interrupted_run_lists_it_abandons_it_and_deletes(make_app, clean_db, stripe_server):
    account = stripe_server.account_id
    run_id = seeded(clean_db, account)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_wizard(pilot)
        await choose_and_list_runs(pilot, screen)
        [run] = screen.open_runs
        assert (run.run_id, run.state, run.chunks_done, run.chunks_left) == (run_id, "interrupted", 3, 3)
        table = screen.query_one("#runs-table", DataTable)
        assert [str(c) for c in table.get_row(str(run_id))][:2] == [str(run_id), "interrupted"]
        assert "stored stay until the deletion" in text_of(screen, "#runs-extra")
        assert "refused while a run is open" in text_of(screen, "#runs-title")
        assert not screen.query_one("#runs-force", Button).display  # nobody holds it: no force needed
        assert screen.focused is screen.query_one("#runs-cancel", Button)

        await pilot.click("#runs-abandon")
        await until(pilot, lambda: screen.preview is not None)
        assert screen.step == "preview"
        assert any(f"Abandoned run {run_id}" in text for text in app.notified)
        assert f"Abandoned before the dry run: run {run_id}" in text_of(screen, "#preview-extra")
        assert screen.preview.deleted_record_counts["_sync_runs"] == 3

        await pilot.click("#preview-continue")
        await pilot.press(*account, "enter")
        await until(pilot, lambda: screen.step == "summary")
        assert screen.result is not None and screen.result.deleted_record_counts["_events"] == 6
        assert screen.query_one("#summary-done", Button) is screen.focused
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM stripe._sync_runs").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM stripe._events").fetchone() == (0,)


async def test_a_run_held_by_another_process_names_the_way_out_and_can_be_abandoned_anyway(make_app, clean_db,
                                                                                          stripe_server):
    account = stripe_server.account_id
    run_id = seeded(clean_db, account)
    holder = hold_chunk(clean_db, run_id, "worker-host:4242:4242")
    try:
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_wizard(pilot)
            await choose_and_list_runs(pilot, screen)
            [run] = screen.open_runs
            assert run.state == "running" and run.workers == ("worker-host:4242:4242",)
            extra = text_of(screen, "#runs-extra")
            assert "another process (worker-host:4242:4242): stop it there" in extra and "Abandon anyway" in extra
            assert screen.query_one("#runs-abandon", Button).disabled
            force = screen.query_one("#runs-force", Button)
            assert force.display and not force.disabled

            await pilot.click("#runs-force")
            dialog = app.screen
            assert isinstance(dialog, ConfirmDialog)
            assert dialog.focused is dialog.query_one("#cancel", Button)
            assert f"run {run_id} of {account}, held by worker-host:4242:4242" in dialog.target
            await pilot.press("enter")  # Cancel: nothing abandoned
            assert app.screen is screen and screen.step == "runs"

            await pilot.click("#runs-force")
            await pilot.click("#confirm")
            await until(pilot, lambda: screen.preview is not None)
        with psycopg.connect(clean_db) as conn:
            closed, message = conn.execute("SELECT closed_at, error_message FROM stripe._sync_runs WHERE id = %s",
                                           (run_id,)).fetchone()
            assert closed is not None and message.startswith(ABANDONED)
            statuses = {r[0] for r in conn.execute(
                "SELECT status FROM stripe._sync_obj_runs WHERE run_id = %s", (run_id,))}
            assert statuses == {"complete", "error"}  # the held chunk too: its worker stops at its next page
    finally:
        holder.close()


async def test_a_run_held_by_this_consoles_backfill_points_to_screen_3(make_app, clean_db, stripe_server):
    account = stripe_server.account_id
    run_id = seeded(clean_db, account)
    holder = hold_chunk(clean_db, run_id, f"{socket.gethostname()}:{os.getpid()}:4242")
    try:
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_wizard(pilot)
            await choose_and_list_runs(pilot, screen)
            assert "this console's backfill: press 3, then c to cancel it" in text_of(screen, "#runs-extra")
    finally:
        holder.close()


async def test_read_only_refusals_name_the_way_out(make_app, clean_db, stripe_server):
    account = stripe_server.account_id
    seeded(clean_db, account)
    app = make_app(read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_wizard(pilot)
        await choose_and_list_runs(pilot, screen)
        assert screen.query_one("#runs-abandon", Button).disabled
        assert "restart the console without --read-only" in text_of(screen, "#runs-extra")
        await pilot.press("ctrl+d")
        assert any("Delete the account's data" in text and "--read-only" in text for text in app.notified)
        await pilot.press("escape")
        assert screen.step == "choose"
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM stripe._sync_runs WHERE closed_at IS NULL").fetchone() == (1,)


async def test_a_run_opened_after_the_dry_run_sends_the_wizard_back_to_the_open_runs(make_app, clean_db,
                                                                                   stripe_server):
    account = stripe_server.account_id
    seed_account(clean_db, account)
    seed_runs(clean_db, account, open_run=False)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_wizard(pilot)
        await pilot.press("enter")  # no open run: straight to the dry run
        await until(pilot, lambda: screen.preview is not None)
        await pilot.click("#preview-continue")
        with psycopg.connect(clean_db, autocommit=True) as conn:  # a backfill starts meanwhile
            conn.execute("INSERT INTO stripe._sync_runs (account_id, objects) VALUES (%s, '{customers}')", (account,))
        await pilot.press(*account, "enter")
        await until(pilot, lambda: screen.step == "runs" and bool(screen.open_runs))
        assert "refused (nothing was deleted)" in text_of(screen, "#runs-extra")
        assert not screen.query_one("#runs-abandon", Button).disabled
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM stripe._sync_runs").fetchone() == (3,)


async def test_the_wizard_warns_about_the_listeners_webhook_which_then_re_registers(make_app, clean_db,
                                                                                   stripe_server):
    account = stripe_server.account_id
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        listener = await start_listener(pilot)
        old = listener.state.webhook_id
        assert old
        assert ":8787/" not in listener.state.local_url  # port 0 in the tests' settings: a port the OS picks

        screen = await open_wizard(pilot)
        await pilot.press("enter")  # no open run: straight to the dry run
        await until(pilot, lambda: screen.preview is not None)
        assert [hook.id for hook in screen.preview.managed_webhooks] == [old]
        extra = text_of(screen, "#preview-extra")
        assert "Deleted in Stripe too" in extra and f"{old} feeds the running listener (screen 5)" in extra
        assert "registers a new webhook" in extra

        await pilot.click("#preview-continue")
        await pilot.press(*account, "enter")
        await until(pilot, lambda: screen.step == "summary")
        assert screen.result is not None and screen.result.webhooks_removed_from_stripe == [old]
        summary = text_of(screen, "#summary-extra")
        assert "Listener (screen 5): re-registered webhook we_" in summary

        await pilot.press("5")
        await until(pilot, lambda: listener.state.webhook_id not in (None, old))
        new = listener.state.webhook_id
        assert listener.state.state == "ready"
        assert f"{old} was deleted; re-registered {new}" in text_of(listener, "#listener-main")
        feed = listener.query_one(EventFeed)
        assert any(f"re-registered {new}" in line.plain for line in feed.lines)
        # Its feed is alive: Stripe delivers to the new webhook.
        client = stripe.StripeClient(stripe_server.secret_key, base_addresses={"api": stripe_server.api_base})
        client.raw_request("post", "/v1/customers", email="after-deletion@console.test")
        await until(pilot, lambda: any("customer.created" in line.plain for line in feed.lines), timeout=20)
        await pilot.press("x")
        await until(pilot, lambda: listener.state.state == "stopped", timeout=20)
