"""Pilot tests: press keys, assert on widget state and on what reached the database or Stripe."""

from __future__ import annotations

import psycopg
from textual.widgets import Button, DataTable, Input

from stripe_sync_core.sigma import SIGMA, sigma_objects
from stripe_sync_tui.screens.deletion import DeletionScreen
from stripe_sync_tui.screens.dialogs import ConfirmDialog, CreateWebhookDialog
from stripe_sync_tui.screens.help import HelpScreen
from stripe_sync_tui.screens.listener import RETURN_BACKLOG, ListenerScreen
from stripe_sync_tui.screens.problem import ProblemScreen
from stripe_sync_tui.screens.runs import RunChunksScreen, RunsScreen
from stripe_sync_tui.screens.webhooks import WebhooksScreen
from stripe_sync_tui.sink import FeedEvent
from stripe_sync_tui.widgets.feed import EventFeed
from stripe_sync_tui.widgets.table import FilterableTable

from .conftest import SIZE, backfill_screen, loaded, until
from .seed import FROZEN, seed_account, seed_events, seed_managed_webhook, seed_runs
from .test_reads_right import screen_text


def cell(table: FilterableTable, key: str, column: str) -> str:
    return str(table.table.get_cell(key, column))


# -- 1 sync runs ---------------------------------------------------------------------------------


async def test_current_run_rows_update_in_place_and_keep_the_cursor(make_app, clean_db, stripe_server):
    seed_account(clean_db, stripe_server.account_id)
    run_id = seed_runs(clean_db, stripe_server.account_id)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        current = app.screen.query_one("#current", FilterableTable)
        assert current.shown_keys == ["customers", "invoices", "charges"]
        assert cell(current, "customers", "chunks") == "2/4"
        await pilot.press("down")
        assert current.cursor_key == "invoices"
        with psycopg.connect(clean_db, autocommit=True) as conn:  # another process moves the run on
            conn.execute("UPDATE stripe._sync_obj_runs SET status = 'complete', processed_count = 300 "
                         "WHERE run_id = %s AND object = 'customers' AND status = 'running'", (run_id,))
        loads = app.screen.loads
        await until(pilot, lambda: app.screen.loads >= loads + 2)
        assert cell(current, "customers", "chunks") == "3/4"
        assert cell(current, "customers", "stored") == "1,750"
        assert current.cursor_key == "invoices"  # the cursor survived the refresh


async def test_filter_narrows_the_table_and_esc_clears_it(make_app, clean_db, stripe_server):
    seed_account(clean_db, stripe_server.account_id)
    seed_runs(clean_db, stripe_server.account_id)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        current = app.screen.query_one("#current", FilterableTable)
        await pilot.press("slash", "i", "n", "v")
        assert current.shown_keys == ["invoices"]
        await loaded(pilot, app.screen.loads + 2)  # live refreshes keep the filter
        assert current.shown_keys == ["invoices"]
        await pilot.press("escape")
        assert current.shown_keys == ["customers", "invoices", "charges"]
        assert not current.has_class("-filtering")


async def test_enter_opens_a_runs_chunks_and_esc_backs_out(make_app, clean_db, stripe_server):
    seed_account(clean_db, stripe_server.account_id)
    seed_runs(clean_db, stripe_server.account_id)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        app.screen.query_one("#history", FilterableTable).focus_table()
        await pilot.press("down", "enter")  # run #2, the one with an error
        assert isinstance(app.screen, RunChunksScreen) and app.screen.run_id == 2
        await loaded(pilot)
        chunks = app.screen.query_one("#chunks", FilterableTable)
        assert len(chunks.shown_keys) == 2
        assert "sk_test_51HxSecret" not in cell(chunks, chunks.shown_keys[1], "error")  # masked, never the key
        shown = next(line for line in screen_text(app) if "GET /v1/charges" in line)
        assert shown.rstrip().endswith("…")  # a long error is cut at its column, not wrapped
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


# -- 2 webhooks ----------------------------------------------------------------------------------


async def test_create_and_delete_a_managed_webhook(make_app, clean_db, stripe_server):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("2")
        await loaded(pilot)
        await pilot.press("n")
        assert isinstance(app.screen, CreateWebhookDialog)
        await pilot.press(*"https://hooks.console.test/stripe", "enter")
        screen = app.screen
        assert isinstance(screen, WebhooksScreen)
        table = screen.query_one(FilterableTable)
        await until(pilot, lambda: any(h.url == "https://hooks.console.test/stripe"
                                       for h in (screen.view.managed if screen.view else [])))
        webhook_id = screen.view.managed[0].webhook_id
        table.table.move_cursor(row=table.shown_keys.index(webhook_id))
        await pilot.press("d")
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog)
        assert dialog.focused is dialog.query_one("#cancel", Button)  # Cancel by default
        assert webhook_id in dialog.target and dialog.livemode is False
        await pilot.press("enter")  # Cancel: nothing deleted
        assert app.screen is screen and webhook_id in table.shown_keys
        await pilot.press("d", "tab", "enter")  # Delete
        await until(pilot, lambda: screen.view is not None and not screen.view.managed)
        assert webhook_id not in table.shown_keys


async def test_an_action_stripe_is_slow_to_answer_says_it_is_working(make_app, clean_db, stripe_server):
    """Stripe holds the webhook creation (a gate in front of the emulator, released only once the console
    has said it is waiting): the key press is answered with a notice, then the result."""
    import asyncio

    from aiohttp import ClientSession, web

    release = asyncio.Event()

    async def gate(request: web.Request) -> web.Response:
        if request.method == "POST" and request.path == "/v1/webhook_endpoints":
            await release.wait()
        async with ClientSession() as session, session.request(
                request.method, stripe_server.api_base + request.path_qs, data=await request.read(),
                headers={k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")},
        ) as upstream:
            return web.Response(body=await upstream.read(), status=upstream.status, content_type="application/json")

    proxy = web.Application()
    proxy.router.add_route("*", "/{tail:.*}", gate)
    runner = web.AppRunner(proxy, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        app = make_app(api_base=f"http://127.0.0.1:{port}", working_notice_seconds=0.3)
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            await pilot.press("2")
            await loaded(pilot)
            await pilot.press("n", *"https://hooks.console.test/slow", "enter")
            await until(pilot, lambda: "Create webhook: in progress…" in app.notified)
            assert not any(n.startswith("Created we_") for n in app.notified)
            release.set()
            await until(pilot, lambda: any(n.startswith("Created we_") for n in app.notified))
    finally:
        release.set()
        await runner.cleanup()


async def test_endpoints_we_do_not_manage_are_listed_read_only(make_app, clean_db, stripe_server):
    import stripe

    client = stripe.StripeClient(stripe_server.secret_key, base_addresses={"api": stripe_server.api_base})
    other = client.raw_request("post", "/v1/webhook_endpoints", url="https://other.example/hook",
                               **{"enabled_events[]": ["*"]}).data  # type: ignore[union-attr]
    seed_account(clean_db, stripe_server.account_id)
    seed_managed_webhook(clean_db, stripe_server.account_id)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("2")
        await loaded(pilot)
        table = app.screen.query_one(FilterableTable)
        assert set(table.shown_keys) == {"we_1ManagedConsole", other["id"]}
        assert "read-only" in cell(table, other["id"], "owner")
        table.table.move_cursor(row=table.shown_keys.index(other["id"]))
        await pilot.press("d")
        assert isinstance(app.screen, WebhooksScreen)  # no confirmation: not ours to delete
        assert any("not managed" in text for text in app.notified)


async def test_read_only_keeps_write_actions_visible_but_disabled(make_app, clean_db, stripe_server):
    app = make_app(read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("2")
        await loaded(pilot)
        await pilot.press("n")
        assert isinstance(app.screen, WebhooksScreen)  # no dialog
        assert any("--read-only" in text for text in app.notified)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Create a managed webhook (disabled: started with --read-only)" in titles
        assert not any("Start the backfill" in t for t in titles)  # palette: this screen's actions only
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_rows = app.screen.query_one(DataTable)
        states = [str(help_rows.get_row_at(i)[3]) for i in range(help_rows.row_count)]
        assert states.count("disabled: started with --read-only") == 4  # create, delete, wipe, listen
        await pilot.press("escape")
        assert isinstance(app.screen, WebhooksScreen)


# -- 3 backfill ----------------------------------------------------------------------------------


async def test_backfill_plan_shows_the_chunks_before_starting(make_app, clean_db, stripe_server):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await backfill_screen(pilot, ["customers", "subscription_items"])
        await pilot.click("#preset-30")
        await pilot.click("#chunk-week")
        await pilot.press("p")
        table = screen.query_one("#chunks", FilterableTable)
        # 2025-12-16 .. 2026-01-15 in epoch-aligned weeks, newest first; items ride on subscriptions
        assert screen.query_one("#from", Input).value == "2025-12-16"
        assert [cell(table, k, "object") for k in table.shown_keys] == ["customers"] * 6 + ["subscriptions"] * 6
        assert cell(table, table.shown_keys[0], "from") == "2026-01-15"
        assert cell(table, table.shown_keys[-1], "note") == "with subscription_items"


async def test_sigma_is_one_choice_of_the_backfill_form_planned_per_table(make_app, clean_db, stripe_server):
    """Screen 3 offers the Sigma tables as one entry (`backfill sigma`), chosen by default when Sigma is
    enabled for a live key; its plan lists a chunk per reporting table next to the types chosen with it."""
    app = make_app(secret_key=stripe_server.live_secret_key, enable_sigma=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await backfill_screen(pilot)
        objects = screen.query_one("#objects")
        assert SIGMA in objects.selected
        objects.deselect_all()
        for name in ("customers", SIGMA):
            objects.select(name)
        request = screen.request()
        assert request.object_argument == ["customers", SIGMA]
        await pilot.press("p")
        table = screen.query_one("#chunks", FilterableTable)
        planned = [cell(table, k, "object") for k in table.shown_keys]
        assert planned == ["customers"] + sigma_objects()
        assert len(planned) == 1 + 187


async def test_sigma_with_a_test_key_is_a_form_error_saying_why(make_app, clean_db, stripe_server):
    app = make_app(enable_sigma=True)  # a test-mode key: Stripe Sigma has no test-mode data
    async with app.run_test(size=SIZE) as pilot:
        screen = await backfill_screen(pilot)
        objects = screen.query_one("#objects")
        assert SIGMA not in objects.selected, "not chosen by default for a key it cannot serve"
        objects.select(SIGMA)
        await pilot.press("p")
        assert any("no test-mode data" in text and "live key" in text for text in app.notified), app.notified
        assert screen.plan == []


async def test_backfill_form_errors_are_shown_not_raised(make_app, clean_db, stripe_server):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("3")
        app.screen.query_one("#from", Input).value = "31/12/2025"
        await pilot.press("p")
        assert any("'from' must be a date" in text for text in app.notified)


async def test_launch_and_cancel_a_backfill(make_app, clean_db, stripe_server):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await backfill_screen(pilot)
        screen.query_one("#budget", Input).value = "2"  # slow enough to cancel mid-run
        await pilot.press("s")
        assert screen.running
        await until(pilot, lambda: screen.run_id is not None)
        await pilot.press("c")
        await until(pilot, lambda: not screen.running)
        await until(pilot, lambda: screen.resumable is not None)
        assert screen.resumable.run_id == screen.run_id
        assert not screen.query_one("#start", Button).disabled


# -- 4 delete account data ----------------------------------------------------------------------


async def _open_wizard(pilot, clean_db, account_id):
    await loaded(pilot)
    await pilot.press("4")
    await loaded(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, DeletionScreen)
    return screen


async def test_deletion_wizard_cancels_at_every_step(make_app, clean_db, stripe_server):
    account = stripe_server.account_id
    seed_account(clean_db, account)
    seed_runs(clean_db, account, open_run=False)
    seed_events(clean_db, account)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open_wizard(pilot, clean_db, account)
        # step 2 (preview), cancelled with esc
        await pilot.press("enter")
        assert screen.step == "preview"
        await until(pilot, lambda: screen.preview is not None)
        assert screen.preview.deleted_record_counts["_events"] == 6
        await pilot.press("escape")
        assert screen.step == "choose" and screen.account_id is None
        # step 3 (confirm), cancelled with the Cancel button
        await pilot.press("enter")
        await until(pilot, lambda: screen.preview is not None)
        await pilot.click("#preview-continue")
        assert screen.step == "confirm"
        await pilot.press(*account[:-1])
        assert screen.query_one("#confirm-delete", Button).disabled  # not the whole id yet
        await pilot.press("enter")
        assert screen.step == "confirm"  # a wrong id never deletes
        await pilot.click("#confirm-cancel")
        assert screen.step == "choose"
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM stripe._events").fetchone()[0] == 6


async def test_deletion_wizard_executes_and_summarises(make_app, clean_db, stripe_server):
    account = stripe_server.account_id
    seed_account(clean_db, account)
    seed_runs(clean_db, account, open_run=False)
    seed_events(clean_db, account)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open_wizard(pilot, clean_db, account)
        await pilot.press("enter")
        await until(pilot, lambda: screen.preview is not None)
        await pilot.click("#preview-continue")
        await pilot.press(*account)
        assert not screen.query_one("#confirm-delete", Button).disabled
        await pilot.press("enter")
        await until(pilot, lambda: screen.step == "summary")
        assert screen.result.deleted_record_counts["_events"] == 6
        assert screen.result.dry_run is False
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM stripe._events").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM stripe._sync_runs").fetchone()[0] == 0


async def test_read_only_wizard_previews_but_never_deletes(make_app, clean_db, stripe_server):
    account = stripe_server.account_id
    seed_account(clean_db, account)
    app = make_app(read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open_wizard(pilot, clean_db, account)
        await pilot.press("enter")
        await until(pilot, lambda: screen.preview is not None)
        await pilot.click("#preview-continue")
        await pilot.press(*account, "enter")
        assert screen.step == "confirm"
        assert screen.query_one("#confirm-delete", Button).disabled


# -- 5 listener ----------------------------------------------------------------------------------


async def test_start_the_listener_and_see_an_event_arrive(make_app, clean_db, stripe_server):
    import stripe

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("5")
        screen = app.screen
        assert isinstance(screen, ListenerScreen)
        await pilot.press("s")
        await until(pilot, lambda: screen.state.state not in ("stopped", "starting"), timeout=20)
        assert screen.state.webhook_id
        client = stripe.StripeClient(stripe_server.secret_key, base_addresses={"api": stripe_server.api_base})
        client.raw_request("post", "/v1/customers", email="feed@console.test")
        feed = screen.query_one(EventFeed)
        await until(pilot, lambda: any("customer.created" in line.plain for line in feed.lines), timeout=20)
        assert any("<--" in line.plain and "[200]" in line.plain for line in feed.lines)
        await pilot.press("x")
        await until(pilot, lambda: screen.state.state == "stopped", timeout=20)


async def test_a_feed_of_100000_events_stays_bounded_and_responsive(make_app, clean_db, stripe_server):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("5")
        await loaded(pilot)
        screen = app.screen
        for i in range(100_000):
            app.sink.event_received(f"evt_{i:06d}", "customer.updated", "stored", 200 if i % 10 else 500)
        await pilot.pause()
        await until(pilot, lambda: app.sink.events_received == 100_000 and app.sink.events_waiting == 0)
        feed = screen.query_one(EventFeed)
        assert feed.line_count <= feed.lines.maxlen
        await until(pilot, lambda: feed.scroll_offset.y == feed.max_scroll_y > 0)  # it follows the newest
        assert app.sink.events_by_class == {"2xx": 90_000, "4xx": 0, "5xx": 10_000}
        await pilot.press("1")  # still answering keys (its latency is measured in benchmarks/tui_bench.py)
        assert isinstance(app.screen, RunsScreen)


async def test_the_feed_speaks_like_stripe_listen(make_app, clean_db, stripe_server):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("5")
        feed = app.screen.query_one(EventFeed)
        lines = feed.event_lines(FeedEvent(FROZEN, "evt_1", "invoice.paid", "stored", 200))
        assert lines[0].plain == "2026-01-15 12:00:00   --> invoice.paid [evt_1]"
        assert lines[1].plain.startswith("2026-01-15 12:00:00  <--  [200]")
        colours = {str(span.style) for span in lines[1].spans}
        assert any(str(app.get_css_variables()["success"]).lower()[1:] in c.lower() for c in colours)

        # Lines are styled only when drawn; the feed's width (its horizontal scroll) is still the drawn one.
        feed.clear()
        feed.forward_to = "http://127.0.0.1:4242/webhooks"
        feed.add_events([FeedEvent(FROZEN, "evt_1", "invoice.paid", "stored", 200),
                         FeedEvent(FROZEN, "evt_22", "customer.subscription.updated", "duplicate (already stored)",
                                   None),
                         FeedEvent(FROZEN, "evt_333", "charge.refunded", "failed: database unavailable", 503)])
        assert feed.lines[-1].plain.endswith("[evt_333] failed: database unavailable")
        assert feed.virtual_size.width == max(line.cell_len for line in feed.lines)
        assert len(feed.lines) == feed.line_count == 6


# -- header and the error screen ----------------------------------------------------------------


async def test_header_shows_account_mode_and_masked_database(make_app, clean_db, stripe_server):
    app = make_app(database_label=None)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        state = app.connection
        assert state.account_id == stripe_server.account_id
        assert state.livemode is False and state.database_ok and state.stripe_ok
        assert "sk_" not in str(app.screen.query_one("ConsoleHeader").render())


async def test_unreachable_database_shows_what_to_do(make_app):
    app = make_app(database_url="postgresql://postgres:hunter2@127.0.0.1:1/stripe")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ProblemScreen))
        problem = app.screen.problem
        assert problem.title == "Cannot reach the database"
        assert "hunter2" not in problem.detail and "postgres:****@127.0.0.1:1" in problem.detail
        assert any("PostgreSQL is running" in line for line in problem.advice)
        await pilot.press("2")
        assert isinstance(app.screen, ProblemScreen)  # nothing else until it is fixed
        await pilot.press("r")
        await until(pilot, lambda: len(app.workers) == 0 or isinstance(app.screen, ProblemScreen))


async def test_unreachable_stripe_shows_what_to_do(make_app):
    app = make_app(api_base="http://127.0.0.1:1")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ProblemScreen))
        assert app.screen.problem.title == "Cannot reach Stripe"
        assert app.connection.stripe_ok is False


async def test_keymap_overrides_rebind_by_binding_id(make_app, clean_db, stripe_server, tmp_path):
    from stripe_sync_tui.app import load_keymap

    path = tmp_path / "keymap.toml"
    path.write_text('[keymap]\n"webhooks.create" = "c"\n')
    keymap = load_keymap(path)
    assert keymap == {"webhooks.create": "c"}
    app = make_app()
    app.keymap = keymap
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("2")
        await loaded(pilot)
        await pilot.press("c")
        assert isinstance(app.screen, CreateWebhookDialog)
        await pilot.press("escape")
        assert isinstance(app.screen, WebhooksScreen)


# -- alive on first start (the demo's autostart) -------------------------------------------------


async def test_autostart_shows_a_run_on_screen_1_and_live_events_on_screen_5(make_app, clean_db, stripe_server):
    import stripe

    app = make_app(autostart=True)
    client = stripe.StripeClient(stripe_server.secret_key, base_addresses={"api": stripe_server.api_base})
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        runs = app.screen
        assert isinstance(runs, RunsScreen)
        await until(pilot, lambda: getattr(runs, "current_run_id", None) is not None, timeout=30)
        assert "Run #" in str(runs.query_one("#run-title").render())
        await until(pilot, lambda: app.engine is not None and app.engine.listener is not None
                    and app.engine.listener.state.webhook_id is not None, timeout=30)
        client.raw_request("post", "/v1/customers", email="before@console.test")  # before screen 5 is shown
        await until(pilot, lambda: app.sink.events_received >= 1, timeout=20)
        await pilot.press("5")
        listener = app.screen
        assert isinstance(listener, ListenerScreen)
        await until(pilot, lambda: listener.state.state == "ready")
        feed = listener.query_one(EventFeed)
        await until(pilot, lambda: any("customer.created" in line.plain for line in feed.lines))
        await pilot.pause()
        assert sum("customer.created" in line.plain for line in feed.lines) == 1  # history and buffer, once
        client.raw_request("post", "/v1/customers", email="after@console.test")  # and live, once shown
        await until(pilot, lambda: sum("customer.created" in line.plain for line in feed.lines) >= 2, timeout=20)
        assert any("<--" in line.plain and "[200]" in line.plain for line in feed.lines)


# -- an idle console ------------------------------------------------------------------------------


async def test_live_ticks_redraw_nothing_while_nothing_moves_and_a_change_is_drawn(make_app, clean_db,
                                                                                   stripe_server):
    seed_account(clean_db, stripe_server.account_id)
    run_id = seed_runs(clean_db, stripe_server.account_id)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        screen = app.screen
        drawn: list[object] = []
        show = screen.show
        screen.show = lambda payload: (drawn.append(payload), show(payload))  # type: ignore[method-assign]
        current = screen.query_one("#current", FilterableTable)
        await pilot.press("slash", "c", "u", "s")
        loads = screen.loads
        await until(pilot, lambda: screen.loads >= loads + 3)
        assert drawn == []  # the open run did not move: three live ticks, nothing redrawn
        with psycopg.connect(clean_db, autocommit=True) as conn:
            conn.execute("UPDATE stripe._sync_obj_runs SET status = 'complete', processed_count = 300 "
                         "WHERE run_id = %s AND object = 'customers' AND status = 'running'", (run_id,))
        await until(pilot, lambda: len(drawn) == 1)
        assert cell(current, "customers", "chunks") == "3/4"
        assert current.shown_keys == ["customers"]  # the filter survived a refresh that drew
        await pilot.press("escape", "r")  # asked for: drawn even though nothing changed
        await until(pilot, lambda: len(drawn) == 2)


async def test_switching_back_to_a_screen_does_not_rebuild_its_footer(make_app, clean_db, stripe_server):
    from textual.widgets._footer import FooterKey

    from stripe_sync_tui.widgets.footer import ConsoleFooter

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        runs = app.screen
        footer = runs.query_one(ConsoleFooter)
        await until(pilot, lambda: bool(footer.query(FooterKey)))
        keys = [key.key for key in footer.query(FooterKey)]
        rebuilt: list[int] = []
        recompose = footer.recompose

        async def counting_recompose() -> None:
            rebuilt.append(1)
            await recompose()

        footer.recompose = counting_recompose  # type: ignore[method-assign]
        for _ in range(3):
            await pilot.press("2")
            await loaded(pilot)
            await pilot.press("1")
            await loaded(pilot)
        await pilot.pause()
        assert app.screen is runs and rebuilt == []
        assert [key.key for key in footer.query(FooterKey)] == keys  # still showing the same keys


async def test_long_lived_objects_are_kept_out_of_collections_until_the_console_exits(make_app, clean_db,
                                                                                      stripe_server):
    """A full collection walking every widget and module stalls key handling: once connected, and after a
    screen's first build, what exists is frozen; on exit it is handed back (many consoles, one process)."""
    import gc

    assert gc.get_freeze_count() == 0
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await until(pilot, lambda: gc.get_freeze_count() > 0)
        frozen = gc.get_freeze_count()
        await pilot.press("5")
        await until(pilot, lambda: gc.get_freeze_count() > frozen)  # screen 5's widgets, built just now
    assert gc.get_freeze_count() == 0


async def test_deliveries_wait_while_another_screen_is_shown_and_follow_on_return(make_app, clean_db,
                                                                                  stripe_server):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("5")
        await loaded(pilot)
        listener = app.screen
        feed = listener.query_one(EventFeed)
        app.sink.event_received("evt_seen", "customer.created", "stored", 200)
        await until(pilot, lambda: any("evt_seen" in line.plain for line in feed.lines))
        await pilot.press("1")
        lines = feed.line_count
        for i in range(50):
            app.sink.event_received(f"evt_away{i:02d}", "invoice.paid", "stored", 200)
        await pilot.pause()
        assert feed.line_count == lines and app.sink.events_waiting == 50  # nothing drawn off screen
        await pilot.press("5")
        await until(pilot, lambda: any("evt_away49" in line.plain for line in feed.lines))
        assert app.sink.events_waiting == 0 and feed.line_count == lines + 100
        await pilot.press("1")
        for i in range(RETURN_BACKLOG + 7):  # a burst while away: the newest drawn, the rest counted
            app.sink.event_received(f"evt_burst{i:04d}", "invoice.paid", "stored", 200)
        await pilot.press("5")
        await until(pilot, lambda: any(f"evt_burst{RETURN_BACKLOG + 6:04d}" in line.plain for line in feed.lines))
        assert not any("[evt_burst0006]" in line.plain for line in feed.lines)
        assert any("7 earlier deliveries while another screen was shown" in line.plain for line in feed.lines)
        assert app.sink.events_received == 1 + 50 + RETURN_BACKLOG + 7
        app.sink.event_received("evt_back", "customer.updated", "stored", 200)
        await until(pilot, lambda: any("evt_back" in line.plain for line in feed.lines))  # live again
