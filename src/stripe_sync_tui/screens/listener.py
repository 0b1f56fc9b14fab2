"""5 · Listener: the embedded webhook listener and its tunnel, with a feed like `stripe listen`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.message import Message
from textual.widgets import Static

from stripe_sync_core.listener import ready_banner as core_ready_banner
from stripe_sync_core.status import EventRow

from .. import actions
from .. import format as fmt
from ..engine import ListenerView
from ..messages import EngineReported, EventsArrived
from ..sink import FeedEvent
from ..theme import meaning_style
from ..widgets.feed import EventFeed
from .base import ConsoleScreen

if TYPE_CHECKING:
    pass


RETURN_BACKLOG = 500
"""Deliveries drawn at once on returning to the screen; older ones are only counted (drawing thousands
of lines would make the key that switched screens wait)."""


def ready_banner(state: ListenerView) -> Content:
    """The core's ready line (`stripe listen`'s), its first word coloured."""
    text = core_ready_banner(state.local_url, state.public_url, state.webhook_url, None)
    return Content.assemble(("Ready! ", "bold $success"), text.removeprefix("Ready! "))


@dataclass
class ListenerChanged(Message):
    state: ListenerView


class ListenerScreen(ConsoleScreen):
    screen_name = "listener"
    BINDINGS = actions.bindings_for("listener")
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    """Under 100 columns the counters go under the status (console.tcss)."""

    def __init__(self) -> None:
        super().__init__()
        self.state = ListenerView()
        self.history_loaded = False
        self._offered_for: str | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="listener-status"):
            yield Static(id="listener-main")
            yield Static(id="listener-counters")
        yield EventFeed(id="feed")

    def on_mount(self) -> None:
        self.console.sink.subscribe(self)
        self.query_one(EventFeed).focus()
        self._render_state()

    def on_unmount(self) -> None:
        self.console.sink.unsubscribe(self)

    # -- live ------------------------------------------------------------------------------------

    async def fetch(self) -> tuple[ListenerView, list[EventRow] | None]:
        engine = self.console.engine
        assert engine is not None
        return await engine.listener_view(with_history=not self.history_loaded)

    def show(self, payload: tuple[ListenerView, list[EventRow] | None]) -> None:
        state, history = payload
        if history is not None and not self.history_loaded:
            self.history_loaded = True
            feed = self.query_one(EventFeed)
            feed.add_events(FeedEvent(e.received_at, e.event_id, e.type, e.outcome, None) for e in history)
            # Deliveries that came before this screen was first shown (a listener started by itself)
            # wait in the sink; those not yet in the history follow it, and the live signal re-arms.
            shown = {e.event_id for e in history}
            feed.add_events(e for e in self.console.sink.drain_events() if e.event_id not in shown)
            self._render_counters()
        self.state = state
        self._render_state()

    def on_engine_reported(self, message: EngineReported) -> None:
        """The listener's own lines (the ready banner, catch-up) go into the feed, as `stripe listen` prints them."""
        meaning = {"warning": "warning", "error": "error"}.get(message.level, "success")
        when = fmt.timestamp(self.console.clock.now())
        self.query_one(EventFeed).add_lines([Text.assemble((when, meaning_style(self.app, "text-muted")), "  ",
                                                           (message.text, meaning_style(self.app, meaning)))])

    def on_events_arrived(self, message: EventsArrived) -> None:
        # Before the history is shown, and while another screen is shown, deliveries wait in the sink
        # (bounded): a suspended feed costs the UI nothing under a webhook burst.
        if self.history_loaded and self._active:
            self._take_events()

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        if self.history_loaded:
            self._take_events()

    def _take_events(self) -> None:
        feed = self.query_one(EventFeed)
        events = self.console.sink.drain_events()
        if len(events) > RETURN_BACKLOG:
            # Back on this screen after a burst: the newest deliveries, at once; the counters and the
            # event log (history) have them all.
            skipped = len(events) - RETURN_BACKLOG
            events = events[-RETURN_BACKLOG:]
            feed.add_lines([Text(f"… {skipped:,} earlier deliveries while another screen was shown "
                                 "(counted above)", style=meaning_style(self.app, "text-muted"))])
        feed.add_events(events)
        self._render_counters()

    def _render_state(self) -> None:
        state = self.state
        meaning = fmt.meaning_of_status(state.state)
        lines = [Content.assemble(("Listener ", "bold"), (state.state, f"bold ${meaning}"))]
        if state.state == "ready":
            lines.append(ready_banner(state))
        elif state.state == "stopped":
            lines.append(Content.styled("s starts the listener, its tunnel and its managed webhook.", "$text-muted"))
        lines.append(Content.assemble("Public URL   ", state.public_url or "– (no ngrok token: local only)"))
        lines.append(Content.assemble("Webhook      ", state.webhook_id or "– (none registered)"))
        lines.append(Content.assemble("Catch-up     ", state.catch_up or "–"))
        if state.notice:  # its webhook was deleted under it: re-registered, or why it stopped
            lines.append(Content.styled(f"⚠ {fmt.clip(state.notice, 110)}", "$warning"))
        if state.error:
            lines.append(Content.styled(fmt.clip(state.error, 100), "$error"))
        self.query_one("#listener-main", Static).update(Content("\n").join(lines))
        feed = self.query_one(EventFeed)
        feed.forward_to = state.local_url or ""
        self._render_counters()
        if state.state != self._offered_for:  # the footer is rebuilt only when the state changed
            self._offered_for = state.state
            self.refresh_bindings()

    def unmet(self, need: str) -> str | None:
        if need == "listener_stopped" and self.state.state != "stopped" and self.state.state != "error":
            return f"the listener is {self.state.state}: x stops it"
        if need == "listener_running" and self.state.state in ("stopped", "error"):
            return "the listener is not running: s starts it"
        return super().unmet(need)

    def _render_counters(self) -> None:
        """Two counts that mean different things, each named: the events this console saw (answered
        deliveries by status class, and events catch-up applied, which no delivery carried), and the
        HTTP requests the listener received (one still being answered is in flight)."""
        sink = self.console.sink
        by_class = sink.events_by_class
        answered = sum(by_class.values())
        applied = sink.events_received - answered
        lines = [
            Content.assemble(("Events ", "bold"), f"{_many(answered, 'delivery', 'deliveries')} answered",
                             f" · {applied:,} applied by catch-up" if applied else ""),
            Content.assemble("  2xx ", (f"{by_class['2xx']:,}", "$success"), "  4xx ",
                             (f"{by_class['4xx']:,}", "$warning"), "  5xx ", (f"{by_class['5xx']:,}", "$error")),
        ]
        counters = dict(self.state.counters)
        if counters:
            received = counters.get("received", 0)
            replied = counters.get("2xx", 0) + counters.get("4xx", 0) + counters.get("5xx", 0)
            in_flight = max(0, received - replied)
            lines.append(Content.assemble(("Listener ", "bold"), f"{_many(received, 'request', 'requests')} received",
                                          f" · {in_flight:,} in flight" if in_flight else ""))
        self.query_one("#listener-counters", Static).update(Content("\n").join(lines))

    # -- start, stop -----------------------------------------------------------------------------

    def action_start_listener(self) -> None:
        engine = self.console.engine
        assert engine is not None
        if engine.listener_running:
            self.notify("The listener is already running: x stops it.")
            return
        settings = self.console.settings
        self.state = ListenerView(state="starting")
        self._render_state()

        async def start() -> ListenerChanged:
            # Port 0 is "any free port" (the tests' setting), not "the default".
            return ListenerChanged(await engine.start_listener(settings.listener_host, settings.listener_port))

        self.call_engine("start listener", start)

    def action_stop_listener(self) -> None:
        engine = self.console.engine
        assert engine is not None
        if engine.listener is None:
            self.notify("The listener is not running.")
            return
        self.state = ListenerView(state="stopping", public_url=None, local_url=self.state.local_url)
        self._render_state()

        async def stop() -> ListenerChanged:
            return ListenerChanged(await engine.stop_listener())

        self.call_engine("stop listener", stop)

    def on_listener_changed(self, message: ListenerChanged) -> None:
        self.state = message.state
        self._render_state()

    def on_operation_failed(self, message: Any) -> None:
        if message.what.endswith("listener"):
            self.state = ListenerView(state="error", error=message.problem.detail)
            self._render_state()
        super().on_operation_failed(message)

    def action_clear_feed(self) -> None:
        self.query_one(EventFeed).clear()


def _many(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"
