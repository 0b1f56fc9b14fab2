"""`EventFeed`: the listener's log in the manner of `stripe listen`, bounded and virtualised.

Only the last `max_lines` lines are kept and only the visible ones are rendered, so a feed of
100,000 events costs what a screenful costs. It follows new lines until the operator scrolls up, and
again once they are back at the bottom (End): whether it follows is remembered, not re-derived from
the scroll position, which a resize or a screen switch moves under it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from rich.segment import Segment
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .. import format as fmt
from ..sink import FeedEvent
from ..theme import meaning_style

MAX_LINES = 10_000


class EventFeed(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    EventFeed { height: 1fr; background: $surface; }
    """

    def __init__(self, *, max_lines: int = MAX_LINES, forward_to: str = "", id: str | None = None) -> None:
        super().__init__(id=id)
        self.lines: deque[Text] = deque(maxlen=max_lines)
        self.forward_to = forward_to
        self.following = True
        self._width = 0

    @property
    def line_count(self) -> int:
        return len(self.lines)

    def event_lines(self, event: FeedEvent) -> list[Text]:
        """`-->` the event in, `<--` the reply, coloured by status class (STYLE.md)."""
        muted = meaning_style(self.app, "text-muted")
        when = fmt.timestamp(event.at)
        arrived = Text.assemble((when, muted), "   --> ", (event.event_type, "bold"), f" [{event.event_id}]")
        if event.status is None:
            reply = Text.assemble((when, muted), "  <--  ", (event.outcome, muted), f" [{event.event_id}]")
        else:
            meaning = fmt.meaning_of_http(event.status)
            target = f" POST {self.forward_to}" if self.forward_to else ""
            reply = Text.assemble((when, muted), "  <--  ", (f"[{event.status}]", meaning_style(self.app, meaning)),
                                  f"{target} [{event.event_id}] ", (event.outcome, muted))
        return [arrived, reply]

    def add_events(self, events: Iterable[FeedEvent]) -> None:
        lines: list[Text] = []
        for event in events:
            lines.extend(self.event_lines(event))
        self.add_lines(lines)

    def add_lines(self, lines: Iterable[Text]) -> None:
        for line in lines:
            self.lines.append(line)
            self._width = max(self._width, line.cell_len)
        self.virtual_size = Size(self._width, len(self.lines))
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
        self.lines.clear()
        self._width = 0
        self.virtual_size = Size(0, 0)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        if index >= len(self.lines):
            return Strip.blank(width, self.rich_style)
        segments = list(self.lines[index].render(self.app.console))
        strip = Strip([s for s in segments if s.text != "\n"] or [Segment("")])
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style).apply_style(self.rich_style)
