"""1 · Sync runs: the current run, one live row per object, and the run history below it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.content import Content
from textual.widgets import DataTable, Static

from stripe_sync_core.status import ChunkRow, RunSummary

from .. import actions
from .. import format as fmt
from ..engine import RunsView
from ..theme import styled
from ..widgets.grid import ChunkGrid
from ..widgets.table import FilterableTable
from .base import ConsoleScreen

# Widths fit 120 columns with the cell padding (2 a column).
if TYPE_CHECKING:
    pass


CURRENT_COLUMNS = [("object", "object", 20), ("status", "status", 11), ("chunks", "chunks", 14),
                   ("stored", "stored", 9), ("rate", "objects/s", 9), ("eta", "ETA", 7), ("error", "last error", 36)]
HISTORY_COLUMNS = [("run", "run", 6), ("trigger", "trigger", 9), ("status", "status", 11),
                   ("objects", "objects", 32), ("stored", "stored", 10), ("done", "done/err", 8),
                   ("started", "started (UTC)", 19), ("took", "took", 8)]
CHUNK_COLUMNS = [("chunk", "chunk", 6), ("object", "object", 20), ("from", "created from", 12),
                 ("to", "created to", 12), ("status", "status", 11), ("stored", "stored", 8),
                 ("attempts", "tries", 5), ("error", "error", 28)]


def run_title(run: RunSummary | None, now: Any) -> Content:
    if run is None:
        return Content.styled("No sync run yet: start one from 3 Backfill, or the headless CLI.", "$text-muted")
    meaning = fmt.meaning_of_status(run.status)
    return Content.assemble(
        (f"Run #{run.run_id}", "bold"), f"  {run.trigger}  ", (run.status, f"${meaning}"),
        f"  started {fmt.timestamp(run.started_at)}",
        f"  closed {fmt.timestamp(run.closed_at)}" if run.closed_at else f"  ({fmt.ago(run.started_at, now)})",
        f"  {run.total_processed:,} objects",
    )


class RunsScreen(ConsoleScreen):
    screen_name = "runs"
    BINDINGS = actions.bindings_for("runs")

    def compose_body(self) -> ComposeResult:
        yield Static(id="run-title", classes="section-title")
        yield FilterableTable(CURRENT_COLUMNS, id="current", empty="no objects in this run",
                              classes="upper")
        yield Static(Content.styled("History", "bold"), classes="section-title")
        yield FilterableTable(HISTORY_COLUMNS, id="history", empty="no runs yet", classes="lower")

    def on_mount(self) -> None:
        self.query_one("#current", FilterableTable).focus_table()

    async def fetch(self) -> RunsView:
        assert self.console.engine is not None
        return await self.console.engine.runs_view(self.console.clock.now())

    def show(self, view: RunsView) -> None:
        run, progress, history = view.current, view.progress, view.history
        app = self.app
        now = self.console.clock.now()
        self.query_one("#run-title", Static).update(run_title(run, now))
        self.current_run_id = run.run_id if run else None
        self.query_one("#current", FilterableTable).set_rows([
            (row.object, (
                row.object,
                styled(app, row.status, fmt.meaning_of_status(row.status)),
                f"{row.chunks_done:,}/{row.chunks_total:,}" + (f" ({row.chunks_failed} failed)"
                                                               if row.chunks_failed else ""),
                fmt.count(row.processed),
                fmt.rate(row.objects_per_second),
                fmt.duration(row.eta_seconds) if row.status == "running" else "–",
                styled(app, fmt.clip(row.last_error, 36), "error"),
            )) for row in progress
        ])
        self.query_one("#history", FilterableTable).set_rows([
            (str(item.run_id), (
                f"#{item.run_id}", item.trigger,
                styled(app, item.status, fmt.meaning_of_status(item.status)),
                fmt.clip(", ".join(item.objects), 32),
                fmt.count(item.total_processed),
                Text.assemble(str(item.complete_count), "/",
                              styled(app, str(item.error_count), "error" if item.error_count else None)),
                fmt.timestamp(item.started_at),
                fmt.duration(((item.closed_at or now) - item.started_at).total_seconds()),
            )) for item in history
        ])

    current_run_id: int | None = None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_chunks()

    def action_open_chunks(self) -> None:
        table = self.focused_table()
        run_id: int | None = None
        if table is not None and table.id == "history" and table.cursor_key:
            run_id = int(table.cursor_key)
        elif self.current_run_id is not None:
            run_id = self.current_run_id
        if run_id is None:
            self.notify("No run to open yet.")
            return
        self.app.push_screen(RunChunksScreen(run_id))


class RunChunksScreen(ConsoleScreen):
    """The chunks of one run: a grid for the shape, a table for the detail."""

    screen_name = "chunks"
    BINDINGS = actions.bindings_for("chunks")
    tab = "runs"

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id

    def compose_body(self) -> ComposeResult:
        yield Static(Content.assemble((f"Run #{self.run_id}", "bold"), " chunks  ",
                                      ("esc back · / filter", "$text-muted")), id="chunks-title",
                     classes="section-title")
        yield ChunkGrid(id="grid")
        yield FilterableTable(CHUNK_COLUMNS, id="chunks", empty="this run has no chunks")

    def on_mount(self) -> None:
        self.query_one("#chunks", FilterableTable).focus_table()

    async def fetch(self) -> list[ChunkRow]:
        run_id = self.run_id
        assert self.console.engine is not None
        return await self.console.engine.run_chunks(run_id)

    def show(self, chunks: list[ChunkRow]) -> None:
        app = self.app
        self.query_one(ChunkGrid).set_chunks([(c.object, c.chunk_id, c.status) for c in chunks])
        self.query_one("#chunks", FilterableTable).set_rows([
            (str(c.chunk_id), (
                str(c.chunk_id), c.object, fmt.day(c.created_gte), fmt.day(c.created_lte),
                styled(app, c.status, fmt.meaning_of_status(c.status)), fmt.count(c.processed),
                str(c.attempts), styled(app, fmt.clip(c.error, 28), "error"),
            )) for c in chunks
        ])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
