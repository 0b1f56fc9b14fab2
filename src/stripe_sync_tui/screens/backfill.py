"""3 · Backfill: choose objects, a range, chunking, concurrency and budget; plan, start, watch, cancel, resume.

The backfill itself runs in a worker process (`backfill_process.py`); this screen follows it through the
messages its stream becomes and the database, and stops it with `c`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, SelectionList, Static

from stripe_sync_core.backfill import preview_chunks, tables_for
from stripe_sync_core.chunking import InvalidDate, parse_created_bound
from stripe_sync_core.errors import InvalidInput
from stripe_sync_core.estimate import describe
from stripe_sync_core.registry import REGISTRY
from stripe_sync_core.runs import PlannedChunk
from stripe_sync_core.sigma import SIGMA, sigma_objects
from stripe_sync_core.sigma.client import NO_LIVE_KEY
from stripe_sync_core.status import RunSummary

from .. import actions
from .. import format as fmt
from ..backfill_process import WorkerKilled, WorkerStopped
from ..engine import BackfillView
from ..messages import BackfillStopped, ChunkCompleted, ChunkStarted, OperationFailed, RunFinished, RunStarted
from ..problems import problem_from
from ..widgets.grid import ChunkGrid
from ..widgets.inputs import ConsoleInput
from ..widgets.table import FilterableTable
from .base import ConsoleScreen
from .runs import CHUNK_COLUMNS, ChunkJumps, ChunkRows

if TYPE_CHECKING:
    pass


PRESETS = {"7": 7, "30": 30, "365": 365, "all": None}
PLAN_COLUMNS = [("chunk", "#", 6), ("object", "object", 20), ("from", "created from", 12),
                ("to", "created to", 12), ("note", "plan note", 24)]
CHUNK_SIZES = ("auto", "day", "week", "month")
ALL_TABLES = tables_for("all")


class FormError(InvalidInput, ValueError):
    """A field of the form is wrong; the message names it."""


@dataclass(frozen=True)
class BackfillRequest:
    objects: tuple[str, ...]
    created_gte: int | None
    created_lte: int | None
    chunk: str
    concurrency: int | None
    requests_per_second: float | None

    @property
    def object_argument(self) -> list[str]:
        """What `process_until_done(object=...)` is called with, one call each."""
        return ["all"] if set(self.objects) == set(ALL_TABLES) else list(self.objects)


class BackfillScreen(ChunkJumps, ConsoleScreen):
    screen_name = "backfill"
    BINDINGS = actions.bindings_for("backfill")
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-medium"), (160, "-wide")]
    """Under 100 columns the form stacks above the chunks; under 160 it is narrower (console.tcss)."""

    def __init__(self) -> None:
        super().__init__()
        self.running = False
        self.stopping = False
        self.worker_lost: str | None = None
        """Why the last worker ended without finishing (killed), shown until the next start."""
        self.run_id: int | None = None
        self.resumable: RunSummary | None = None
        self.plan: list[PlannedChunk] = []
        self.plan_chunk = "auto"
        self.plan_estimate = ""
        """The plan's duration at the key's Stripe limits, from the rows stored ("" before any is)."""
        self.chunk_rows = ChunkRows()
        self._offers: tuple[bool, bool] | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="backfill"):
            with VerticalScroll(id="backfill-form"):
                yield Label("Objects (space toggles)")
                config = self.console.config
                yield SelectionList[str](*((name, name, name in ALL_TABLES) for name in REGISTRY),
                                         (f"sigma: {len(sigma_objects())} reporting tables (live keys)", SIGMA,
                                          config.enable_sigma and config.livemode is not False),
                                         id="objects")
                yield Label("Created from · to (YYYY-MM-DD, blank = open)")
                with Horizontal(classes="row"):
                    yield ConsoleInput(placeholder="from", id="from")
                    yield ConsoleInput(placeholder="to", id="to")
                with Horizontal(classes="row presets"):
                    yield Button("7 days", id="preset-7", compact=True)
                    yield Button("30 days", id="preset-30", compact=True)
                    yield Button("1 year", id="preset-365", compact=True)
                    yield Button("all time", id="preset-all", compact=True)
                yield Label("Chunk size")
                with RadioSet(id="chunk"):
                    for size in CHUNK_SIZES:
                        yield RadioButton(size, value=size == "auto", id=f"chunk-{size}")
                yield Label("Concurrency · request budget (req/s)")
                with Horizontal(classes="row"):
                    yield ConsoleInput(placeholder="default", id="concurrency", type="integer")
                    yield ConsoleInput(placeholder="default", id="budget", type="number")
                with Horizontal(classes="row"):
                    yield Button("Plan", id="plan", compact=True)
                    yield Button("Start", id="start", variant="primary", compact=True)
                    yield Button("Cancel", id="cancel", variant="error", compact=True, disabled=True)
            with Vertical(id="backfill-progress"):
                yield Static(id="backfill-title", classes="section-title")
                yield Static(id="plan-note", classes="hint")
                yield ChunkGrid(id="grid")
                yield FilterableTable(CHUNK_COLUMNS, fill="error", id="chunks", empty="p plans the chunks; s starts")

    def on_mount(self) -> None:
        self.console.sink.subscribe(self)
        self._title()

    def on_unmount(self) -> None:
        self.console.sink.unsubscribe(self)

    # -- form -----------------------------------------------------------------------------------

    def request(self) -> BackfillRequest:
        objects = tuple(self.query_one("#objects", SelectionList).selected)
        if not objects:
            raise FormError("choose at least one object type")
        if SIGMA in objects and self.console.config.livemode is False:
            raise FormError(f"{NO_LIVE_KEY}; or leave sigma out")
        gte = _parse_day(self.query_one("#from", Input).value, "from", end=False)
        lte = _parse_day(self.query_one("#to", Input).value, "to", end=True)
        if gte is not None and lte is not None and lte < gte:
            raise FormError("'to' is before 'from'")
        pressed = self.query_one("#chunk", RadioSet).pressed_button
        chunk = str(pressed.label) if pressed else "auto"
        concurrency, budget = self._pace()
        return BackfillRequest(objects, gte, lte, chunk, concurrency, budget)

    def _pace(self) -> tuple[int | None, float | None]:
        """The form's concurrency and request budget (a start and a resume both use them)."""
        concurrency = _parse_number(self.query_one("#concurrency", Input).value, "concurrency", int)
        budget = _parse_number(self.query_one("#budget", Input).value, "request budget", float)
        if concurrency is not None and concurrency < 1:
            raise FormError("concurrency must be 1 or more")
        if budget is not None and budget < 0:
            raise FormError("the request budget must be 0 (unlimited) or more")
        return concurrency, budget

    @on(Button.Pressed, ".presets Button")
    def preset(self, event: Button.Pressed) -> None:
        days = PRESETS[(event.button.id or "").removeprefix("preset-")]
        today = self.console.clock.now().astimezone(UTC).date()
        self.query_one("#from", Input).value = "" if days is None else (today - timedelta(days=days)).isoformat()
        self.query_one("#to", Input).value = ""

    @on(Button.Pressed, "#plan")
    def action_plan_backfill(self) -> None:
        try:
            request = self.request()
        except FormError as error:
            self.notify(str(error), title="Backfill form", severity="error")
            return
        self.plan = preview_chunks(request.objects, request.created_gte, request.created_lte, request.chunk,
                                   int(self.console.clock.now().timestamp()))
        self.plan_chunk = request.chunk
        self.run_id = None
        self.query_one(ChunkGrid).set_chunks([(c.object, i, "pending") for i, c in enumerate(self.plan)])
        table = self.query_one("#chunks", FilterableTable)
        table.set_columns(PLAN_COLUMNS, fill="note")
        table.set_rows([
            (f"plan-{i}", (f"{i + 1}", c.object, fmt.day(c.created_gte), fmt.day(c.created_lte),
                           c.note))
            for i, c in enumerate(self.plan)
        ])
        self.plan_estimate = ""
        self._title()
        self.run_worker(self._estimate(request.objects), group="estimate", exclusive=True, exit_on_error=False)

    async def _estimate(self, objects: tuple[str, ...]) -> None:
        engine = self.console.engine
        if engine is None:
            return
        estimate = await engine.backfill_estimate(objects)
        if estimate is not None and self.plan and self.run_id is None:
            text = describe(estimate, fmt.mode_label(engine.livemode))
            self.plan_estimate = f"{text[:1].upper()}{text[1:]} (from the rows stored)."
            self._title()

    # -- start, cancel, resume --------------------------------------------------------------------

    @on(Button.Pressed, "#start")
    def action_start_backfill(self) -> None:
        if self.running:
            self.notify("A backfill is already running: c cancels it.", severity="warning")
            return
        try:
            request = self.request()
        except FormError as error:
            self.notify(str(error), title="Backfill form", severity="error")
            return
        if not self.plan:
            self.action_plan_backfill()
        self._launch(request.object_argument, dict(created_gte=request.created_gte,
                                                   created_lte=request.created_lte, chunk=request.chunk),
                     request.concurrency, request.requests_per_second)

    def _launch(self, objects: list[str] | None, arguments: dict[str, Any], concurrency: int | None,
                budget: float | None) -> None:
        """Backfill `objects` in a worker process, or join the open run when `objects` is None; the form's
        concurrency and request budget go to the worker."""
        engine = self.console.engine
        assert engine is not None
        self.running = True
        self.stopping = False
        self.worker_lost = None
        self._buttons()

        async def backfill() -> RunFinished | None:
            if objects is None:
                summary = await engine.join_open_run(concurrency, requests_per_second=budget)
            else:
                summary = await engine.backfill(objects, **arguments, concurrency=concurrency,
                                                requests_per_second=budget)
            return RunFinished(self.run_id or 0, summary)

        async def work() -> None:
            try:
                message = await backfill()
            except BaseException as error:  # cancellation included: the screen must leave "running"
                self.post_message(BackfillStopped(error))
                if not isinstance(error, Exception):
                    raise
                return
            if message is not None:
                self.post_message(message)

        self.run_worker(work, group="backfill", exclusive=True, exit_on_error=False)  # type: ignore[arg-type]
        self._title()

    @on(Button.Pressed, "#cancel")
    def action_cancel_backfill(self) -> None:
        if not self.running:
            self.notify("No backfill is running here.")
            return
        assert self.console.engine is not None
        self.stopping = True
        if not self.console.engine.stop_backfill():  # its worker not started yet: stop following it
            self.workers.cancel_group(self, "backfill")
        self._title()

    def action_resume_backfill(self) -> None:
        run = self.resumable
        if run is None:
            self.notify("No interrupted run to resume.")
            return
        if self.running:
            self.notify("A backfill is already running.", severity="warning")
            return
        try:
            concurrency, budget = self._pace()
        except FormError as error:
            self.notify(str(error), title="Backfill form", severity="error")
            return
        self.run_id = run.run_id
        self._launch(None, {}, concurrency, budget)

    def on_run_started(self, message: RunStarted) -> None:
        self.run_id = message.run_id
        self.action_refresh_now()

    def on_chunk_started(self, message: ChunkStarted) -> None:
        if message.run_id == self.run_id:
            self.query_one(ChunkGrid).mark(message.object_name, message.chunk_id, "running")

    def on_chunk_completed(self, message: ChunkCompleted) -> None:
        if message.run_id == self.run_id:
            self.query_one(ChunkGrid).mark(message.object_name, message.chunk_id, message.status)

    def on_run_finished(self, message: RunFinished) -> None:
        if not self.running:
            return
        self.running = False
        self.notify(f"Backfill finished: {fmt.stored_in(message.summary)} stored.", title="Backfill")
        self._buttons()
        self.action_refresh_now()

    def on_backfill_stopped(self, message: BackfillStopped) -> None:
        self.running = False
        self.stopping = False
        self._buttons()
        error = message.error
        if isinstance(error, WorkerKilled):
            self.worker_lost = f"worker killed: {error.held_chunks} chunk(s) still read running"
            self.notify(str(error), title="Backfill worker killed", severity="error", timeout=15)
        elif isinstance(error, WorkerStopped) and not error.requested:
            self.notify(str(error), title="Backfill worker stopped", severity="warning", timeout=10)
        elif isinstance(error, WorkerStopped) or not isinstance(error, Exception):
            self.notify("Backfill cancelled: the run stays open; shift+r resumes it.", title="Backfill",
                        severity="warning")
        else:
            self.console.report_failure(OperationFailed("backfill", problem_from(error)))
        self.action_refresh_now()

    # -- live view --------------------------------------------------------------------------------

    async def fetch(self) -> BackfillView:
        assert self.console.engine is not None
        return await self.console.engine.backfill_view(self.console.clock.now(), self.run_id)

    def show(self, view: BackfillView) -> None:
        run = view.run
        self.resumable = run if run is not None and run.is_open and not self.running else None
        if run is not None and (self.run_id == run.run_id or self.resumable is not None):
            app = self.app
            self.query_one(ChunkGrid).set_chunks([(c.object, c.chunk_id, c.status) for c in view.chunks])
            table = self.query_one("#chunks", FilterableTable)
            table.set_columns(CHUNK_COLUMNS, fill="error")
            table.set_rows(self.chunk_rows(app, view.chunks))
        self._title(view)
        self._buttons()

    def _title(self, view: BackfillView | None = None) -> None:
        title = self.query_one("#backfill-title", Static)
        run = view.run if view else None
        note = ""
        if self.running:
            counts = self.query_one(ChunkGrid).counts()
            done, total = counts.get("complete", 0), sum(counts.values())
            label = f"Run #{self.run_id}" if self.run_id else "Starting"
            state = ("stopping", "$warning") if self.stopping else ("running", "$primary")
            title.update(Content.assemble((label, "bold"), "  ", state, f"  {done:,}/{total:,} chunks  ",
                                          *self._worker_figures(),
                                          ("" if self.stopping else "c cancels", "$text-muted")))
            note = versus_plan(len(self.plan), total, self.plan_chunk) if self.run_id else ""
        elif self.resumable is not None and run is not None:
            done = sum(p.chunks_done for p in view.progress) if view else 0
            total = sum(p.chunks_total for p in view.progress) if view else 0
            title.update(Content.assemble(
                (f"Run #{run.run_id}", "bold"), "  ", ("interrupted", "$warning"),
                f"  {done:,}/{total:,} chunks done  ",
                *((self.worker_lost, "$error"), "  ") if self.worker_lost else (),
                ("shift+r resumes (unless another process runs it)", "$text-muted")))
        elif self.plan and self.run_id is None:
            title.update(Content.assemble(("Plan", "bold"), f"  {len(self.plan):,} chunks  ",
                                          ("s starts", "$text-muted")))
            note = " ".join(filter(None, (plan_explanation(self.plan_chunk), self.plan_estimate)))
        elif self.run_id is not None:
            total = sum(p.chunks_total for p in view.progress) if view else 0
            title.update(Content.assemble((f"Run #{self.run_id}", "bold"), "  finished",
                                          f"  {total:,} chunks" if total else ""))
            note = versus_plan(len(self.plan), total, self.plan_chunk) if total else ""
        else:
            title.update(Content.styled("Choose what to backfill, then p plans and s starts.", "$text-muted"))
        hint = self.query_one("#plan-note", Static)
        hint.update(Content.styled(note, "$text-muted"))
        hint.display = bool(note)

    def _worker_figures(self) -> tuple[str | tuple[str, str], ...]:
        """The worker's pid and its requests: rate, 429s and retries (from its stream)."""
        engine = self.console.engine
        worker = engine.backfill_worker if engine is not None else None
        if worker is None:
            return ()
        stats = worker.stats
        if stats is None:
            return (f"worker pid {worker.pid}  ",)
        return (f"{stats.requests_per_second:,.1f} req/s  ",
                (f"429s {stats.rate_limited:,}", "$warning" if stats.rate_limited else ""), "  ",
                (f"retries {stats.retries:,}", "$warning" if stats.retries else ""), "  ",
                (f"pid {worker.pid}  ", "$text-muted"))

    def _buttons(self) -> None:
        self.query_one("#start", Button).disabled = self.running
        self.query_one("#cancel", Button).disabled = not self.running
        offers = (self.running, self.resumable is not None)
        if offers != self._offers:  # the footer is rebuilt only when what it offers changed
            self._offers = offers
            self.refresh_bindings()

    def unmet(self, need: str) -> str | None:
        if need == "idle" and self.running:
            return "a backfill is already running: c cancels it"
        if need == "running" and not self.running:
            return "no backfill is running here"
        if need == "resumable" and (self.resumable is None or self.running):
            return "no interrupted run to resume"
        return super().unmet(need)


def plan_explanation(chunk: str) -> str:
    """Why a run's chunks may not match its plan (`preview_chunks` plans without asking Stripe)."""
    if chunk == "auto":
        return ("auto: one chunk per listing; the run splits a dense range as it goes, so it may hold "
                "more chunks than planned.")
    return (f"{chunk}: every window of the range; the run drops the windows above the newest object and "
            "marks a type with nothing to list done, so it may hold fewer chunks than planned.")


def versus_plan(planned: int, actual: int, chunk: str) -> str:
    """The run's chunk count against its plan's, and why they differ."""
    if not planned or not actual or planned == actual:
        return ""
    why = ("empty windows above the newest object dropped" if actual < planned
           else "dense ranges split into smaller chunks")
    return f"{actual:,} chunks, {planned:,} planned: {why} ({chunk})."


def _parse_day(text: str, name: str, *, end: bool) -> int | None:
    try:
        return parse_created_bound(text, end=end)
    except InvalidDate:
        raise FormError(f"'{name}' must be a date like 2024-01-31 or an ISO timestamp") from None


def _parse_number(text: str, name: str, kind: type) -> Any:
    text = text.strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise FormError(f"{name} must be a number") from None
