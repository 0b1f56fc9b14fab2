"""Issue 12: what read wrong on screen, each pinned by a test, and the operator features.

Each test states what an operator would have seen before its fix.
"""

from __future__ import annotations

import io
from typing import Any

import psycopg
from rich.console import Console
from textual.widgets import Button, DataTable, Input, Sparkline

from stripe_sync_core.results import ObjectBackfillResult
from stripe_sync_tui import format as fmt
from stripe_sync_tui.screens.listener import ListenerScreen
from stripe_sync_tui.screens.runs import RunChunksScreen, RunsScreen
from stripe_sync_tui.widgets.feed import EventFeed
from stripe_sync_tui.widgets.table import FilterableTable

from .conftest import SIZE, backfill_screen, loaded, until
from .seed import at, seed_account, seed_runs


def screen_text(app: Any) -> list[str]:
    """The current screen as the terminal shows it, one string a line."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, record=True,
                      legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text().splitlines()


def cell(table: FilterableTable, key: str, column: str) -> str:
    return str(table.table.get_cell(key, column))


# -- defects -------------------------------------------------------------------------------------


async def test_the_filter_box_shows_what_is_typed(make_app, clean_db, stripe_server):
    """It showed an empty box (a focused Input's tall border in one line of height)."""
    seed_account(clean_db, stripe_server.account_id)
    seed_runs(clean_db, stripe_server.account_id)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("slash", "c", "h")
        await pilot.pause()
        assert any("ch" in line and "run" not in line for line in screen_text(app)[3:6])
        box = app.screen.query_one("#current-filter", Input)
        assert box.has_focus and box.content_region.height == 1


async def test_replanning_replaces_the_old_plan(make_app, clean_db, stripe_server):
    """auto then month kept the auto plan's rows above the month plan's."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await backfill_screen(pilot, ["customers", "invoices"])
        await pilot.click("#preset-365")
        await pilot.press("p")  # auto: one chunk per listing
        table = screen.query_one("#chunks", FilterableTable)
        assert [cell(table, k, "object") for k in table.shown_keys] == ["customers", "invoices"]
        await pilot.click("#chunk-month")
        await pilot.press("p")
        await pilot.pause()
        objects = [str(table.table.get_row_at(i)[1]) for i in range(table.table.row_count)]
        assert table.table.row_count == len(screen.plan) > 2
        assert objects == [c.object for c in screen.plan]  # no auto row left on top
        assert objects[:2] == ["customers", "customers"]


async def test_plan_notes_have_their_own_column(make_app, clean_db, stripe_server):
    """A plan's notes sat under the 'error' column."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("3", "p")
        table = app.screen.query_one("#chunks", FilterableTable)
        labels = [str(column.label) for column in table.table.columns.values()]
        assert "plan note" in labels and "error" not in labels and "status" not in labels


async def test_plan_says_why_a_run_may_hold_other_chunk_counts(make_app, clean_db, stripe_server):
    """553 planned, 495 run: nothing said why."""
    from stripe_sync_tui.screens.backfill import versus_plan

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("3")
        await pilot.click("#chunk-week")
        await pilot.press("p")
        note = str(app.screen.query_one("#plan-note").render())
        assert "fewer chunks than planned" in note and "drops the windows above the newest object" in note
        await pilot.click("#chunk-auto")
        await pilot.press("p")
        assert "more chunks than planned" in str(app.screen.query_one("#plan-note").render())
    assert versus_plan(553, 495, "week") == ("495 chunks, 553 planned: empty windows above the newest object "
                                             "dropped (week).")
    assert versus_plan(4, 4, "auto") == ""


async def test_objects_and_child_rows_are_counted_apart(make_app, clean_db, stripe_server):
    """The run header said 2,928 objects and the toast 3,867: child rows in one, not the other."""
    seed_account(clean_db, stripe_server.account_id)
    run_id = seed_runs(clean_db, stripe_server.account_id)
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute("UPDATE stripe._sync_obj_runs SET children_processed = '{\"tax_ids\": 30}' "
                     "WHERE run_id = %s AND object = 'customers' AND status = 'complete'", (run_id,))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        title = str(app.screen.query_one("#run-title").render())
        assert "1,663 objects + 60 child rows" in title
        current = app.screen.query_one("#current", FilterableTable)
        assert cell(current, "customers", "stored") == "1,570" and cell(current, "customers", "children") == "60"
    result = {name: ObjectBackfillResult(stored, 0, [], 1.0, 1, "complete", stored, 1)
              for name, stored in (("customers", 2900), ("tax_ids", 939), ("_events", 28))}
    assert fmt.stored_in(result) == "2,928 objects + 939 child rows"


async def test_listener_counters_say_what_each_counts(make_app, clean_db, stripe_server):
    """'Events 52' beside 'received 51': deliveries answered, events shown and requests received."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("5")
        screen = app.screen
        assert isinstance(screen, ListenerScreen)
        app.sink.event_received("evt_1", "customer.created", "stored", 200)
        app.sink.event_received("evt_2", "customer.updated", "stored", None)  # applied by catch-up
        await until(pilot, lambda: app.sink.events_waiting == 0)
        from dataclasses import replace

        screen.state = replace(screen.state, state="ready", counters=(("received", 2), ("2xx", 1), ("4xx", 0),
                                                                      ("5xx", 0)))
        screen._render_state()
        text = str(screen.query_one("#listener-counters").render())
        assert "1 delivery answered" in text and "1 applied by catch-up" in text
        assert "2 requests received" in text and "1 in flight" in text


async def test_feed_follows_the_newest_line_after_a_screen_switch(make_app, clean_db, stripe_server):
    """After 5, 1, 5 the feed stayed where it was until End was pressed: while another screen showed,
    the terminal changed size (a tmux pane), the feed came back taller or shorter, and 'at the bottom'
    no longer held."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("5")
        feed = app.screen.query_one(EventFeed)
        for i in range(100):
            app.sink.event_received(f"evt_a{i}", "customer.updated", "stored", 200)
        await until(pilot, lambda: feed.max_scroll_y > 0 and feed.scroll_offset.y == feed.max_scroll_y)
        await pilot.press("1")
        await loaded(pilot)
        await pilot.resize_terminal(SIZE[0], SIZE[1] - 8)
        await pilot.pause()
        for i in range(30):
            app.sink.event_received(f"evt_b{i}", "customer.updated", "stored", 200)
        await pilot.pause(0.2)
        await pilot.press("5")
        await pilot.pause()
        for i in range(20):
            app.sink.event_received(f"evt_c{i}", "customer.updated", "stored", 200)
        await until(pilot, lambda: app.sink.events_waiting == 0)
        await pilot.pause(0.2)
        assert feed.scroll_offset.y == feed.max_scroll_y
        assert any("evt_c19" in line for line in screen_text(app))


async def test_every_preset_button_is_visible(make_app, clean_db, stripe_server):
    """'all time' was laid out past the form's right edge."""
    for size in (SIZE, (80, 24), (200, 50)):
        app = make_app()
        async with app.run_test(size=size) as pilot:
            await loaded(pilot)
            await pilot.press("3")
            form = app.screen.query_one("#backfill-form")
            for button in app.screen.query(".presets Button").results(Button):
                region = button.region  # the form scrolls down at 80x24; across, all of it shows
                assert region.width > 0 and form.region.x <= region.x and region.right <= form.region.right, \
                    (size, button.id)
            await pilot.click("#preset-all")
            assert app.screen.query_one("#from", Input).value == ""


async def test_ids_are_shown_whole(make_app, clean_db, stripe_server):
    """A 27-character webhook id was cut to 24."""
    from stripe_sync_tui.screens.webhooks import COLUMNS

    width = dict((key, width) for key, _, width in COLUMNS)["id"]
    assert width >= 32
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("2")
        await loaded(pilot)
        await pilot.press("n")
        await pilot.press(*"https://hooks.console.test/stripe", "enter")
        screen = app.screen
        await until(pilot, lambda: screen.view is not None and screen.view.managed)
        webhook_id = screen.view.managed[0].webhook_id
        await pilot.pause()
        assert any(webhook_id in line for line in screen_text(app))


# -- operator features ---------------------------------------------------------------------------


async def test_columns_sort_by_key_and_by_header_click(make_app, clean_db, stripe_server):
    seed_account(clean_db, stripe_server.account_id)
    seed_runs(clean_db, stripe_server.account_id)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        history = app.screen.query_one("#history", FilterableTable)
        history.focus_table()
        assert history.shown_keys == ["3", "2", "1"]
        await pilot.press("o")  # by run number, ascending
        assert history.sort_column == "run" and history.shown_keys == ["1", "2", "3"]
        await pilot.press("o")  # next column: trigger (all the same: stable)
        assert history.sort_column == "trigger"
        await pilot.click("#history DataTable", offset=(34, 0))  # the "objects" header
        assert history.sort_column == "stored"
        assert history.shown_keys == ["2", "1", "3"]  # 322, 1,325, 1,663: by value, not as text
        await pilot.click("#history DataTable", offset=(34, 0))  # again: the other way
        assert history.shown_keys == ["3", "1", "2"]
        assert "▼" in str(history.table.columns["stored"].label)  # type: ignore[index]
        await loaded(pilot, app.screen.loads + 2)  # a live refresh keeps the order
        assert history.shown_keys == ["3", "1", "2"]


async def test_y_copies_the_selected_id(make_app, clean_db, stripe_server):
    seed_account(clean_db, stripe_server.account_id)
    seed_runs(clean_db, stripe_server.account_id)
    app = make_app()
    copied: list[str] = []
    app.copy_to_clipboard = copied.append  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        app.screen.query_one("#history", FilterableTable).focus_table()
        await pilot.press("down", "enter")
        await loaded(pilot)
        await pilot.press("down", "y")
        chunks = app.screen.query_one("#chunks", FilterableTable)
        assert copied == [chunks.cursor_key] and any(f"Copied {chunks.cursor_key}" in t for t in app.notified)


async def test_jump_to_running_and_failed_chunks_with_no_row_cap(make_app, clean_db, stripe_server):
    seed_account(clean_db, stripe_server.account_id)
    seed_runs(clean_db, stripe_server.account_id, open_run=False)
    with psycopg.connect(clean_db, autocommit=True) as conn:
        run_id = conn.execute("INSERT INTO stripe._sync_runs (account_id, objects, params, started_at) "
                              "VALUES (%s, '{customers}', '{}', %s) RETURNING id",
                              (stripe_server.account_id, at(30))).fetchone()[0]
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO stripe._sync_obj_runs (run_id, object, created_gte, created_lte, status, "
                "processed_count) VALUES (%s, 'customers', %s, %s, %s, 0)",
                [(run_id, i * 86_400, i * 86_400 + 86_399,
                  "running" if i == 4_321 else "error" if i in (1_700, 4_000) else "complete")
                 for i in range(5_000)])
    app = make_app(refresh_interval=30)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("enter")  # the open run (the current one)
        screen = app.screen
        assert isinstance(screen, RunChunksScreen)
        await loaded(pilot)
        chunks = screen.query_one("#chunks", FilterableTable)
        assert chunks.row_count == 5_000  # every chunk: the 1,000-row cap is gone
        await pilot.press("g")
        assert str(chunks.table.get_row_at(chunks.table.cursor_row)[4]) == "running"
        assert chunks.table.cursor_row == 4_321
        await pilot.press("e")
        assert chunks.table.cursor_row == 1_700  # the next failed one after the cursor, wrapping
        await pilot.press("e")
        assert chunks.table.cursor_row == 4_000
        await until(pilot, lambda: chunks.table.row_count == 5_000)  # the rest arrives in batches


async def test_run_title_has_an_overall_eta_and_a_rate_sparkline(make_app, clean_db, stripe_server):
    seed_account(clean_db, stripe_server.account_id)
    run_id = seed_runs(clean_db, stripe_server.account_id)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        # 3 of 7 chunks done in the 10 minutes since the first started, 3 left (one failed): 10 more
        assert "ETA 10m00s" in str(screen.query_one("#run-title").render())
        spark = screen.query_one("#rate-spark", Sparkline)
        assert not spark.display  # one sample (a frozen clock) is no rate yet
        for stored in (100, 400):
            app.clock.advance(10)
            with psycopg.connect(clean_db, autocommit=True) as conn:
                conn.execute("UPDATE stripe._sync_obj_runs SET processed_count = processed_count + %s "
                             "WHERE run_id = %s AND status = 'running'", (stored, run_id))
            await loaded(pilot, screen.loads + 2)
        assert spark.display and list(spark.data or [])[-2:] == [10.0, 40.0]


async def test_footer_offers_only_what_applies(make_app, clean_db, stripe_server):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("3")
        screen = app.screen

        def offered(action: str) -> bool:
            return bool(app.screen.check_action(action, ()))

        assert offered("start_backfill") and not offered("cancel_backfill") and not offered("resume_backfill")
        assert not offered("jump_failed")  # no chunk failed (none exists)
        await pilot.press("c")
        assert any("Cancel the backfill: no backfill is running here" in t for t in app.notified)
        screen.running = True
        screen._buttons()
        assert offered("cancel_backfill") and not offered("start_backfill") and not offered("plan_backfill")
        screen.running = False
        screen._buttons()
        await pilot.press("5")
        await pilot.pause()
        assert offered("start_listener") and not offered("stop_listener")
        assert not offered("filter") and not offered("copy_id")  # no table on the listener screen
        assert "Stop the listener" not in screen_text(app)[-1]


async def test_layouts_from_80x24_to_250x70(make_app, clean_db, stripe_server):
    """The backfill form (53 columns) squeezed the chunks to ~25 columns at 80."""
    for size, stacked in (((80, 24), True), ((120, 36), False), ((250, 70), False)):
        app = make_app()
        async with app.run_test(size=size) as pilot:
            await loaded(pilot)
            await pilot.press("3", "p")
            progress = app.screen.query_one("#backfill-progress")
            assert progress.region.width >= (size[0] - 2 if stacked else size[0] - 55), size
            table = app.screen.query_one("#chunks", FilterableTable)
            note = table.table.columns["note"]  # type: ignore[index]
            assert note.width >= 24


async def test_a_live_refresh_reuses_unchanged_rows_and_sees_a_colour_change():
    """A refresh of 20,000 chunks each second must not rebuild every cell (the chunk view's cost)."""
    from rich.text import Text
    from textual.app import App, ComposeResult

    class OneTable(App):
        def compose(self) -> ComposeResult:
            yield FilterableTable([("a", "a", 5), ("s", "status", 8)], id="t")

    async with OneTable().run_test() as pilot:
        table = pilot.app.query_one(FilterableTable)
        table.set_rows([("1", ("x", Text("ok", style="green")))])
        first = table._shown["1"]
        table.set_rows([("1", ("x", Text("ok", style="green")))])
        assert table._shown["1"] is first
        table.set_rows([("1", ("x", Text("ok", style="red")))])
        assert str(table.table.get_cell("1", "s").style) == "red"


async def test_a_theme_changed_on_another_screen_shows_on_return(make_app, clean_db, stripe_server):
    """Resumed screens are not restyled when nothing changed (a switch redrew every table); a theme changed
    while a screen was away must still reach it."""
    seed_account(clean_db, stripe_server.account_id)
    seed_runs(clean_db, stripe_server.account_id)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        table = app.screen.query_one(DataTable)
        before = table.styles.background
        await pilot.press("5")
        await until(pilot, lambda: isinstance(app.screen, ListenerScreen))
        app.theme = "textual-light" if app.theme != "textual-light" else "textual-dark"
        await pilot.pause()
        await pilot.press("1")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))
        await pilot.pause()
        assert table.styles.background != before  # restyled for the new theme, not left as it was
