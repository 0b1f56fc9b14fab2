"""`FilterableTable`: a DataTable updated in place by row key, with a `/` filter and a row bound.

Rows are (key, cells). A refresh that keeps the same keys in the same order only rewrites the
cells that changed, so the cursor and scroll position survive a live refresh. At most `max_rows`
rows are shown (DataTable lays out every row it holds); the caption says how many more the filter
would reach.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Input, Static

from .inputs import ConsoleInput

Cell = Text | str
Row = tuple[str, Sequence[Cell]]

DEFAULT_MAX_ROWS = 1000


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def _as_text(cell: Cell) -> Text:
    return cell if isinstance(cell, Text) else Text(str(cell))


def _same(a: Text, b: Text) -> bool:
    # Text equality ignores the base style, and a status cell may change colour alone.
    return a.plain == b.plain and a.style == b.style and a.spans == b.spans


class FilterInput(ConsoleInput):
    """The `/` filter line: esc clears and closes it."""

    BINDINGS = [("escape", "close", "Clear filter")]

    def action_close(self) -> None:
        parent = self.parent
        assert isinstance(parent, FilterableTable)
        parent.close_filter()


class FilterableTable(Vertical):
    DEFAULT_CSS = """
    FilterableTable { height: 1fr; }
    FilterableTable > DataTable { height: 1fr; }
    FilterableTable > FilterInput { display: none; height: 1; border: none; padding: 0 1; }
    FilterableTable.-filtering > FilterInput { display: block; }
    FilterableTable > .caption { height: 1; color: $text-muted; padding: 0 1; display: none; }
    FilterableTable.-captioned > .caption { display: block; }
    """

    class FilterChanged(Message):
        def __init__(self, table: FilterableTable, text: str) -> None:
            super().__init__()
            self.table = table
            self.text = text

    def __init__(self, columns: Sequence[tuple[str, str, int]], *, max_rows: int = DEFAULT_MAX_ROWS,
                 empty: str = "nothing yet", id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.columns = list(columns)
        self.max_rows = max_rows
        self.empty = empty
        self.filter_text = ""
        self._rows: list[Row] = []
        self._shown: dict[str, tuple[Text, ...]] = {}
        self._order: list[str] = []

    def compose(self) -> ComposeResult:
        yield FilterInput(placeholder="filter: type to narrow, esc to clear", id=f"{self.id}-filter"
                          if self.id else None)
        table: DataTable = DataTable(cursor_type="row", zebra_stripes=False)
        table.show_cursor = True
        for key, label, width in self.columns:
            # Fixed widths: a live table must not jitter, and a lazily measured one renders a frame
            # with label-wide columns first (snapshots would depend on timing).
            table.add_column(label, key=key, width=width)
        yield table
        yield Static("", classes="caption")

    @property
    def table(self) -> DataTable:
        return self.query_one(DataTable)

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def total_rows(self) -> int:
        return len(self._rows)

    @property
    def shown_keys(self) -> list[str]:
        return list(self._order)

    @property
    def cursor_key(self) -> str | None:
        table = self.table
        if not self._order or table.cursor_row < 0 or table.cursor_row >= len(self._order):
            return None
        return self._order[table.cursor_row]

    def focus_table(self) -> None:
        self.table.focus()

    # -- filter -----------------------------------------------------------------------------------

    def open_filter(self) -> None:
        self.add_class("-filtering")
        self.query_one(FilterInput).focus()

    def close_filter(self) -> None:
        self.remove_class("-filtering")
        filter_input = self.query_one(FilterInput)
        if filter_input.value:
            filter_input.value = ""  # Input.Changed re-applies the (empty) filter
        self.table.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.filter_text = event.value.strip().lower()
        self._apply(rebuild=True)
        self.post_message(self.FilterChanged(self, self.filter_text))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.table.focus()

    def _matches(self, cells: Sequence[Cell]) -> bool:
        if not self.filter_text:
            return True
        return any(self.filter_text in _plain(cell).lower() for cell in cells)

    # -- rows -------------------------------------------------------------------------------------

    def set_rows(self, rows: Sequence[Row]) -> None:
        self._rows = list(rows)
        self._apply(rebuild=False)

    def _apply(self, *, rebuild: bool) -> None:
        table = self.table
        matching = [(key, cells) for key, cells in self._rows if self._matches(cells)]
        visible = [(key, tuple(_as_text(c) for c in cells)) for key, cells in matching[: self.max_rows]]
        keys = [key for key, _ in visible]
        column_keys = [key for key, _, _ in self.columns]
        if not rebuild and keys == self._order:
            for key, cells in visible:
                old = self._shown.get(key)
                for index, cell in enumerate(cells):
                    if old is None or not _same(old[index], cell):
                        table.update_cell(key, column_keys[index], cell)
                self._shown[key] = cells
        elif not rebuild and keys[: len(self._order)] == self._order:
            for key, cells in visible[len(self._order):]:
                table.add_row(*cells, key=key)
                self._shown[key] = cells
            self._order = keys
        else:
            cursor = self.cursor_key
            table.clear()
            for key, cells in visible:
                table.add_row(*cells, key=key)
            self._shown = dict(visible)
            self._order = keys
            if cursor in self._shown:
                table.move_cursor(row=keys.index(cursor), animate=False)
        self._caption(len(matching))

    def _caption(self, matching: int) -> None:
        caption = self.query_one(".caption", Static)
        parts = []
        if not self._rows:
            parts.append(self.empty)
        elif self.filter_text:
            parts.append(f"filter “{self.filter_text}”: {matching:,} of {len(self._rows):,}")
        if matching > self.max_rows:
            parts.append(f"showing the first {self.max_rows:,} of {matching:,}: / to narrow")
        caption.update(Text(" · ".join(parts)))
        self.set_class(bool(parts), "-captioned")
