"""`ConsoleHeader`: account, mode, database (password masked), health of both connections, screens."""

from __future__ import annotations

from dataclasses import dataclass

from textual.content import Content
from textual.widgets import Static

from ..actions import SCREENS


@dataclass(frozen=True)
class ConnectionState:
    account_id: str | None = None
    account_name: str | None = None
    livemode: bool | None = None
    database: str = ""
    database_ok: bool | None = None
    stripe_ok: bool | None = None
    read_only: bool = False


def _health(ok: bool | None) -> Content:
    if ok is None:
        return Content.from_markup("[$text-muted]○ …[/]")
    return Content.from_markup("[$success]● ok[/]") if ok else Content.from_markup("[$error]● down[/]")


def mode_content(livemode: bool | None) -> Content:
    if livemode is None:
        return Content.from_markup("[$text-muted]no key[/]")
    return Content.from_markup("[bold $error]LIVE mode[/]" if livemode else "[bold $error]test mode[/]")


class ConsoleHeader(Static):
    DEFAULT_CSS = """
    ConsoleHeader {
        height: 2; background: $panel; color: $foreground; padding: 0 1;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    """

    def __init__(self, screen_name: str) -> None:
        super().__init__()
        self.screen_name = screen_name

    def on_mount(self) -> None:
        self.watch(self.app, "connection", self._show, init=True)

    def _show(self, state: ConnectionState) -> None:
        account = Content(state.account_id or "connecting…")
        if state.account_name:
            account = account + Content(f" ({state.account_name})")
        # The URL goes last: on a narrow terminal it is what the ellipsis eats, never the health.
        line = Content.assemble(
            (account.plain, "bold"), "  ", mode_content(state.livemode),
            "  Stripe ", _health(state.stripe_ok), "  db ", _health(state.database_ok), " ",
            Content(state.database),
        )
        if state.read_only:
            line = line + Content.from_markup("  [$warning]read-only[/]")
        tabs = []
        for number, (name, title) in enumerate(SCREENS.items(), start=1):
            label = f" {number} {title} "
            tabs.append(Content.from_markup(f"[reverse $primary]{label}[/]") if name == self.screen_name
                        else Content.styled(label, "$text-muted"))
        self.update(Content("\n").join([line, Content("").join(tabs)]))
