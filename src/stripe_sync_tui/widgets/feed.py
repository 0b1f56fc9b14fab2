"""`EventFeed`: the listener's log in the manner of `stripe listen`, bounded and virtualised.

Only the last `max_lines` lines are kept and only the visible ones are rendered, so a feed of
100,000 events costs what a screenful costs. While the view sits at the bottom it follows new lines.
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
        follow = self.scroll_offset.y >= self.max_scroll_y
        for line in lines:
            self.lines.append(line)
            self._width = max(self._width, line.cell_len)
        self.virtual_size = Size(self._width, len(self.lines))
        if follow:  # after the refresh, when the new virtual size is laid out
            self.call_after_refresh(self.scroll_end, animate=False)
        self.refresh()

    def clear(self) -> None:
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
