"""`ConsoleApp`, the operator console, and `run_console`, its entry point for the CLI.

Layout of responsibilities: `engine.py` hosts the core on its own loop; `sink.py` turns engine
progress into messages; `actions.py` is the one key registry; each screen module is one live panel.
"""

from __future__ import annotations

import gc
import os
import sys
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.reactive import reactive
from textual.screen import Screen

from stripe_sync_core.config import SyncConfig, default_config_path
from stripe_sync_core.masking import mask_database_url

from . import actions
from .backfill_process import BackfillProcess
from .clock import Clock, SystemClock
from .engine import ConsoleEngine
from .messages import ConnectionFailed, EngineConnected, EngineReported, HealthChecked, OperationFailed
from .problems import Problem, problem_from
from .screens.backfill import BackfillScreen
from .screens.base import ConsoleScreen
from .screens.deletion import DeletionScreen
from .screens.dialogs import QuitChoice, QuitDialog
from .screens.help import HelpScreen
from .screens.listener import ListenerScreen
from .screens.problem import ProblemScreen
from .screens.runs import RunsScreen
from .screens.webhooks import WebhooksScreen
from .sink import ConsoleSink
from .widgets.header import ConnectionState

HEAP_FREEZE_DELAY = 1.0
"""Seconds after connecting (and after a screen's first build) before the console's long-lived objects
are frozen out of the collector's reach: once what they drew first has been made."""


@dataclass(frozen=True)
class ConsoleSettings:
    """What tests and screenshots pin down; the defaults are the interactive console's."""

    refresh_interval: float = 1.0
    health_interval: float | None = 5.0
    stripe_health_interval: float = 30.0
    cursor_blink: bool = True
    listener_host: str = "127.0.0.1"
    listener_port: int | None = None
    """None: the configured `listener_port`."""
    working_notice_seconds: float | None = 0.3
    """How long an action may take before the console says it is working (None: never, for pictures)."""
    database_label: str | None = None
    """What the header calls the database; None shows the URL with its password masked."""
    autostart: bool = False
    """Once connected, start a backfill of every object and the listener (the demo, alive on first start)."""


class ConsoleApp(App[int]):
    CSS_PATH = "console.tcss"
    TITLE = "stripe-sync"
    MODES = {
        "runs": RunsScreen,
        "webhooks": WebhooksScreen,
        "backfill": BackfillScreen,
        "deletion": DeletionScreen,
        "listener": ListenerScreen,
    }
    BINDINGS = actions.app_bindings()

    connection: reactive[ConnectionState] = reactive(ConnectionState, always_update=True)

    def __init__(self, config: SyncConfig, *, read_only: bool = False, clock: Clock | None = None,
                 settings: ConsoleSettings | None = None, keymap: dict[str, str] | None = None) -> None:
        super().__init__()
        self.config = config
        self.read_only = read_only
        self.clock = clock or SystemClock()
        settings = settings or ConsoleSettings()
        if settings.listener_port is None:
            settings = replace(settings, listener_port=config.listener_port)
        self.settings = settings
        self.keymap = dict(keymap or {})
        self.sink = ConsoleSink(self.clock)
        self.engine: ConsoleEngine | None = None
        self._froze_heap = False
        self.connected = False
        self.account: dict | None = None
        self.problem: Problem | None = None
        self._stripe_checked_at = 0.0
        self.detached_worker: BackfillProcess | None = None
        """A backfill worker the operator chose to leave running when quitting."""
        self.database_display = self.settings.database_label or (
            mask_database_url(config.database_url) if config.database_url else "embedded PostgreSQL")
        self.set_reactive(ConsoleApp.connection, ConnectionState(
            livemode=config.livemode, database=self.database_display, read_only=read_only))

    # -- lifecycle ------------------------------------------------------------------------------

    def on_mount(self) -> None:
        if self.keymap:
            self.set_keymap(self.keymap)
        self.engine = ConsoleEngine(self.config, self.sink)
        self.sink.subscribe(self)
        self.switch_mode("runs")
        self._autostarted = False
        if self.settings.autostart:
            self.watch(self, "connection", self._autostart, init=False)
        self.action_reconnect()
        if self.settings.health_interval:
            self.set_interval(self.settings.health_interval, self.check_health)

    def _autostart(self) -> None:
        """The first time the console is connected, start what `autostart` asks for."""
        if self.connected and not self._autostarted:
            self._autostarted = True
            self.autostart_listener()
            self.autostart_backfill()

    @work(group="autostart-listener", exit_on_error=False)
    async def autostart_listener(self) -> None:
        assert self.engine is not None
        try:
            await self.engine.start_listener(self.settings.listener_host, self.settings.listener_port)
        except Exception as error:  # noqa: BLE001 - shown, as a start from screen 5 would be
            self.report_failure(OperationFailed("start listener", problem_from(error, self.database_display)))

    @work(group="autostart-backfill", exit_on_error=False)
    async def autostart_backfill(self) -> None:
        """Every object, through the same engine call as screen 3 (the open run resumed if there is one)."""
        assert self.engine is not None
        try:
            summary = await self.engine.backfill(["all"])
        except Exception as error:  # noqa: BLE001
            self.report_failure(OperationFailed("backfill", problem_from(error, self.database_display)))
            return
        stored = sum(result.stored for result in summary.values())
        self.notify(f"Backfill finished: {stored:,} objects stored.", title="Backfill")

    def on_unmount(self) -> None:
        self.sink.unsubscribe(self)
        if self.engine is not None:
            self.engine.close()
        if self._froze_heap:
            gc.unfreeze()  # what this console froze is the collector's again (tests run many consoles)

    def freeze_long_lived_objects(self) -> None:
        """Put what exists now out of the collector's reach: the modules, the Stripe SDK, the engine, the
        screens and their widgets live as long as the console. A full collection otherwise walks all of
        them, a pause of hundreds of milliseconds under load that a key press waits behind. Called once
        connected and after each screen's first build; objects made later are collected as usual."""
        gc.freeze()
        self._froze_heap = True

    @property
    def livemode(self) -> bool | None:
        return self.config.livemode

    def key_for(self, entry: actions.ConsoleAction) -> str:
        return self.keymap.get(entry.id, entry.key).split(",")[0]

    # -- quitting: a backfill worker started here is stopped cleanly or detached, never just orphaned --

    async def action_quit(self) -> None:
        self.confirm_quit()

    def action_help_quit(self) -> None:
        """ctrl+c quits too (as in k9s and lazygit), through the same question."""
        self.confirm_quit()

    def confirm_quit(self) -> None:
        worker = self.engine.backfill_worker if self.engine is not None else None
        if worker is None:
            self.exit()
            return
        if isinstance(self.screen, QuitDialog):
            return
        run = f"Run #{worker.run_id}" if worker.run_id is not None else "A run being planned"
        self.push_screen(QuitDialog(f"{run} · worker process pid {worker.pid}", self.livemode), self._quit_chosen)

    def _quit_chosen(self, choice: QuitChoice | None) -> None:
        if choice == "detach":
            assert self.engine is not None
            self.detached_worker = self.engine.detach_backfill()
            self.exit()
        elif choice == "stop":
            self.stop_backfill_and_quit()

    @work(exclusive=True, group="quit", exit_on_error=False)
    async def stop_backfill_and_quit(self) -> None:
        assert self.engine is not None
        self.notify("Stopping the backfill worker: its chunks go back to pending.", title="Quitting")
        self.engine.stop_backfill()
        if await self.engine.backfill_stopped(timeout=60):
            self.exit()
        else:
            self.notify("The backfill worker has not stopped after 60 s: q asks again (detach leaves it).",
                        title="Quitting", severity="error")

    # -- connection -----------------------------------------------------------------------------

    def action_reconnect(self) -> None:
        self.connect()

    @work(exclusive=True, group="connect", exit_on_error=False)
    async def connect(self) -> None:
        assert self.engine is not None
        try:
            account = await self.engine.connect()
        except Exception as error:  # noqa: BLE001 - shown on the error screen
            self.post_message(ConnectionFailed(problem_from(error, self.database_display)))
            return
        name = ((account.get("settings") or {}).get("dashboard") or {}).get("display_name") \
            or (account.get("business_profile") or {}).get("name")
        self.post_message(EngineConnected(account["id"], name, self.config.livemode))

    def on_engine_connected(self, message: EngineConnected) -> None:
        if not self.connected:
            self.set_timer(HEAP_FREEZE_DELAY, self.freeze_long_lived_objects)  # once the first data is drawn
        self.connected = True
        self.connection = replace(self.connection, account_id=message.account_id,
                                  account_name=message.account_name, livemode=message.livemode,
                                  database_ok=True, stripe_ok=True)
        self._stripe_checked_at = time.monotonic()
        self._clear_problem()
        if isinstance(self.screen, ConsoleScreen):
            self.screen.action_refresh_now()

    def on_connection_failed(self, message: ConnectionFailed) -> None:
        self.connected = False
        kind = message.problem.kind
        self.connection = replace(self.connection, database_ok=kind not in ("database", "schema"),
                                  stripe_ok=False if kind.startswith("stripe") else None)
        self.show_problem(message.problem)

    def show_problem(self, problem: Problem) -> None:
        self._clear_problem()
        self.problem = problem
        self.push_screen(ProblemScreen(problem))

    def _clear_problem(self) -> None:
        if self.problem is not None:
            self.problem = None
            if isinstance(self.screen, ProblemScreen):
                self.pop_screen()

    def check_health(self) -> None:
        if self.connected:
            self.health_check()

    @work(exclusive=True, group="health", exit_on_error=False)
    async def health_check(self) -> None:
        assert self.engine is not None
        ask_stripe = time.monotonic() - self._stripe_checked_at >= self.settings.stripe_health_interval
        try:
            database_ok, stripe_ok, detail = await self.engine.check_health(stripe=ask_stripe)
        except Exception as error:  # noqa: BLE001
            database_ok, stripe_ok, detail = False, None, str(error)
        self.post_message(HealthChecked(database_ok, stripe_ok, detail))

    def on_health_checked(self, message: HealthChecked) -> None:
        stripe_ok = self.connection.stripe_ok if message.stripe_ok is None else message.stripe_ok
        if message.stripe_ok is not None:
            self._stripe_checked_at = time.monotonic()
        self.connection = replace(self.connection, database_ok=message.database_ok, stripe_ok=stripe_ok)
        if not message.database_ok and self.problem is None:
            self.connected = False
            from stripe_sync_core.database import DatabaseUnavailable

            self.show_problem(problem_from(DatabaseUnavailable(message.detail), self.database_display))

    def report_failure(self, message: OperationFailed) -> None:
        if message.problem.blocks_console and message.problem.kind == "database":
            self.connected = False
            self.show_problem(message.problem)
            return
        self.notify(message.problem.detail, title=f"{message.what} failed", severity="error", timeout=8)

    def on_engine_reported(self, message: EngineReported) -> None:
        if message.level in ("warning", "error"):
            self.notify(message.text, severity=message.level)  # type: ignore[arg-type]

    # -- navigation -----------------------------------------------------------------------------

    def action_switch_screen_to(self, name: str) -> None:
        if self.problem is not None:
            self.notify("Fix the problem shown first (r tries again).", severity="warning")
            return
        first_visit = name not in self._screen_stacks
        self.switch_mode(name)
        if first_visit:
            self.set_timer(HEAP_FREEZE_DELAY, self.freeze_long_lived_objects)

    def action_show_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(getattr(self.screen, "screen_name", None)))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette offers the actions of the current screen and the global ones, nothing else."""
        current = getattr(screen, "screen_name", None)
        for entry in actions.ACTIONS:
            if not entry.palette or (entry.screen is not None and entry.screen != current):
                continue
            reason = actions.disabled_reason(entry, read_only=self.read_only)
            title = f"{entry.title} ({reason})" if reason else entry.title
            help_text = f"key: {entry.key_display or self.key_for(entry)}"
            yield SystemCommand(title, help_text, partial(self._palette_run, screen, entry, reason))

    async def _palette_run(self, screen: Screen, entry: actions.ConsoleAction, reason: str | None) -> None:
        if reason:
            self.notify(f"{entry.title}: {reason}", severity="warning")
            return
        await screen.run_action(entry.action)


def load_keymap(path: Path | None = None) -> dict[str, str]:
    """Key overrides by binding id, from `keymap.toml` beside the config file (`"webhooks.create" = "c"`)."""
    path = path or Path(os.environ.get("STRIPE_SYNC_KEYMAP") or default_config_path().with_name("keymap.toml"))
    if not path.exists():
        return {}
    try:
        values = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, OSError):
        return {}
    table = values.get("keymap", values)
    return {str(k): str(v) for k, v in table.items() if isinstance(v, str)}


def run_console(config: SyncConfig, *, read_only: bool = False, demo: bool = False) -> int:
    """Open the console over `config`; returns the process exit code."""
    if demo:
        from .demo import CONSOLE_DEMO_CUSTOMERS, demo_environment

        # Alive on first start, and each start is a first one: the demo's database starts empty, a
        # backfill and the listener start by themselves, and the live changes trickle fast at first.
        with demo_environment(config, customers=CONSOLE_DEMO_CUSTOMERS, fresh=True,
                              fast_start=True) as demo_config:
            return _run(demo_config, read_only, ConsoleSettings(autostart=not read_only))
    return _run(config, read_only)


def _run(config: SyncConfig, read_only: bool, settings: ConsoleSettings | None = None) -> int:
    app = ConsoleApp(config, read_only=read_only, keymap=load_keymap(), settings=settings)
    result = app.run()
    worker = app.detached_worker
    if worker is not None and worker.running:
        run = f"run #{worker.run_id}" if worker.run_id is not None else "its run"
        print(f"The backfill worker (pid {worker.pid}) keeps working {run}; its progress: {worker.progress_path}. "
              f"`kill -INT {worker.pid}` stops it cleanly.", file=sys.stderr)
    return result or 0
