"""The one action registry: bindings, the help screen, the command palette and keymap ids read it.

Each action is declared once with its key, the screen it belongs to (None: everywhere), whether it
writes to Stripe or deletes data, and what it needs of the screen's state (`needs`). `--read-only`
disables the writes: they stay in the footer, dimmed, and say why. An action whose need is not met
(cancel with nothing running, stop a stopped listener) leaves the footer; its key says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingType

SCREENS: dict[str, str] = {
    "runs": "Sync runs",
    "webhooks": "Webhooks",
    "backfill": "Backfill",
    "deletion": "Delete account data",
    "listener": "Listener",
}

READ_ONLY_REASON = "disabled: started with --read-only"


@dataclass(frozen=True)
class ConsoleAction:
    id: str
    """Binding id, used by keymap overrides (`App.set_keymap`)."""
    key: str
    action: str
    title: str
    screen: str | None = None
    """Screen name where it applies; None for every screen."""
    writes: bool = False
    """Writes to Stripe or deletes data: disabled in read-only mode."""
    show: bool = True
    """Shown in the footer."""
    key_display: str | None = None
    palette: bool = True
    priority: bool = False
    needs: str | None = None
    """A condition of the screen's state (`ConsoleScreen.unmet(needs)` says why it does not hold);
    None: always applies."""

    def binding(self) -> Binding:
        tooltip = f"{self.title} (writes: hidden from --read-only)" if self.writes else self.title
        return Binding(self.key, self.action, self.title, show=self.show, key_display=self.key_display,
                       id=self.id, tooltip=tooltip, priority=self.priority)


def _switch(number: int, name: str) -> ConsoleAction:
    return ConsoleAction(f"console.{name}", str(number), f"app.switch_screen_to('{name}')",
                         SCREENS[name], show=False)


ACTIONS: tuple[ConsoleAction, ...] = (
    *(_switch(n, name) for n, name in enumerate(SCREENS, start=1)),
    ConsoleAction("console.help", "question_mark", "app.show_help", "Show every key", key_display="?"),
    ConsoleAction("console.filter", "slash", "filter", "Filter the table", key_display="/", needs="table"),
    ConsoleAction("console.sort", "o", "sort", "Sort", needs="table"),
    ConsoleAction("console.copy", "y", "copy_id", "Copy id", needs="selection"),
    ConsoleAction("console.back", "escape", "back", "Back", key_display="esc", show=False, palette=False),
    ConsoleAction("console.refresh", "r", "refresh_now", "Refresh now", show=False),
    ConsoleAction("console.quit", "q", "app.quit", "Quit"),
    # 1. sync runs
    ConsoleAction("runs.open", "enter", "open_chunks", "Open the run's chunks", "runs"),
    ConsoleAction("runs.account", "a", "choose_account", "Show one account's runs (Connect)", "runs",
                  needs="accounts"),
    # chunks of one run
    ConsoleAction("chunks.close", "escape", "back", "Back to runs", "chunks", show=False, palette=False),
    ConsoleAction("chunks.running", "g", "jump_running", "Jump to the next running chunk", "chunks",
                  needs="running_chunk"),
    ConsoleAction("chunks.failed", "e", "jump_failed", "Jump to the next failed chunk", "chunks",
                  needs="failed_chunk"),
    # 2. webhooks
    ConsoleAction("webhooks.create", "n", "create_webhook", "Create a managed webhook", "webhooks", writes=True),
    ConsoleAction("webhooks.delete", "d", "delete_webhook", "Delete the selected webhook", "webhooks",
                  writes=True),
    # 3. backfill
    ConsoleAction("backfill.plan", "p", "plan_backfill", "Plan the chunks", "backfill", needs="idle"),
    ConsoleAction("backfill.start", "s", "start_backfill", "Start the backfill", "backfill", writes=False,
                  needs="idle"),
    ConsoleAction("backfill.cancel", "c", "cancel_backfill", "Cancel the backfill", "backfill", needs="running"),
    ConsoleAction("backfill.resume", "R", "resume_backfill", "Resume an interrupted run", "backfill",
                  key_display="shift+r", needs="resumable"),
    ConsoleAction("backfill.running", "g", "jump_running", "Jump to the next running chunk", "backfill",
                  needs="running_chunk"),
    ConsoleAction("backfill.failed", "e", "jump_failed", "Jump to the next failed chunk", "backfill",
                  needs="failed_chunk"),
    # 4. delete account data
    ConsoleAction("deletion.execute", "ctrl+d", "execute_deletion", "Delete the account's data (after the preview)",
                  "deletion", writes=True, priority=True),
    # 5. listener
    ConsoleAction("listener.start", "s", "start_listener", "Start the listener", "listener", writes=True,
                  needs="listener_stopped"),
    ConsoleAction("listener.stop", "x", "stop_listener", "Stop the listener", "listener", needs="listener_running"),
    ConsoleAction("listener.clear", "l", "clear_feed", "Clear the feed", "listener"),
)

BY_ACTION: dict[tuple[str | None, str], ConsoleAction] = {(a.screen, a.action): a for a in ACTIONS}


def actions_for(screen: str | None) -> list[ConsoleAction]:
    """The actions of one screen (not the global ones)."""
    return [a for a in ACTIONS if a.screen == screen]


def bindings_for(screen: str | None) -> list[BindingType]:
    return [a.binding() for a in actions_for(screen)]


def app_bindings() -> list[BindingType]:
    """Global actions the app itself performs (switching screens, help, quit)."""
    return [a.binding() for a in actions_for(None) if a.action.startswith("app.")]


def screen_bindings() -> list[BindingType]:
    """Global actions each screen performs on itself (filter, back, refresh)."""
    return [a.binding() for a in actions_for(None) if not a.action.startswith("app.")]


def find(screen: str | None, action: str) -> ConsoleAction | None:
    return BY_ACTION.get((screen, action)) or BY_ACTION.get((None, action))


def disabled_reason(action: ConsoleAction, *, read_only: bool) -> str | None:
    if read_only and action.writes:
        return READ_ONLY_REASON
    return None
