"""The account picker of screen 1: a Connect platform's runs are per account; show one account's alone."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static

from stripe_sync_core.status import AccountChoice

from .. import format as fmt
from ..widgets.table import FilterableTable

EVERY_ACCOUNT = "*"
"""The row (and the answer) for every account's runs together."""


class AccountPicker(ModalScreen[str | None]):
    """Every account with runs or stored data, the key's own first; dismisses with the chosen id,
    `EVERY_ACCOUNT`, or None (esc)."""

    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, choices: list[AccountChoice], current: str | None) -> None:
        super().__init__(classes="dialog")
        self.choices = choices
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box wide"):
            yield Label(Content.styled("Show the runs of", "bold"), classes="dialog-title")
            yield Static(Content.styled("enter chooses · / filters · esc keeps the current choice", "$text-muted"))
            yield FilterableTable([("id", "account", 24), ("name", "name", 22), ("runs", "runs", 6),
                                   ("open", "open", 5), ("rows", "rows", 10)], fill="name", id="accounts",
                                  empty="no accounts yet")

    def on_mount(self) -> None:
        table = self.query_one(FilterableTable)
        total_runs = sum(c.runs for c in self.choices)
        rows = [(EVERY_ACCOUNT, ("every account", f"{len(self.choices)} accounts", fmt.count(total_runs),
                                 fmt.count(sum(c.open_runs for c in self.choices)),
                                 fmt.count(sum(c.rows for c in self.choices))))]
        rows += [(c.account_id, (c.account_id, c.name + (" (this key's)" if c.own else ""), fmt.count(c.runs),
                                 fmt.count(c.open_runs), fmt.count(c.rows))) for c in self.choices]
        table.set_rows(rows)
        table.focus_table()

    @on(DataTable.RowSelected)
    def chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        key = self.query_one(FilterableTable).cursor_key
        if key is not None:
            self.dismiss(key)

    def action_cancel(self) -> None:
        self.dismiss(None)
