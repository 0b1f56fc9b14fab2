"""Dialogs: the destructive-action confirmation, the webhook creation form, and quitting with a worker running."""

from __future__ import annotations

import re
from typing import Literal

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, SelectionList, Static

from stripe_sync_core.managed_webhooks import default_enabled_events

from ..widgets.header import mode_content
from ..widgets.inputs import ConsoleInput


class ConfirmDialog(ModalScreen[bool]):
    """Names the target and the mode (in the error colour); Cancel has the focus."""

    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, title: str, target: str, livemode: bool | None, *, confirm_label: str) -> None:
        super().__init__(classes="dialog")
        self.title_text = title
        self.target = target
        self.livemode = livemode
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box destructive"):
            yield Label(Content.styled(self.title_text, "bold $error"), classes="dialog-title")
            yield Static(Content(self.target), classes="dialog-target")
            yield Static(Content.assemble("Mode: ", mode_content(self.livemode)), classes="dialog-mode")
            yield Static(Content.styled("This cannot be undone.", "$text-muted"))
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel", variant="default")
                yield Button(self.confirm_label, id="confirm", variant="error")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    @on(Button.Pressed, "#confirm")
    def confirm(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)


URL_PATTERN = re.compile(r"^https?://[^\s/]+\S*$")


class CreateWebhookDialog(ModalScreen[tuple[str, list[str] | None] | None]):
    """URL plus the event types to enable (every supported type unless narrowed).

    Dismisses with (url, events), where events is None when every supported type stays selected.
    """

    BINDINGS = [("escape", "cancel", "Cancel"), ("ctrl+a", "select_all", "All events"),
                ("ctrl+n", "select_none", "No events")]

    def __init__(self, livemode: bool | None) -> None:
        super().__init__(classes="dialog")
        self.livemode = livemode
        self.supported = default_enabled_events()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box wide"):
            yield Label(Content.assemble(("Create a managed webhook", "bold"), "  ", mode_content(self.livemode)),
                        classes="dialog-title")
            yield Label("Endpoint URL")
            yield ConsoleInput(placeholder="https://example.com/stripe/webhooks", id="url")
            yield Static("", id="url-error", classes="field-error")
            yield Label(f"Events ({len(self.supported)} supported; ctrl+a all, ctrl+n none)")
            yield SelectionList[str](*((name, name, True) for name in self.supported), id="events")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Create", id="create", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#url", Input).focus()

    def action_select_all(self) -> None:
        self.query_one("#events", SelectionList).select_all()

    def action_select_none(self) -> None:
        self.query_one("#events", SelectionList).deselect_all()

    @on(Input.Submitted, "#url")
    @on(Button.Pressed, "#create")
    def create(self) -> None:
        url = self.query_one("#url", Input).value.strip()
        events = list(self.query_one("#events", SelectionList).selected)
        error = self.query_one("#url-error", Static)
        if not URL_PATTERN.match(url):
            error.update(Content.styled("Enter an http(s):// URL.", "$error"))
            return
        if not events:
            error.update(Content.styled("Select at least one event type.", "$error"))
            return
        self.dismiss((url, None if len(events) == len(self.supported) else sorted(events)))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


QuitChoice = Literal["stop", "detach"]


class QuitDialog(ModalScreen[QuitChoice | None]):
    """Quitting while a backfill worker started here runs: stop it cleanly, leave it running, or stay.

    Dismisses with "stop", "detach" or None (stay); Cancel has the focus.
    """

    DEFAULT_CSS = """
    QuitDialog .dialog-buttons Button { min-width: 10; }
    """
    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, target: str, livemode: bool | None) -> None:
        super().__init__(classes="dialog")
        self.target = target
        self.livemode = livemode

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box destructive"):
            yield Label(Content.styled("A backfill is running", "bold $error"), classes="dialog-title")
            yield Static(Content(self.target), classes="dialog-target")
            yield Static(Content.assemble("Mode: ", mode_content(self.livemode)), classes="dialog-mode")
            yield Static(Content.assemble(
                ("Stop: ", "bold"), "the worker stops cleanly; its chunks go back to pending with their "
                "cursors, and shift+r resumes the run later."))
            yield Static(Content.assemble(
                ("Detach: ", "bold"), "the worker keeps running after the console exits; join the run later "
                "(shift+r, or --headless backfill all --join)."))
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button("Detach", id="detach", variant="warning", compact=True)
                yield Button("Stop the backfill and quit", id="stop", variant="error", compact=True)

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    @on(Button.Pressed, "#stop")
    def stop(self) -> None:
        self.dismiss("stop")

    @on(Button.Pressed, "#detach")
    def detach(self) -> None:
        self.dismiss("detach")

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
