"""1 · Sync runs: the current run, one live row per object, and the run history below it."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.content import Content
from textual.message import Message
from textual.widgets import DataTable, Sparkline, Static

from stripe_sync_core.status import AccountChoice, ChunkRow, ObjectProgress, RunSummary, overall_eta

from .. import actions
from .. import format as fmt
from ..engine import RunsView
from ..theme import styled
from ..widgets.grid import ChunkGrid
from ..widgets.table import FilterableTable, Row
from .account_picker import EVERY_ACCOUNT, AccountPicker
from .base import ConsoleScreen

# Widths fit 120 columns with the cell padding (2 a column); the last column takes what a wider
# terminal leaves over (`fill`).
CURRENT_COLUMNS = [("object", "object", 20), ("status", "status", 11), ("chunks", "chunks", 14),
                   ("stored", "objects", 9), ("children", "child rows", 10), ("rate", "objects/s", 9),
                   ("eta", "ETA", 7), ("error", "last error", 24)]
HISTORY_COLUMNS = [("run", "run", 6), ("trigger", "trigger", 9), ("status", "status", 11),
                   ("stored", "objects", 10), ("children", "child rows", 10), ("done", "done/err", 8),
                   ("started", "started (UTC)", 19), ("took", "took", 8), ("objects", "object types", 19)]
CHUNK_COLUMNS = [("chunk", "chunk", 6), ("object", "object", 20), ("from", "created from", 12),
                 ("to", "created to", 12), ("status", "status", 11), ("stored", "objects", 8),
                 ("attempts", "tries", 5), ("error", "error", 28)]
WHOLE = 500
"""Cells are cut here at most; the column's width cuts the rest (a wide terminal shows more)."""
SPARK_SAMPLES = 60


def run_title(run: RunSummary | None, now: Any, progress: Sequence[ObjectProgress] = ()) -> Content:
    if run is None:
        return Content.styled("No sync run yet: start one from 3 Backfill, or the headless CLI.", "$text-muted")
    meaning = fmt.meaning_of_status(run.status)
    eta = overall_eta(list(progress), now) if run.is_open else None
    return Content.assemble(
        (f"Run #{run.run_id}", "bold"), f"  {run.trigger}  ", (run.status, f"${meaning}"),
        f"  started {fmt.timestamp(run.started_at)}",
        f"  closed {fmt.timestamp(run.closed_at)}" if run.closed_at else f"  ({fmt.ago(run.started_at, now)})",
        f"  {fmt.stored(run.total_processed, run.child_rows)}",
        ("  ETA ", "bold") if eta is not None else "", fmt.duration(eta) if eta is not None else "",
    )


def verify_line(results: Sequence[dict], now: datetime) -> Content:
    """The last verify of each type: clean, or how many rows differ from Stripe (and how)."""
    newest = max(r["checked_at"] for r in results)
    several_accounts = len({r["account_id"] for r in results}) > 1
    parts: list[str | tuple[str, str]] = [("Last verify", "bold"), f" {fmt.ago(newest, now)}:"]
    for r in results:
        drift = {kind: r[kind] for kind in ("missing", "deleted", "changed", "stale") if r[kind]}
        left = sum(drift.values()) - (r["repaired"] if r["repair"] else 0)
        label = "clean" if not drift else ", ".join(f"{n:,} {kind}" for kind, n in drift.items())
        if drift and r["repair"]:
            label += f" ({r['repaired']:,} repaired)"
        name = f"{r['account_id']}/{r['object']}" if several_accounts else r["object"]
        parts += [f" {name} ", (label, "$success" if left <= 0 else "$warning"), " ·"]
    return Content.assemble(*parts[:-1])


class RateHistory:
    """Objects per second of the current run between successive refreshes (the sparkline's data)."""

    def __init__(self) -> None:
        self.run_id: int | None = None
        self.last: tuple[datetime, int] | None = None
        self.rates: deque[float] = deque(maxlen=SPARK_SAMPLES)

    def add(self, run_id: int, at: datetime, stored: int) -> None:
        if run_id != self.run_id:
            self.run_id, self.last = run_id, None
            self.rates.clear()
        if self.last is not None:
            seconds = (at - self.last[0]).total_seconds()
            if seconds <= 0:
                return  # the same instant (a frozen clock): nothing to measure
            self.rates.append(max(0, stored - self.last[1]) / seconds)
        self.last = (at, stored)


@dataclass
class AccountChoicesLoaded(Message):
    choices: list[AccountChoice]


class RunsScreen(ConsoleScreen):
    screen_name = "runs"
    BINDINGS = actions.bindings_for("runs")
    account_id: str | None = None
    """The one account whose runs are shown (`a` chooses); None: every account's."""
    accounts = 1

    def compose_body(self) -> ComposeResult:
        yield Static(id="run-title", classes="section-title")
        yield Static(id="verify-line")
        yield Sparkline([], id="rate-spark", summary_function=max)
        yield FilterableTable(CURRENT_COLUMNS, fill="error", id="current", empty="no objects in this run",
                              classes="upper")
        yield Static(Content.styled("History", "bold"), classes="section-title")
        yield FilterableTable(HISTORY_COLUMNS, fill="objects", id="history", empty="no runs yet", classes="lower")

    def on_mount(self) -> None:
        self.rates = RateHistory()
        self.query_one("#current", FilterableTable).focus_table()

    async def fetch(self) -> RunsView:
        assert self.console.engine is not None
        return await self.console.engine.runs_view(self.console.clock.now(), self.account_id)

    def show(self, view: RunsView) -> None:
        run, progress, history = view.current, view.progress, view.history
        self.accounts = view.accounts
        app = self.app
        now = self.console.clock.now()
        title = run_title(run, now, progress)
        if self.account_id is not None:
            title = Content.assemble((self.account_id, "bold $primary"), "  ", title)
        self.query_one("#run-title", Static).update(title)
        verify = self.query_one("#verify-line", Static)
        verify.display = bool(view.verify)  # hidden until a verify ran
        if view.verify:
            verify.update(verify_line(view.verify, now))
        self.current_run_id = run.run_id if run else None
        self._sparkline(run, now)
        self.query_one("#current", FilterableTable).set_rows([
            (row.object, (
                row.object,
                styled(app, row.status, fmt.meaning_of_status(row.status)),
                f"{row.chunks_done:,}/{row.chunks_total:,}" + (f" ({row.chunks_failed} failed)"
                                                               if row.chunks_failed else ""),
                fmt.count(row.processed),
                fmt.count(row.child_rows) if row.child_rows else "–",
                fmt.rate(row.objects_per_second),
                fmt.duration(row.eta_seconds) if row.status == "running" else "–",
                styled(app, fmt.clip(row.last_error, WHOLE), "error"),
            )) for row in progress
        ])
        self.query_one("#history", FilterableTable).set_rows([
            (str(item.run_id), (
                f"#{item.run_id}", item.trigger,
                styled(app, item.status, fmt.meaning_of_status(item.status)),
                fmt.count(item.total_processed),
                fmt.count(item.child_rows) if item.child_rows else "–",
                Text.assemble(str(item.complete_count), "/",
                              styled(app, str(item.error_count), "error" if item.error_count else None)),
                fmt.timestamp(item.started_at),
                fmt.duration(((item.closed_at or now) - item.started_at).total_seconds()),
                ", ".join(item.objects),
            )) for item in history
        ])

    def _sparkline(self, run: RunSummary | None, now: datetime) -> None:
        """Objects/s of the running run, one bar per refresh; hidden until there are two to compare."""
        spark = self.query_one("#rate-spark", Sparkline)
        if run is None or not run.is_open:
            spark.display = False
            return
        self.rates.add(run.run_id, now, run.total_processed)
        spark.data = list(self.rates.rates)
        spark.display = len(self.rates.rates) >= 2
        spark.tooltip = f"objects/s, one bar per refresh; now {fmt.rate(self.rates.rates[-1])}" \
            if self.rates.rates else None

    current_run_id: int | None = None

    def unmet(self, need: str) -> str | None:
        if need == "accounts" and self.accounts < 2 and self.account_id is None:
            return "only one account has sync runs"
        return super().unmet(need)

    def action_choose_account(self) -> None:
        """`a`: a Connect platform's runs are per account; show one account's (or every account's) again."""
        engine = self.console.engine
        if engine is None:
            return

        async def load() -> AccountChoicesLoaded:
            return AccountChoicesLoaded(await engine.account_choices())

        self.call_engine("list accounts", load)

    def on_account_choices_loaded(self, message: AccountChoicesLoaded) -> None:
        def chosen(account: str | None) -> None:
            if account is None:
                return
            self.account_id = None if account == EVERY_ACCOUNT else account
            self.rates = RateHistory()
            self.action_refresh_now()

        self.app.push_screen(AccountPicker(message.choices, self.account_id), chosen)

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


def chunk_row(app: Any, c: ChunkRow) -> Row:
    return (str(c.chunk_id), (
        str(c.chunk_id), c.object, fmt.day(c.created_gte), fmt.day(c.created_lte),
        styled(app, c.status, fmt.meaning_of_status(c.status)), fmt.count(c.processed),
        str(c.attempts), styled(app, fmt.clip(c.error, WHOLE), "error"),
    ))


class ChunkRows:
    """The chunk table's rows (the chunk view and the backfill screen show the same), remembered: a chunk
    that did not change keeps its row object, so a live refresh of 20,000 chunks rebuilds only the few
    that moved and the table skips the rest by identity."""

    def __init__(self) -> None:
        self._rows: dict[int, tuple[ChunkRow, Row]] = {}

    def __call__(self, app: Any, chunks: Sequence[ChunkRow]) -> list[Row]:
        previous, current = self._rows, {}
        rows = []
        for chunk in chunks:
            seen = previous.get(chunk.chunk_id)
            row = seen[1] if seen is not None and seen[0] == chunk else chunk_row(app, chunk)
            current[chunk.chunk_id] = (chunk, row)
            rows.append(row)
        self._rows = current
        return rows


class ChunkJumps:
    """`g` and `e`: the cursor to the next running or failed chunk of the `#chunks` table."""

    def jump(self: Any, statuses: tuple[str, ...], what: str) -> None:
        table = self.query_one("#chunks", FilterableTable)
        table.focus_table()
        if table.jump_to("status", statuses) is None:
            self.notify(f"No {what} chunk.")

    def action_jump_running(self) -> None:
        self.jump(("running",), "running")

    def action_jump_failed(self) -> None:
        self.jump(("error",), "failed")


class RunChunksScreen(ChunkJumps, ConsoleScreen):
    """The chunks of one run: a grid for the shape, a table for the detail (every chunk: no cap)."""

    screen_name = "chunks"
    BINDINGS = actions.bindings_for("chunks")
    tab = "runs"

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.chunk_rows = ChunkRows()

    def compose_body(self) -> ComposeResult:
        yield Static(Content.assemble((f"Run #{self.run_id}", "bold"), " chunks  ",
                                      ("esc back · / filter · g running · e failed", "$text-muted")),
                     id="chunks-title", classes="section-title")
        yield ChunkGrid(id="grid")
        yield FilterableTable(CHUNK_COLUMNS, fill="error", id="chunks", empty="this run has no chunks")

    def on_mount(self) -> None:
        self.query_one("#chunks", FilterableTable).focus_table()

    async def fetch(self) -> list[ChunkRow]:
        run_id = self.run_id
        assert self.console.engine is not None
        return await self.console.engine.run_chunks(run_id)

    def show(self, chunks: list[ChunkRow]) -> None:
        self.query_one(ChunkGrid).set_chunks([(c.object, c.chunk_id, c.status) for c in chunks])
        self.query_one("#chunks", FilterableTable).set_rows(self.chunk_rows(self.app, chunks))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
