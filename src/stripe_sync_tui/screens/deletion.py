"""4 · Delete account data: a wizard. Choose, dry-run preview, type the id, execute, summary.

The mode (test or LIVE) stays on screen in the error colour at every step; esc steps back and
Cancel returns to the start, deleting nothing, at every step before the deletion runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Button, ContentSwitcher, DataTable, Input, LoadingIndicator, Static

from stripe_sync_core.results import DeletionReport

from .. import actions
from .. import format as fmt
from ..actions import READ_ONLY_REASON
from ..widgets.header import mode_content
from ..widgets.inputs import ConsoleInput
from ..widgets.table import FilterableTable
from .base import ConsoleScreen

STEPS = ("choose", "preview", "confirm", "execute", "summary")
STEP_TITLES = ("Choose", "Dry run", "Confirm", "Delete", "Summary")


@dataclass
class AccountsLoaded(Message):
    accounts: list[dict]


@dataclass
class DryRunCompleted(Message):
    account_id: str
    report: DeletionReport


@dataclass
class AccountDataDeleted(Message):
    account_id: str
    report: DeletionReport


@dataclass
class DeletionFailed(Message):
    account_id: str
    step: str
    text: str


def account_label(account: dict) -> str:
    settings = account.get("settings") or {}
    name = (settings.get("dashboard") or {}).get("display_name") or (account.get("business_profile") or {}).get(
        "name")
    return name or ""


class DeletionScreen(ConsoleScreen):
    screen_name = "deletion"
    BINDINGS = actions.bindings_for("deletion")
    refresh_every = None

    def __init__(self) -> None:
        super().__init__()
        self.step = "choose"
        self.account_id: str | None = None
        self.preview: DeletionReport | None = None
        self.result: DeletionReport | None = None
        self.failure: str | None = None  # why the last deletion failed (nothing was deleted)

    def compose_body(self) -> ComposeResult:
        yield Static(id="steps", classes="section-title")
        with ContentSwitcher(initial="choose", id="wizard"):
            with Vertical(id="choose"):
                yield Static("Choose the account whose synced data to delete (enter).", classes="hint")
                yield FilterableTable([("id", "account", 24), ("name", "name", 28), ("email", "email", 32),
                                       ("type", "type", 10)], id="accounts", empty="no synced accounts")
            with Vertical(id="preview"):
                yield Static(id="preview-title", classes="hint")
                yield LoadingIndicator(id="preview-loading")
                yield DataTable(id="preview-counts", cursor_type="row")
                yield Static(id="preview-extra")
                with Horizontal(classes="wizard-buttons"):
                    yield Button("Cancel", id="preview-cancel")
                    yield Button("Back", id="preview-back")
                    yield Button("Continue", id="preview-continue", variant="warning", disabled=True)
            with Vertical(id="confirm"):
                yield Static(id="confirm-title", classes="hint")
                yield ConsoleInput(placeholder="type the account id", id="confirm-input")
                yield Static(id="confirm-hint", classes="hint")
                with Horizontal(classes="wizard-buttons"):
                    yield Button("Cancel", id="confirm-cancel")
                    yield Button("Back", id="confirm-back")
                    yield Button("Delete account data", id="confirm-delete", variant="error", disabled=True)
            with Vertical(id="execute"):
                yield Static(id="execute-title", classes="hint")
                yield LoadingIndicator()
            with Vertical(id="summary"):
                yield Static(id="summary-title", classes="hint")
                yield DataTable(id="summary-counts", cursor_type="row")
                yield Static(id="summary-extra")
                with Horizontal(classes="wizard-buttons"):
                    yield Button("Done", id="summary-done", variant="primary")

    def on_mount(self) -> None:
        self._show_steps()
        self.query_one("#accounts", FilterableTable).focus_table()

    # -- steps ----------------------------------------------------------------------------------

    def _show_steps(self) -> None:
        parts: list[Content] = []
        index = STEPS.index(self.step)
        for number, title in enumerate(STEP_TITLES):
            label = f" {number + 1} {title} "
            if number == index:
                parts.append(Content.styled(label, "reverse $primary"))
            else:
                parts.append(Content.styled(label, "$text-muted" if number > index else ""))
        account = f"  {self.account_id}" if self.account_id and self.step != "choose" else ""
        self.query_one("#steps", Static).update(Content.assemble(
            *parts, "   ", mode_content(self.console.livemode), (account, "bold $error")))

    def go(self, step: str) -> None:
        self.step = step
        self.query_one("#wizard", ContentSwitcher).current = step
        self._show_steps()
        focus = {"choose": "#accounts DataTable", "preview": "#preview-cancel", "confirm": "#confirm-input",
                 "summary": "#summary-done"}.get(step)
        if focus:
            self.query_one(focus).focus()

    def cancel(self) -> None:
        """Back to the start; nothing was deleted."""
        if self.step == "execute":
            self.notify("The deletion is running in one transaction; wait for its summary.", severity="warning")
            return
        self.account_id = None
        self.preview = None
        self.go("choose")
        self.action_refresh_now()

    def action_back(self) -> None:
        table = self.focused_table()
        if self.step == "choose" and table is not None and table.has_class("-filtering"):
            table.close_filter()
        elif self.step == "preview":
            self.cancel()
        elif self.step == "confirm":
            self.go("preview")
        elif self.step == "summary":
            self.cancel()

    @on(Button.Pressed, "#preview-cancel, #confirm-cancel")
    def _cancel_pressed(self) -> None:
        self.cancel()

    @on(Button.Pressed, "#preview-back")
    def _preview_back(self) -> None:
        self.cancel()

    @on(Button.Pressed, "#confirm-back")
    def _confirm_back(self) -> None:
        self.go("preview")

    # -- 1 choose -------------------------------------------------------------------------------

    async def fetch(self) -> list[dict]:
        assert self.console.engine is not None
        return await self.console.engine.synced_accounts()

    def show(self, accounts: list[dict]) -> None:
        self.query_one("#accounts", FilterableTable).set_rows([
            (a["id"], (a["id"], account_label(a), a.get("email") or "", a.get("type") or ""))
            for a in accounts
        ])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if self.step != "choose":
            return
        key = self.query_one("#accounts", FilterableTable).cursor_key
        if key:
            self.choose(key)

    def choose(self, account_id: str) -> None:
        self.account_id = account_id
        self.preview = None
        self.query_one("#preview-title", Static).update(Content.assemble(
            "Dry run for ", (account_id, "bold"), ": counting what would be deleted; nothing is deleted."))
        self.query_one("#preview-loading").display = True
        self.query_one("#preview-counts", DataTable).clear(columns=True)
        self.query_one("#preview-extra", Static).update("")
        self.query_one("#preview-continue", Button).disabled = True
        self.go("preview")
        engine = self.console.engine
        assert engine is not None

        async def dry_run() -> Message:
            try:
                report = await engine.preview_account_deletion(account_id)
            except Exception as error:  # noqa: BLE001 - a refusal is an answer, shown on this step
                return DeletionFailed(account_id, "preview", fmt.mask_secrets_in(str(error)))
            return DryRunCompleted(account_id, report)

        self.call_engine("dry run", dry_run)

    # -- 2 preview ------------------------------------------------------------------------------

    def on_dry_run_completed(self, message: DryRunCompleted) -> None:
        if message.account_id != self.account_id or self.step != "preview":
            return
        self.preview = message.report
        self.query_one("#preview-loading").display = False
        total = self._fill_counts(self.query_one("#preview-counts", DataTable), message.report)
        self.query_one("#preview-title", Static).update(Content.assemble(
            "Dry run for ", (message.account_id, "bold"), f": {total:,} rows would be deleted. Nothing is deleted yet."))
        self.query_one("#preview-extra", Static).update(self._extra(message.report))
        self.query_one("#preview-continue", Button).disabled = False
        self.query_one("#preview-continue", Button).focus()

    def _fill_counts(self, table: DataTable, report: DeletionReport) -> int:
        counts = report.deleted_record_counts
        table.clear(columns=True)
        table.add_column("table", width=30)
        table.add_column("rows", width=10)
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        for name, rows in ordered:
            table.add_row(Text(name, style="" if rows else "dim"), Text(f"{rows:,}", justify="right"))
        return sum(counts.values())

    def _extra(self, report: DeletionReport) -> Content:
        hooks = report.managed_webhooks
        lines = [Content(f"Sync runs: {report.sync_runs:,}   Managed webhooks: {len(hooks)}")]
        for hook in hooks:
            lines.append(Content(f"  {hook.id} → {fmt.clip(hook.url, 60)}"))
        for removed in report.webhooks_removed_from_stripe:
            lines.append(Content(f"  removed from Stripe: {removed}"))
        for warning in report.warnings:
            lines.append(Content.styled(f"⚠ {fmt.mask_secrets_in(warning)}", "$warning"))
        return Content("\n").join(lines)

    @on(Button.Pressed, "#preview-continue")
    def _continue(self) -> None:
        assert self.account_id is not None
        self.query_one("#confirm-title", Static).update(Content.assemble(
            "Type ", (self.account_id, "bold $error"), " to delete its data in ", mode_content(self.console.livemode),
            ". This cannot be undone."))
        self.query_one("#confirm-input", Input).value = ""
        self.query_one("#confirm-hint", Static).update(
            Content.styled(READ_ONLY_REASON, "$warning") if self.console.read_only else "")
        self.go("confirm")

    def on_deletion_failed(self, message: DeletionFailed) -> None:
        if message.account_id != self.account_id:
            return
        if message.step == "preview" and self.step == "preview":
            self.query_one("#preview-loading").display = False
            self.query_one("#preview-title", Static).update(Content.assemble(
                "Dry run for ", (message.account_id, "bold"), ": ", (message.text, "$error")))
        elif message.step == "execute":
            self.result, self.failure = None, message.text
            self.query_one("#summary-title", Static).update(Content.assemble(
                ("Deletion failed", "bold $error"), f" for {message.account_id}: ", message.text,
                "\nThe deletion runs in one transaction: nothing was deleted."))
            self.query_one("#summary-counts", DataTable).clear(columns=True)
            self.query_one("#summary-extra", Static).update("")
            self.go("summary")

    # -- 3 confirm ------------------------------------------------------------------------------

    @on(Input.Changed, "#confirm-input")
    def _typed(self, event: Input.Changed) -> None:
        event.stop()
        self.query_one("#confirm-delete", Button).disabled = not self._confirmable()

    def _confirmable(self) -> bool:
        typed = self.query_one("#confirm-input", Input).value.strip()
        return (self.step == "confirm" and self.account_id is not None and typed == self.account_id
                and not self.console.read_only)

    @on(Input.Submitted, "#confirm-input")
    @on(Button.Pressed, "#confirm-delete")
    def action_execute_deletion(self) -> None:
        if self.step != "confirm":
            self.notify("Choose an account and run the dry-run preview first.", severity="warning")
            return
        if not self._confirmable():
            self.notify("Type the account id exactly to confirm.", severity="warning")
            return
        account_id = self.account_id
        assert account_id is not None
        self.query_one("#execute-title", Static).update(Content.assemble(
            "Deleting the data of ", (account_id, "bold $error"), " in ", mode_content(self.console.livemode),
            "… (one transaction, then its managed webhooks are removed from Stripe)"))
        self.go("execute")
        engine = self.console.engine
        assert engine is not None

        async def delete() -> Message:
            try:
                report = await engine.delete_account_data(account_id)
            except Exception as error:  # noqa: BLE001
                return DeletionFailed(account_id, "execute", fmt.mask_secrets_in(str(error)))
            return AccountDataDeleted(account_id, report)

        self.call_engine("delete account data", delete)

    # -- 4 execute, 5 summary -------------------------------------------------------------------

    def on_account_data_deleted(self, message: AccountDataDeleted) -> None:
        self.result, self.failure = message.report, None
        total = self._fill_counts(self.query_one("#summary-counts", DataTable), message.report)
        self.query_one("#summary-title", Static).update(Content.assemble(
            ("Deleted", "bold"), f" {total:,} rows of ", (message.account_id, "bold"), " in ",
            mode_content(self.console.livemode), "."))
        self.query_one("#summary-extra", Static).update(self._extra(message.report))
        self.go("summary")

    @on(Button.Pressed, "#summary-done")
    def _done(self) -> None:
        self.cancel()

