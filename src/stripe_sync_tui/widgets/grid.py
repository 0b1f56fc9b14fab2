"""`ChunkGrid`: one cell per chunk of a run, grouped by object type, coloured by status.

Line API: only the visible lines are rendered, so a run of 10,000 chunks scrolls like a small one.
"""

from __future__ import annotations

from rich.segment import Segment
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .. import format as fmt
from ..theme import meaning_style

GLYPHS = {"pending": "·", "running": "▶", "complete": "█", "error": "✗", "interrupted": "▪"}
LABEL_WIDTH = 24


class ChunkGrid(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    ChunkGrid { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.objects: dict[str, dict[int, str]] = {}
        self._lines: list[tuple[str, list[str]]] = []

    def set_chunks(self, chunks: list[tuple[str, int, str]]) -> None:
        """(object, chunk id, status) in plan order."""
        objects: dict[str, dict[int, str]] = {}
        for object_name, chunk_id, status in chunks:
            objects.setdefault(object_name, {})[chunk_id] = status
        self.objects = objects
        self._layout()

    def mark(self, object_name: str, chunk_id: int, status: str) -> None:
        self.objects.setdefault(object_name, {})[chunk_id] = status
        self._layout()

    def counts(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for chunks in self.objects.values():
            for status in chunks.values():
                totals[status] = totals.get(status, 0) + 1
        return totals

    def on_resize(self) -> None:
        self._layout()

    def _layout(self) -> None:
        width = max(10, self.scrollable_content_region.width - LABEL_WIDTH - 1)
        lines: list[tuple[str, list[str]]] = []
        for object_name, chunks in self.objects.items():
            statuses = list(chunks.values())
            done = sum(1 for s in statuses if s == "complete")
            label = f"{object_name} {done}/{len(statuses)}"
            for start in range(0, max(1, len(statuses)), width):
                lines.append((label if start == 0 else "", statuses[start:start + width]))
        self._lines = lines
        self.virtual_size = Size(LABEL_WIDTH + width, len(lines))
        self.refresh()

    def render_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        width = self.scrollable_content_region.width
        if index >= len(self._lines):
            return Strip.blank(width, self.rich_style)
        label, statuses = self._lines[index]
        segments = [Segment(label[: LABEL_WIDTH - 1].ljust(LABEL_WIDTH), meaning_style(self.app, "text-muted"))]
        run_status: str | None = None
        run = ""
        for status in statuses + [""]:
            if status != run_status and run:
                assert run_status is not None
                style = meaning_style(self.app, fmt.meaning_of_status(run_status))
                segments.append(Segment(run, style))
                run = ""
            run_status = status
            run += GLYPHS.get(status, "?") if status else ""
        return Strip(segments).crop_extend(0, width, self.rich_style).apply_style(self.rich_style)
