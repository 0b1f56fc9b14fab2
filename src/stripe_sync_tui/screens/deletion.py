"""4 · Delete account data: a wizard. Choose, open runs, dry-run preview, type the id, execute, summary.

The mode (test or LIVE) stays on screen in the error colour at every step; esc steps back and
Cancel returns to the start, deleting nothing, at every step before the deletion runs.

A deletion is refused while a run of the account is open, so the wizard lists the account's open
runs first (interrupted, or held by a live worker) and offers to abandon them, saying what that
means; the dry run names the managed webhooks the deletion removes from Stripe and warns when one
feeds the running listener, and the summary says what the listener did about it. Every refusal
names the way forward.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Button, ContentSwitcher, DataTable, Input, LoadingIndicator, Static

from stripe_sync_core.accounts import AccountDeletionRefused
from stripe_sync_core.results import DeletionReport, OpenRun
from stripe_sync_core.runs import RunHeld

from .. import actions
from .. import format as fmt
from ..engine import ConsoleEngine, ListenerView
from ..widgets.header import mode_content
from ..widgets.inputs import ConsoleInput
from ..widgets.table import FilterableTable
from .base import ConsoleScreen
from .dialogs import ConfirmDialog

STEPS = ("choose", "runs", "preview", "confirm", "execute", "summary")
STEP_TITLES = ("Choose", "Open runs", "Dry run", "Confirm", "Delete", "Summary")

ABANDON_CONSEQUENCE = ("Abandon closes each run as abandoned: the rows it stored stay until the deletion removes "
                       "them, its chunks left are never fetched, and a later backfill starts a new run.")
READ_ONLY_WAY_OUT = "restart the console without --read-only"


@dataclass
class AccountsLoaded(Message):
    accounts: list[dict]


@dataclass
class OpenRunsListed(Message):
    account_id: str
    runs: list[OpenRun]
    refusal: str = ""
    """Why the wizard is (back) on this step: a refused abandon or deletion."""


@dataclass
class RunsAbandoned(Message):
    account_id: str
    runs: list[OpenRun]


@dataclass
class DryRunCompleted(Message):
    account_id: str
    report: DeletionReport
    listener: ListenerView


@dataclass
class AccountDataDeleted(Message):
    account_id: str
    report: DeletionReport
    listener: ListenerView


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


def held_by_this_console(worker: str) -> bool:
    """Workers are named `host:pid:key`: this process's are the backfill screen's."""
    host, _, rest = worker.partition(":")
    return host == socket.gethostname() and rest.partition(":")[0] == str(os.getpid())


def way_out_of_held(runs: list[OpenRun]) -> list[str]:
    """What to do about each run a live worker holds, in the console's words."""
    lines = []
    for run in runs:
        if not run.held:
            continue
        if any(held_by_this_console(worker) for worker in run.workers):
            lines.append(f"Run {run.run_id} is being worked on by this console's backfill: press 3, then c to "
                         "cancel it (its chunks go back to pending), then come back here.")
        else:
            workers = ", ".join(run.workers)
            lines.append(f"Run {run.run_id} is being worked on by another process ({workers}): stop it there "
                         "(Ctrl-C leaves the run resumable), or Abandon anyway: that worker stops at its next page.")
    return lines


class DeletionScreen(ConsoleScreen):
    screen_name = "deletion"
    BINDINGS = actions.bindings_for("deletion")
    refresh_every = None

    def __init__(self) -> None:
        super().__init__()
        self.step = "choose"
        self.account_id: str | None = None
        self.open_runs: list[OpenRun] | None = None
        self.abandoned: list[OpenRun] = []
        self.preview: DeletionReport | None = None
        self.listener_webhook: str | None = None
        """The running listener's managed webhook when the dry run found that the deletion removes it."""
        self.result: DeletionReport | None = None
        self.failure: str | None = None  # why the last deletion failed (nothing was deleted)

    def compose_body(self) -> ComposeResult:
        yield Static(id="steps", classes="section-title")
        with ContentSwitcher(initial="choose", id="wizard"):
            with Vertical(id="choose"):
                yield Static("Choose the account whose synced data to delete (enter).", classes="hint")
                yield FilterableTable([("id", "account", 24), ("name", "name", 28), ("email", "email", 32),
                                       ("type", "type", 10)], id="accounts", empty="no synced accounts")
            with Vertical(id="runs"):
                yield Static(id="runs-title", classes="hint")
                yield LoadingIndicator(id="runs-loading")
                yield DataTable(id="runs-table", cursor_type="row")
                yield Static(id="runs-extra")
                with Horizontal(classes="wizard-buttons"):
                    yield Button("Cancel", id="runs-cancel")
                    yield Button("Abandon runs", id="runs-abandon", variant="warning", disabled=True)
                    yield Button("Abandon anyway", id="runs-force", variant="error", disabled=True)
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

    @property
    def engine(self) -> ConsoleEngine:
        engine = self.console.engine
        assert engine is not None
        return engine

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
        focus = {"choose": "#accounts DataTable", "runs": "#runs-cancel", "preview": "#preview-cancel",
                 "confirm": "#confirm-input", "summary": "#summary-done"}.get(step)
        if focus:
            self.query_one(focus).focus()

    def cancel(self) -> None:
        """Back to the start; nothing was deleted."""
        if self.step == "execute":
            self.notify("The deletion is running in one transaction; wait for its summary.", severity="warning")
            return
        self.account_id = None
        self.open_runs = None
        self.preview = None
        self.go("choose")
        self.action_refresh_now()

    def action_back(self) -> None:
        table = self.focused_table()
        if self.step == "choose" and table is not None and table.has_class("-filtering"):
            table.close_filter()
        elif self.step in ("runs", "preview", "summary"):
            self.cancel()
        elif self.step == "confirm":
            self.go("preview")

    @on(Button.Pressed, "#runs-cancel, #preview-cancel, #confirm-cancel")
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
        return await self.engine.synced_accounts()

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
        """Look for the account's open runs first: the deletion refuses while one is open."""
        self.account_id = account_id
        self.open_runs = None
        self.abandoned = []
        self.preview = None
        self.query_one("#runs-title", Static).update(Content.assemble(
            "Looking for open sync runs of ", (account_id, "bold"), "…"))
        self.query_one("#runs-loading").display = True
        self.query_one("#runs-table", DataTable).clear(columns=True)
        self.query_one("#runs-extra", Static).update("")
        self._abandon_buttons([])
        self.go("runs")
        engine = self.engine

        async def list_runs() -> Message:
            try:
                return OpenRunsListed(account_id, await engine.open_runs(account_id))
            except Exception as error:  # noqa: BLE001 - shown on this step, with the way back
                return DeletionFailed(account_id, "runs", fmt.mask_secrets_in(str(error)))

        self.call_engine("list open runs", list_runs)

    # -- 2 open runs ----------------------------------------------------------------------------

    def on_open_runs_listed(self, message: OpenRunsListed) -> None:
        if message.account_id != self.account_id or self.step not in ("runs", "preview", "execute"):
            return
        self.open_runs = message.runs
        if not message.runs:
            self._dry_run()
            return
        self.go("runs")
        self.query_one("#runs-loading").display = False
        self._fill_runs(message.runs)
        interrupted = sum(not run.held for run in message.runs)
        held = len(message.runs) - interrupted
        state = ", ".join(part for part in (f"{interrupted} interrupted" if interrupted else "",
                                            f"{held} held by a live worker" if held else "") if part)
        self.query_one("#runs-title", Static).update(Content.assemble(
            (f"{len(message.runs)} open sync run(s)", "bold $warning"), " of ", (message.account_id, "bold"),
            f" ({state}). The deletion is refused while a run is open."))
        lines = [Content(ABANDON_CONSEQUENCE)]
        if message.refusal:
            lines.insert(0, Content.styled(message.refusal, "$error"))
        lines += [Content.styled(line, "$warning") for line in way_out_of_held(message.runs)]
        if self.console.read_only:
            lines.append(Content.styled(f"Abandoning is {actions.READ_ONLY_REASON}: {READ_ONLY_WAY_OUT} to abandon "
                                        "runs and delete.", "$warning"))
        self.query_one("#runs-extra", Static).update(Content("\n").join(lines))
        self._abandon_buttons(message.runs)

    def _fill_runs(self, runs: list[OpenRun]) -> None:
        table = self.query_one("#runs-table", DataTable)
        table.clear(columns=True)
        for name, width in (("run", 6), ("state", 11), ("objects", 28), ("started", 19), ("chunks done", 11),
                            ("left", 6), ("live worker", 20)):
            table.add_column(name, width=width, key=name)
        for run in runs:
            state = Text(run.state, style="bold" if run.held else "")
            table.add_row(str(run.run_id), state, fmt.clip(", ".join(run.objects), 28), fmt.timestamp(run.started_at),
                          Text(f"{run.chunks_done:,}", justify="right"), Text(f"{run.chunks_left:,}", justify="right"),
                          fmt.clip(", ".join(run.workers), 20) or "none", key=str(run.run_id))

    def _abandon_buttons(self, runs: list[OpenRun]) -> None:
        allowed = bool(runs) and not self.console.read_only
        held = any(run.held for run in runs)
        abandon = self.query_one("#runs-abandon", Button)
        abandon.disabled = not allowed or held
        abandon.tooltip = (actions.READ_ONLY_REASON if self.console.read_only
                           else "a live worker holds a run: stop it, or Abandon anyway" if held else None)
        force = self.query_one("#runs-force", Button)
        force.display = held
        force.disabled = not allowed or not held

    @on(Button.Pressed, "#runs-abandon")
    def _abandon_pressed(self) -> None:
        self.abandon(force=False)

    @on(Button.Pressed, "#runs-force")
    def _force_pressed(self) -> None:
        held = [run for run in self.open_runs or [] if run.held]
        target = "\n".join(f"run {run.run_id} of {run.account_id}, held by {', '.join(run.workers)}" for run in held)
        dialog = ConfirmDialog("Abandon runs a live worker is working on?",
                               f"{target}\nIts worker stops at its next page. {ABANDON_CONSEQUENCE}",
                               self.console.livemode, confirm_label="Abandon anyway")
        self.app.push_screen(dialog, lambda confirmed: self.abandon(force=True) if confirmed else None)

    def abandon(self, *, force: bool) -> None:
        account_id = self.account_id
        if self.step != "runs" or account_id is None or not self.open_runs:
            return
        if self.console.read_only:
            self.notify(f"Abandoning is {actions.READ_ONLY_REASON}: {READ_ONLY_WAY_OUT}.", severity="warning")
            return
        self._abandon_buttons([])
        engine = self.engine

        async def abandon() -> Message:
            try:
                return RunsAbandoned(account_id, await engine.abandon_open_runs(account_id, force=force))
            except RunHeld as held:  # a worker took a chunk meanwhile: list the runs as they are now
                return OpenRunsListed(account_id, await engine.open_runs(account_id),
                                      refusal=f"Not abandoned: {len(held.runs)} run(s) are held by a live worker.")
            except Exception as error:  # noqa: BLE001 - nothing changed: the runs as they are, and why
                return DeletionFailed(account_id, "runs", fmt.mask_secrets_in(str(error)))

        self.call_engine("abandon open runs", abandon)

    def on_runs_abandoned(self, message: RunsAbandoned) -> None:
        if message.account_id != self.account_id or self.step != "runs":
            return
        self.abandoned = message.runs
        ids = ", ".join(str(run.run_id) for run in message.runs)
        self.notify(f"Abandoned run {ids}: closed; its stored rows stay until the deletion.", title="Open runs")
        self._dry_run()

    # -- 3 preview ------------------------------------------------------------------------------

    def _dry_run(self) -> None:
        account_id = self.account_id
        assert account_id is not None
        self.preview = None
        self.query_one("#preview-title", Static).update(Content.assemble(
            "Dry run for ", (account_id, "bold"), ": counting what would be deleted; nothing is deleted."))
        self.query_one("#preview-loading").display = True
        self.query_one("#preview-counts", DataTable).clear(columns=True)
        self.query_one("#preview-extra", Static).update("")
        self.query_one("#preview-continue", Button).disabled = True
        self.go("preview")
        engine = self.engine

        async def dry_run() -> Message:
            try:
                report = await engine.preview_account_deletion(account_id)
            except AccountDeletionRefused:  # a run opened meanwhile: back to the list of open runs
                return OpenRunsListed(account_id, await engine.open_runs(account_id),
                                      refusal="The dry run was refused: a run of the account opened meanwhile.")
            except Exception as error:  # noqa: BLE001 - a failure is an answer, shown on this step
                return DeletionFailed(account_id, "preview", fmt.mask_secrets_in(str(error)))
            listener, _ = await engine.listener_view(with_history=False)
            return DryRunCompleted(account_id, report, listener)

        self.call_engine("dry run", dry_run)

    def on_dry_run_completed(self, message: DryRunCompleted) -> None:
        if message.account_id != self.account_id or self.step != "preview":
            return
        self.preview = message.report
        listener = message.listener
        feeding = listener.webhook_id if listener.state == "ready" else None
        self.listener_webhook = feeding if any(hook.id == feeding for hook in message.report.managed_webhooks) else None
        self.query_one("#preview-loading").display = False
        total = self._fill_counts(self.query_one("#preview-counts", DataTable), message.report)
        self.query_one("#preview-title", Static).update(Content.assemble(
            "Dry run for ", (message.account_id, "bold"), f": {total:,} rows would be deleted. Nothing is deleted yet."))
        self.query_one("#preview-extra", Static).update(self._extra(message.report, listener=listener))
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

    def _extra(self, report: DeletionReport, *, listener: ListenerView | None = None) -> Content:
        hooks = report.managed_webhooks
        lines = [Content(f"Sync runs: {report.sync_runs:,}   Managed webhooks: {len(hooks)}")]
        if self.abandoned:
            lines.append(Content(f"Abandoned before the dry run: run {', '.join(str(r.run_id) for r in self.abandoned)}"))
        if hooks and report.dry_run:
            lines.append(Content("Deleted in Stripe too (managed by this deployment):"))
        for hook in hooks:
            lines.append(Content(f"  {hook.id} → {fmt.clip(hook.url, 60)}"))
            feeds_listener = listener is not None and listener.state == "ready" and (
                hook.id == self.listener_webhook or hook.url == listener.webhook_url)  # its Connect endpoint too
            if listener is not None and feeds_listener and report.dry_run:
                lines.append(Content.styled(
                    f"  ⚠ {hook.id} feeds the running listener (screen 5): right after the deletion the listener "
                    f"registers a new webhook for {fmt.clip(listener.webhook_url, 60)}, or stops if it cannot.",
                    "$warning"))
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
            Content.styled(f"Deleting is {actions.READ_ONLY_REASON}: {READ_ONLY_WAY_OUT} to delete.", "$warning")
            if self.console.read_only else "")
        self.go("confirm")

    def on_deletion_failed(self, message: DeletionFailed) -> None:
        if message.account_id != self.account_id:
            return
        if message.step == "runs" and self.step == "runs":
            self.query_one("#runs-loading").display = False
            self.query_one("#runs-title", Static).update(Content.assemble(
                "Open runs of ", (message.account_id, "bold"), ": ", (message.text, "$error"),
                "\nNothing was changed. Cancel (esc) returns to the accounts to try again once the cause is fixed."))
            self._abandon_buttons(self.open_runs or [])
        elif message.step == "preview" and self.step == "preview":
            self.query_one("#preview-loading").display = False
            self.query_one("#preview-title", Static).update(Content.assemble(
                "Dry run for ", (message.account_id, "bold"), ": ", (message.text, "$error"),
                "\nNothing was deleted. Back (esc) returns to the accounts to try again once the cause is fixed."))
        elif message.step == "execute":
            self.result, self.failure = None, message.text
            self.query_one("#summary-title", Static).update(Content.assemble(
                ("Deletion failed", "bold $error"), f" for {message.account_id}: ", message.text,
                "\nThe deletion runs in one transaction: nothing was deleted. Done returns to the accounts to try "
                "again once the cause is fixed."))
            self.query_one("#summary-counts", DataTable).clear(columns=True)
            self.query_one("#summary-extra", Static).update("")
            self.go("summary")

    # -- 4 confirm ------------------------------------------------------------------------------

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
            self.notify("Choose an account (enter) and let its dry run finish first; Continue then leads here.",
                        severity="warning")
            return
        if not self._confirmable():
            if self.console.read_only:
                self.notify(f"Deleting is {actions.READ_ONLY_REASON}: {READ_ONLY_WAY_OUT} to delete.",
                            severity="warning")
            else:
                self.notify(f"Type the account id ({self.account_id}) exactly to confirm.", severity="warning")
            return
        account_id = self.account_id
        assert account_id is not None
        self.query_one("#execute-title", Static).update(Content.assemble(
            "Deleting the data of ", (account_id, "bold $error"), " in ", mode_content(self.console.livemode),
            "… (one transaction, then its managed webhooks are removed from Stripe)"))
        self.go("execute")
        engine = self.engine

        async def delete() -> Message:
            try:
                report = await engine.delete_account_data(account_id)
            except AccountDeletionRefused:  # a run opened since the dry run: list it; nothing was deleted
                return OpenRunsListed(account_id, await engine.open_runs(account_id),
                                      refusal="The deletion was refused (nothing was deleted): a run of the account "
                                              "opened since the dry run.")
            except Exception as error:  # noqa: BLE001
                return DeletionFailed(account_id, "execute", fmt.mask_secrets_in(str(error)))
            listener, _ = await engine.listener_view(with_history=False)
            return AccountDataDeleted(account_id, report, listener)

        self.call_engine("delete account data", delete)

    # -- 5 execute, 6 summary -------------------------------------------------------------------

    def on_account_data_deleted(self, message: AccountDataDeleted) -> None:
        self.result, self.failure = message.report, None
        total = self._fill_counts(self.query_one("#summary-counts", DataTable), message.report)
        self.query_one("#summary-title", Static).update(Content.assemble(
            ("Deleted", "bold"), f" {total:,} rows of ", (message.account_id, "bold"), " in ",
            mode_content(self.console.livemode), "."))
        extra = self._extra(message.report)
        listener_line = self._listener_after(message.listener)
        if listener_line is not None:
            extra = Content("\n").join([extra, listener_line])
        self.query_one("#summary-extra", Static).update(extra)
        self.go("summary")

    def _listener_after(self, listener: ListenerView) -> Content | None:
        """What the listener did once the deletion removed the webhook feeding it."""
        if self.listener_webhook is None:
            return None
        if listener.state == "ready" and listener.webhook_id and listener.webhook_id != self.listener_webhook:
            return Content.styled(f"Listener (screen 5): re-registered webhook {listener.webhook_id} for "
                                  f"{fmt.clip(listener.webhook_url, 60)}; its feed goes on.", "$warning")
        if listener.state != "ready":
            return Content.styled(f"Listener (screen 5) stopped: {fmt.clip(listener.notice, 100)}. s on screen 5 "
                                  "starts it again.", "$error")
        return None

    @on(Button.Pressed, "#summary-done")
    def _done(self) -> None:
        self.cancel()
