"""`EventFeed`: the listener's log in the manner of `stripe listen`, bounded and virtualised.

Only the last `max_lines` lines are kept, as the deliveries themselves: a line becomes styled text
only when it is drawn, so a feed of 100,000 events (or a backlog of 500 taken at once on returning to
the screen) costs what a screenful costs. It follows new lines until the operator scrolls up, and
again once they are back at the bottom (End): whether it follows is remembered, not re-derived from
the scroll position, which a resize or a screen switch moves under it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from rich.segment import Segment
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .. import format as fmt
from ..sink import FeedEvent
from ..theme import meaning_style

MAX_LINES = 10_000

ARRIVED, REPLY = 0, 1
FeedLine = Text | tuple[FeedEvent, int]
"""A line of the feed: text (a notice), or one of an event's two lines, styled when drawn."""


class RenderedLines:
    """The feed's lines as text, styled on access (for readers of the whole feed: tests, copy)."""

    def __init__(self, feed: EventFeed) -> None:
        self._feed = feed

    def __len__(self) -> int:
        return len(self._feed._lines)

    def __iter__(self) -> Iterator[Text]:
        return (self._feed.line_text(line) for line in list(self._feed._lines))

    def __getitem__(self, index: int) -> Text:
        return self._feed.line_text(self._feed._lines[index])

    @property
    def maxlen(self) -> int | None:
        return self._feed._lines.maxlen


class EventFeed(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    EventFeed { height: 1fr; background: $surface; }
    """

    def __init__(self, *, max_lines: int = MAX_LINES, forward_to: str = "", id: str | None = None) -> None:
        super().__init__(id=id)
        self._lines: deque[FeedLine] = deque(maxlen=max_lines)
        self.forward_to = forward_to
        self.following = True
        self._width = 0

    @property
    def line_count(self) -> int:
        return len(self._lines)

    @property
    def lines(self) -> RenderedLines:
        return RenderedLines(self)

    def event_lines(self, event: FeedEvent) -> list[Text]:
        """`-->` the event in, `<--` the reply, coloured by status class (STYLE.md)."""
        return [self._event_line(event, ARRIVED), self._event_line(event, REPLY)]

    def _event_line(self, event: FeedEvent, part: int) -> Text:
        muted = meaning_style(self.app, "text-muted")
        when = fmt.timestamp(event.at)
        if part == ARRIVED:
            return Text.assemble((when, muted), "   --> ", (event.event_type, "bold"), f" [{event.event_id}]")
        if event.status is None:
            return Text.assemble((when, muted), "  <--  ", (event.outcome, muted), f" [{event.event_id}]")
        meaning = fmt.meaning_of_http(event.status)
        return Text.assemble((when, muted), "  <--  ", (f"[{event.status}]", meaning_style(self.app, meaning)),
                             f"{self._target} [{event.event_id}] ", (event.outcome, muted))

    @property
    def _target(self) -> str:
        return f" POST {self.forward_to}" if self.forward_to else ""

    def _event_line_width(self, event: FeedEvent, part: int) -> int:
        """The drawn line's width without styling it (timestamps, types, ids and outcomes are ASCII)."""
        when = len(fmt.timestamp(event.at))
        if part == ARRIVED:
            return when + 7 + len(event.event_type) + len(event.event_id) + 3
        if event.status is None:
            return when + 7 + len(event.outcome) + len(event.event_id) + 3
        return when + 7 + len(str(event.status)) + 2 + len(self._target) + len(event.event_id) + 4 + len(event.outcome)

    def line_text(self, line: FeedLine) -> Text:
        return line if isinstance(line, Text) else self._event_line(*line)

    def add_events(self, events: Iterable[FeedEvent]) -> None:
        width = self._width
        for event in events:
            self._lines.append((event, ARRIVED))
            self._lines.append((event, REPLY))
            width = max(width, self._event_line_width(event, ARRIVED), self._event_line_width(event, REPLY))
        self._grown(width)

    def add_lines(self, lines: Iterable[Text]) -> None:
        width = self._width
        for line in lines:
            self._lines.append(line)
            width = max(width, line.cell_len)
        self._grown(width)

    def _grown(self, width: int) -> None:
        self._width = width
        self.virtual_size = Size(self._width, len(self._lines))
        self._follow()
        self.refresh()

    def _follow(self) -> None:
        if self.following:  # after the refresh, when the new virtual size is laid out
            self.call_after_refresh(self.scroll_end, animate=False, immediate=True)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value >= self.max_scroll_y:  # at the bottom (End, or a clamp when the feed grew)
            self.following = True
        elif new_value < old_value:  # the operator scrolled up (lines only ever add below)
            self.following = False

    def on_resize(self) -> None:
        self._follow()

    def on_show(self) -> None:
        self._follow()

    def clear(self) -> None:
        self.following = True
        self._lines.clear()
        self._width = 0
        self.virtual_size = Size(0, 0)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        if index >= len(self._lines):
            return Strip.blank(width, self.rich_style)
        segments = list(self.line_text(self._lines[index]).render(self.app.console))
        strip = Strip([s for s in segments if s.text != "\n"] or [Segment("")])
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style).apply_style(self.rich_style)
