"""`ConsoleScreen`: header, body, footer, the registry's bindings, and the live refresh loop.

The refresh loop follows Dolphie: a worker fetches, posts the result, the handler renders and only
then re-arms the timer, so a slow database never piles refreshes up. A suspended screen (another
screen shown, or a dialog open on top) stops refreshing until it is resumed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import is_dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events
from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer

from stripe_sync_core.status import ObjectProgress

from .. import actions
from ..messages import OperationFailed
from ..problems import problem_from
from ..widgets.footer import ConsoleFooter
from ..widgets.header import ConsoleHeader
from ..widgets.table import FilterableTable

if TYPE_CHECKING:
    from ..app import ConsoleApp


class DataLoaded(Message):
    def __init__(self, payload: Any, *, timed: bool = False) -> None:
        super().__init__()
        self.payload = payload
        self.timed = timed
        """Loaded by the live timer (not asked for): drawn only if something changed."""


def steady(payload: Any) -> Any:
    """`payload` without what moves by the clock alone (objects/s and ETAs computed up to now): two loads
    with the same steady form have nothing new to draw."""
    progress = getattr(payload, "progress", None)
    if is_dataclass(payload) and isinstance(progress, list):
        return replace(payload, progress=[  # type: ignore[type-var]
            replace(row, objects_per_second=None, eta_seconds=None) if isinstance(row, ObjectProgress) else row
            for row in progress])
    return payload


class StyledOnceScreen(Screen):
    """A screen whose styles are refreshed on resume only when the app's CSS changed while it was away.

    Textual restyles every node of a screen each time it is resumed, which clears every table's rendered
    cells: under load a switch between screens then cost a few hundred milliseconds redrawing tables that
    had not changed. The app counts CSS changes (a theme, a stylesheet) and refreshes a screen that missed
    one before resuming it, so a screen whose count matches has nothing to restyle.
    """

    def _on_screen_resume(self, event: events.ScreenResume) -> None:
        if self._css_update_count == self.app._css_update_count:
            event.refresh_styles = False  # Textual's own handler (next in the MRO) reads it


class ConsoleScreen(StyledOnceScreen):
    BINDINGS = actions.screen_bindings()
    screen_name: ClassVar[str] = ""
    tab: ClassVar[str] = ""
    """The header tab lit for this screen (its own name unless it belongs to another)."""
    refresh_every: ClassVar[float | None] = 1.0
    """Seconds between live refreshes; None loads on resume and on `r` only."""

    def __init__(self) -> None:
        super().__init__(name=self.screen_name)
        self._timer: Timer | None = None
        self._active = False
        self.loads = 0
        """How many refreshes have completed, drawn or found unchanged (tests wait on it)."""
        self._shown: Any = None
        """The steady form of the payload last drawn."""

    @property
    def console(self) -> ConsoleApp:  # type: ignore[override]
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield ConsoleHeader(self.tab or self.screen_name)
        yield from self.compose_body()
        yield ConsoleFooter()

    def compose_body(self) -> ComposeResult:
        yield from ()

    # -- refresh loop ---------------------------------------------------------------------------

    async def fetch(self) -> Any:
        """Read what the screen shows (runs on the engine loop through `self.console.engine`)."""
        return None

    def show(self, payload: Any) -> None:
        """Render a fetched payload (UI loop)."""

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        self._active = True
        self.action_refresh_now()

    def on_screen_suspend(self, event: events.ScreenSuspend) -> None:
        self._active = False
        self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def action_refresh_now(self, *, timed: bool = False) -> None:
        self._cancel_timer()
        if not self.console.connected:
            self._rearm()
            return
        self.run_worker(partial(self._load, timed), group="load", exclusive=True,  # type: ignore[arg-type]
                        exit_on_error=False)

    async def _load(self, timed: bool) -> None:
        try:
            payload = await self.fetch()
        except Exception as error:  # noqa: BLE001 - becomes a message, never a traceback
            self.post_message(OperationFailed("refresh", problem_from(error, self.console.database_display)))
            self.post_message(DataLoaded(None))
            return
        self.post_message(DataLoaded(payload, timed=timed))

    def on_data_loaded(self, message: DataLoaded) -> None:
        if message.payload is not None:
            # A screen that shows nothing moving (an interrupted run, a finished one) redraws nothing on
            # its live ticks: that is what an idle console costs. Asked-for loads always draw.
            shown = steady(message.payload)
            if not (message.timed and shown == self._shown):
                self.show(message.payload)
                self._shown = shown
            self.loads += 1
        self._rearm()

    def _rearm(self) -> None:
        interval = self.refresh_interval
        if self._active and interval is not None and self._timer is None:
            self._timer = self.set_timer(interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self._active:
            self.action_refresh_now(timed=True)

    @property
    def refresh_interval(self) -> float | None:
        if self.refresh_every is None:
            return None if self.console.connected else self.console.settings.refresh_interval
        return self.console.settings.refresh_interval

    # -- background calls -------------------------------------------------------------------------

    def call_engine(self, what: str, call: Callable[[], Awaitable[Message | None]]) -> None:
        """Run `call` in a worker; it returns the message to post (or None). Failures become messages."""

        # An action that does not answer within a frame or so says that it is working (Stripe may be
        # slow, or the account's request budget busy), so a key press never seems to do nothing.
        after = self.console.settings.working_notice_seconds
        working = None if after is None else self.set_timer(after, lambda: self.notify(
            f"{what[:1].upper()}{what[1:]}: in progress…", title="Working", timeout=4))

        async def work() -> None:
            try:
                message = await call()
            except Exception as error:  # noqa: BLE001
                self.post_message(OperationFailed(what, problem_from(error, self.console.database_display)))
                return
            finally:
                if working is not None:
                    working.stop()
            if message is not None:
                self.post_message(message)

        self.run_worker(work, group=what, exit_on_error=False)  # type: ignore[arg-type]

    def on_operation_failed(self, message: OperationFailed) -> None:
        self.console.report_failure(message)

    # -- keys -----------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        entry = actions.find(self.screen_name, action)
        if entry is None:
            return True
        if actions.disabled_reason(entry, read_only=self.console.read_only):
            return None  # shown dimmed in the footer; pressing it explains (on_key)
        if entry.needs and self.unmet(entry.needs):
            return False  # does not apply now: out of the footer; pressing it explains (on_key)
        return True

    def unmet(self, need: str) -> str | None:
        """Why `need` (an action's `needs` in the registry) does not hold now; None when it does."""
        table = self.focused_table()
        if need == "table":
            return None if table is not None else "no table on this screen"
        if need == "selection":
            return None if table is not None and table.cursor_key else "no row selected"
        if need in ("running_chunk", "failed_chunk"):
            chunks = self.query("#chunks")
            if not chunks or not isinstance(chunks.first(), FilterableTable):
                return "no chunks on this screen"
            status = "running" if need == "running_chunk" else "error"
            if not chunks.first(FilterableTable).has_value("status", status):
                return f"no {'running' if status == 'running' else 'failed'} chunk"
        return None

    def on_key(self, event: events.Key) -> None:
        for entry in (*actions.actions_for(self.screen_name), *actions.actions_for(None)):
            if event.key != self.console.key_for(entry):
                continue
            reason = actions.disabled_reason(entry, read_only=self.console.read_only) or (
                self.unmet(entry.needs) if entry.needs else None)
            if reason:
                event.stop()
                self.notify(f"{entry.title}: {reason}", severity="warning")
                return

    def action_sort(self) -> None:
        table = self.focused_table()
        if table is not None:
            table.sort_next_column()

    def action_copy_id(self) -> None:
        """`y`: the selected row's id (its key: a run, chunk, webhook or account id, whole) to the clipboard."""
        table = self.focused_table()
        key = table.cursor_key if table is not None else None
        if not key:
            self.notify("No row selected to copy.")
            return
        text = self.copy_text(table, key)  # type: ignore[arg-type]
        self.app.copy_to_clipboard(text)
        self.notify(f"Copied {text}", title="Clipboard")

    def copy_text(self, table: FilterableTable, key: str) -> str:
        """What `y` copies for a row (its key unless the screen says otherwise)."""
        return key

    def focused_table(self) -> FilterableTable | None:
        focused = self.focused
        while focused is not None and focused is not self:
            if isinstance(focused, FilterableTable):
                return focused
            focused = focused.parent  # type: ignore[assignment]
        tables = self.query(FilterableTable)
        return tables.first() if tables else None

    def action_filter(self) -> None:
        table = self.focused_table()
        if table is not None:
            table.open_filter()

    def action_back(self) -> None:
        table = self.focused_table()
        if table is not None and table.has_class("-filtering"):
            table.close_filter()
        elif self.app.screen is self and len(self.app.screen_stack) > 1:
            self.app.pop_screen()
