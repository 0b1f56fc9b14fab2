"""`?`: every key, from the action registry, with the reason when an action is disabled."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from .. import actions
from ..theme import styled


class HelpScreen(ModalScreen[None]):
    BINDINGS = [("escape", "close", "Close"), ("question_mark", "close", "Close")]

    def __init__(self, current: str | None) -> None:
        super().__init__(classes="dialog")
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box wide tall"):
            yield Label(Content.styled("Keys", "bold"), classes="dialog-title")
            yield DataTable(cursor_type="row", id="keys")
            yield Label(Content.styled("esc closes · ctrl+p opens the command palette", "$text-muted"))

    def on_mount(self) -> None:
        app = self.app
        read_only = bool(getattr(app, "read_only", False))
        table = self.query_one(DataTable)
        for label, width in (("screen", 20), ("key", 8), ("action", 44), ("state", 36)):
            table.add_column(label, width=width)
        groups = [None, *actions.SCREENS, "chunks"]
        for group in groups:
            for entry in actions.actions_for(group):
                reason = actions.disabled_reason(entry, read_only=read_only)
                key = getattr(app, "key_for", lambda e: e.key)(entry)
                where = "everywhere" if group is None else actions.SCREENS.get(group, "run chunks")
                state = styled(app, reason, "warning") if reason else Text("")
                here = group is None or group == self.current
                table.add_row(Text(where, style="" if here else "dim"), Text(entry.key_display or key, style="bold"),
                              Text(entry.title), state)
        table.focus()

    def action_close(self) -> None:
        self.dismiss(None)
