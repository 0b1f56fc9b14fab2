"""`FilterableTable`: a DataTable updated in place by row key, with a `/` filter and column sorting.

Rows are (key, cells). A refresh that keeps the same keys in the same order only rewrites the
cells that changed, so the cursor and scroll position survive a live refresh. There is no row cap:
columns have fixed widths, so nothing is measured per cell (`FixedWidthTable`), and rows beyond the
first batch are added a batch per turn of the message loop, so a run of 20,000 chunks never holds
up a key press.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.geometry import Size
from textual.message import Message
from textual.widgets import DataTable, Input, Static

from .inputs import ConsoleInput

Cell = Text | str
Row = tuple[str, Sequence[Cell]]
Column = tuple[str, str, int]
"""(key, label, width)."""

BATCH_ROWS = 500
"""Rows added per turn of the message loop."""

_NUMBER = re.compile(r"^[#+]?(-?[\d,]*\.?\d+)")


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def _as_text(cell: Cell) -> Text:
    text = cell if isinstance(cell, Text) else Text(str(cell))
    text.no_wrap, text.overflow = True, "ellipsis"  # cut at the column's width, one line a row
    return text


def _same(a: Text, b: Text) -> bool:
    # Text equality ignores the base style, and a status cell may change colour alone.
    return a.plain == b.plain and a.style == b.style and a.spans == b.spans


def _unchanged(old: tuple[Cell, ...], new: tuple[Cell, ...]) -> bool:
    # `==` compares a Text's characters and spans, not its base style (a status may change colour alone).
    return old == new and all(not isinstance(a, Text) or a.style == b.style  # type: ignore[union-attr]
                              for a, b in zip(old, new, strict=True))


def sort_key(text: str) -> tuple[int, float, str]:
    """Numbers (`1,750`, `#3`, `12.5/s`, `2/4`) by value, before text; blanks and dashes last."""
    text = text.strip()
    if not text or text in ("–", "…"):
        return (2, 0.0, "")
    match = _NUMBER.match(text)
    if match:
        try:
            return (0, float(match.group(1).replace(",", "")), text.lower())
        except ValueError:
            pass
    return (1, 0.0, text.lower())


class FixedWidthTable(DataTable):
    """A DataTable whose columns all have fixed widths: it skips measuring every cell of every new row
    (the stock table measures them to size auto-width columns, ~0.5 s per 1,000 rows of 8 cells)."""

    def _update_dimensions(self, new_rows: Iterable[Any]) -> None:
        if any(column.auto_width for column in self.columns.values()):
            super()._update_dimensions(new_rows)
            return
        width = sum(column.get_render_width(self) for column in self.columns.values())
        header = self.header_height if self.show_header else 0
        self.virtual_size = Size(width + self._row_label_column_width, self._total_row_height + header)


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
    FilterableTable > FilterInput, FilterableTable > FilterInput:focus {
        display: none; height: 1; border: none; padding: 0 1; background: $boost;
    }
    FilterableTable.-filtering > FilterInput { display: block; }
    FilterableTable > .caption { height: 1; color: $text-muted; padding: 0 1; display: none; }
    FilterableTable.-captioned > .caption { display: block; }
    """

    class FilterChanged(Message):
        def __init__(self, table: FilterableTable, text: str) -> None:
            super().__init__()
            self.table = table
            self.text = text

    def __init__(self, columns: Sequence[Column], *, fill: str | None = None, empty: str = "nothing yet",
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.columns = list(columns)
        self.fill = fill
        """The column that takes the width left over (at least its own): errors and notes read whole
        on a wide terminal."""
        self.empty = empty
        self.filter_text = ""
        self.sort_column: str | None = None
        self.sort_reverse = False
        self._rows: list[Row] = []
        self._target: list[tuple[str, tuple[Text, ...]]] = []
        """What the table shows, filtered and sorted; its first `len(_order)` rows are in the DataTable."""
        self._shown: dict[str, tuple[Text, ...]] = {}
        self._converted: dict[str, tuple[tuple[Cell, ...], tuple[Text, ...]]] = {}
        self._order: list[str] = []
        self._batches = 0
        """Bumped by every change of what is shown: a pending batch of an older state stops."""
        self._offers: tuple[bool, frozenset[str]] | None = None
        """What the screen's footer depends on here: any row shown, the statuses shown."""

    def compose(self) -> ComposeResult:
        yield FilterInput(placeholder="filter: type to narrow, esc to clear", compact=True,
                          id=f"{self.id}-filter" if self.id else None)
        table = FixedWidthTable(cursor_type="row", zebra_stripes=False)
        table.show_cursor = True
        self._add_columns(table)
        yield table
        yield Static("", classes="caption")

    def _add_columns(self, table: DataTable) -> None:
        for key, label, width in self.columns:
            # Fixed widths: a live table must not jitter, and a lazily measured one renders a frame
            # with label-wide columns first (snapshots would depend on timing).
            table.add_column(self._label(key, label), key=key, width=width)

    def on_resize(self) -> None:
        self._fill_width()

    def _fill_width(self) -> None:
        if self.fill is None or not self.is_mounted:
            return
        table = self.table
        column = table.columns.get(self.fill)  # type: ignore[call-overload]
        if column is None:
            return
        base = next(width for key, _, width in self.columns if key == self.fill)
        others = sum(width + 2 * table.cell_padding for key, _, width in self.columns if key != self.fill)
        width = max(base, self.size.width - others - 2 * table.cell_padding - 2)  # 2: the scrollbar
        if column.width != width:
            column.width = width
            table._clear_caches()
            table._require_update_dimensions = True
            table.refresh(layout=True)

    def _label(self, key: str, label: str) -> Text:
        if key != self.sort_column:
            return Text(label)
        return Text.assemble(label, (" ▼" if self.sort_reverse else " ▲", "bold"))

    @property
    def table(self) -> DataTable:
        return self.query_one(DataTable)

    @property
    def row_count(self) -> int:
        """Rows matching the filter (some may still be on their way into the DataTable)."""
        return len(self._target)

    @property
    def total_rows(self) -> int:
        return len(self._rows)

    @property
    def shown_keys(self) -> list[str]:
        return [key for key, _ in self._target]

    @property
    def cursor_key(self) -> str | None:
        table = self.table
        if not self._order or table.cursor_row < 0 or table.cursor_row >= len(self._order):
            return None
        return self._order[table.cursor_row]

    def focus_table(self) -> None:
        self.table.focus()

    def set_columns(self, columns: Sequence[Column], *, fill: str | None = None) -> None:
        """Show other columns (a plan has notes where a run has errors); the rows are set next."""
        if list(columns) == self.columns:
            return
        self.columns, self.fill = list(columns), fill
        if self.sort_column not in {key for key, _, _ in self.columns}:
            self.sort_column, self.sort_reverse = None, False
        table = self.table
        table.clear(columns=True)
        self._add_columns(table)
        self._fill_width()
        self._order, self._shown, self._target, self._rows, self._converted = [], {}, [], [], {}

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

    # -- sort -------------------------------------------------------------------------------------

    def sort_by(self, column: str | None, *, reverse: bool | None = None) -> None:
        """Sort by `column` (None: the rows' own order); the same column again reverses the direction."""
        if reverse is None:
            reverse = not self.sort_reverse if column == self.sort_column and column is not None else False
        self.sort_column, self.sort_reverse = column, reverse
        table = self.table
        for key, label, _ in self.columns:
            table.columns[key].label = self._label(key, label)  # type: ignore[index]
        table._clear_caches()
        table.refresh()
        self._apply(rebuild=True)

    def sort_next_column(self) -> None:
        """`o`: unsorted, then each column in turn, then unsorted again."""
        keys = [key for key, _, _ in self.columns]
        if self.sort_column is None:
            self.sort_by(keys[0], reverse=False)
        else:
            index = keys.index(self.sort_column) + 1
            self.sort_by(keys[index] if index < len(keys) else None, reverse=False)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    # -- rows -------------------------------------------------------------------------------------

    def set_rows(self, rows: Sequence[Row]) -> None:
        self._rows = list(rows)
        self._apply(rebuild=False)

    def has_value(self, column: str, value: str) -> bool:
        """Whether a shown row's `column` reads `value`."""
        index = [key for key, _, _ in self.columns].index(column) if column in self.column_keys else -1
        return index >= 0 and any(cells[index].plain == value for _, cells in self._target)

    @property
    def column_keys(self) -> list[str]:
        return [key for key, _, _ in self.columns]

    def jump_to(self, column: str, values: Sequence[str]) -> str | None:
        """Move the cursor to the next row (after the cursor, wrapping) whose `column` reads one of
        `values`; returns its key, or None when no row does."""
        index = [key for key, _, _ in self.columns].index(column)
        start = self.table.cursor_row + 1 if self._order else 0
        count = len(self._target)
        for step in range(count):
            position = (start + step) % count
            if self._target[position][1][index].plain in values:
                if position >= len(self._order):
                    self._add_from(len(self._order), until=position)
                self.table.move_cursor(row=position, animate=False)
                return self._target[position][0]
        return None

    def _apply(self, *, rebuild: bool) -> None:
        table = self.table
        matching = [(key, texts) for key, texts in self._texts() if self._matches(texts)]
        if self.sort_column is not None:
            index = [key for key, _, _ in self.columns].index(self.sort_column)
            matching.sort(key=lambda row: sort_key(row[1][index].plain), reverse=self.sort_reverse)
        self._target = matching
        keys = [key for key, _ in matching]
        column_keys = [key for key, _, _ in self.columns]
        added = len(self._order)
        if not rebuild and keys[:added] == self._order:
            # The same rows first: rewrite the cells that changed, then add the new rows after them.
            for key, cells in matching[:added]:
                old = self._shown.get(key)
                if old is cells:
                    continue  # the same cells as last time (`_texts` kept them)
                for index, cell in enumerate(cells):
                    if old is None or not _same(old[index], cell):
                        table.update_cell(key, column_keys[index], cell)
                self._shown[key] = cells
            if len(keys) > added:
                self._add_from(added)
            else:
                self._batches += 1
        else:
            cursor = self.cursor_key
            table.clear()
            self._shown, self._order = {}, []
            at = keys.index(cursor) if cursor in keys else None
            self._add_from(0, until=at)
            if at is not None:
                table.move_cursor(row=at, animate=False)
        self._caption(len(matching))
        self._offers_changed()

    def _offers_changed(self) -> None:
        """Ask the screen to re-check its actions (`y` needs a row, jumps a running or failed chunk) when
        what they depend on changed; not on every refresh, which would rebuild the footer each time."""
        statuses: frozenset[str] = frozenset()
        if "status" in self.column_keys:
            index = self.column_keys.index("status")
            statuses = frozenset(cells[index].plain for _, cells in self._target)
        offers = (bool(self._target), statuses)
        if offers != self._offers:
            self._offers = offers
            if self.is_attached:
                self.screen.refresh_bindings()

    def _texts(self) -> list[tuple[str, tuple[Text, ...]]]:
        """Each row's cells as Text, reusing last refresh's for a row whose cells did not change: a live
        refresh of 20,000 chunks then costs comparisons, not 160,000 new Text objects."""
        previous, converted = self._converted, {}
        rows = []
        for key, cells in self._rows:
            raw = tuple(cells)
            seen = previous.get(key)
            if seen is not None and _unchanged(seen[0], raw):
                texts = seen[1]
            else:
                texts = tuple(_as_text(c) for c in raw)
            converted[key] = (raw, texts)
            rows.append((key, texts))
        self._converted = converted
        return rows

    def _add_from(self, start: int, *, until: int | None = None) -> None:
        """Add the rows of `_target` from `start`: one batch (through `until`) now, the rest later."""
        self._batches += 1
        end = max(start + BATCH_ROWS, (until or 0) + 1)
        table = self.table
        for key, cells in self._target[start:end]:
            table.add_row(*cells, key=key)
            self._shown[key] = cells
            self._order.append(key)
        if len(self._order) < len(self._target):
            batches = self._batches
            self.call_later(self._continue, batches)

    def _continue(self, batches: int) -> None:
        if batches == self._batches and self.is_mounted:
            self._add_from(len(self._order))

    def _caption(self, matching: int) -> None:
        caption = self.query_one(".caption", Static)
        parts = []
        if not self._rows:
            parts.append(self.empty)
        elif self.filter_text:
            parts.append(f"filter “{self.filter_text}”: {matching:,} of {len(self._rows):,}")
        caption.update(Text(" · ".join(parts)))
        self.set_class(bool(parts), "-captioned")
