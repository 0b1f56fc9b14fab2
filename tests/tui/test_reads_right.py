"""Issue 12: what read wrong on screen, each pinned by a test, and the operator features.

Each test states what an operator would have seen before its fix.
"""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from textual.widgets import Input

from stripe_sync_tui.screens.backfill import BackfillScreen
from stripe_sync_tui.widgets.table import FilterableTable

from .conftest import SIZE, loaded
from .seed import seed_account, seed_runs


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
        await loaded(pilot)
        await pilot.press("3")
        screen = app.screen
        assert isinstance(screen, BackfillScreen)
        screen.query_one("#objects").deselect_all()
        screen.query_one("#objects").select("customers")
        screen.query_one("#objects").select("invoices")
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


