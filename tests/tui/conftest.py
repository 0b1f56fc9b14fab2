"""Console test fixtures: a frozen clock, still cursors, the real database and the Stripe emulator."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from stripe_sync_core.config import SyncConfig
from stripe_sync_emulator import StripeEmulator
from stripe_sync_tui.app import ConsoleApp, ConsoleSettings
from stripe_sync_tui.clock import FrozenClock
from stripe_sync_tui.screens.backfill import BackfillScreen
from stripe_sync_tui.screens.listener import ListenerScreen

from .seed import FROZEN

os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")

SIZE = (120, 36)
DATABASE_LABEL = "postgresql://postgres:****@127.0.0.1:5432/stripe"
TEST_SETTINGS = ConsoleSettings(refresh_interval=0.2, health_interval=None, cursor_blink=False,
                                working_notice_seconds=None,
                                listener_port=0, database_label=DATABASE_LABEL)


@dataclass(frozen=True)
class StripeServer:
    api_base: str
    secret_key: str
    account_id: str
    live_secret_key: str


@pytest.fixture
def stripe_server() -> Iterator[StripeServer]:
    """The project's Stripe emulator over 127.0.0.1 (one per test, so ids are the same every run)."""
    with StripeEmulator(seed=1, customers=5) as emulator:
        import stripe

        client = stripe.StripeClient(emulator.secret_key, base_addresses={"api": emulator.api_base})
        account = client.raw_request("get", "/v1/account")
        yield StripeServer(emulator.api_base, emulator.secret_key, account.data["id"],  # type: ignore[union-attr]
                           emulator.live_secret_key)


@pytest.fixture
def make_app(clean_db: str, stripe_server: StripeServer) -> Callable[..., ConsoleApp]:
    def make(*, read_only: bool = False, database_url: str | None = None, api_base: str | None = None,
             secret_key: str | None = None, enable_sigma: bool = False, **settings: Any) -> ConsoleApp:
        config = SyncConfig(database_url=database_url or clean_db,
                            stripe_secret_key=secret_key or stripe_server.secret_key,
                            stripe_api_base=api_base or stripe_server.api_base, max_retries=0,
                            enable_sigma=enable_sigma)
        app = ConsoleApp(config, read_only=read_only, clock=FrozenClock(FROZEN),
                         settings=ConsoleSettings(**{**TEST_SETTINGS.__dict__, **settings}))
        record_notifications(app)
        return app

    return make


def record_notifications(app: ConsoleApp) -> None:
    """Keep every message the console shows as a notification in `app.notified` (screens and widgets
    notify through `App.notify`), so tests assert on what the operator reads."""
    shown: list[str] = []
    original = app.notify

    def notify(message: Any, *args: Any, **kwargs: Any) -> None:
        shown.append(str(message))
        original(message, *args, **kwargs)

    app.notify = notify  # type: ignore[method-assign]
    app.notified = shown  # type: ignore[attr-defined]


async def until(pilot: Any, predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    """Let the app run until `predicate()` holds (workers finish in their own time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {getattr(predicate, '__name__', predicate)}")
        await pilot.pause(0.02)


async def loaded(pilot: Any, at_least: int = 1) -> None:
    """Connected, and the current screen rendered `at_least` refreshes."""
    app = pilot.app
    await until(pilot, lambda: app.connected or app.problem is not None)
    await until(pilot, lambda: getattr(app.screen, "loads", at_least) >= at_least)
    await pilot.pause()


async def backfill_screen(pilot: Any, objects: Iterable[str] | None = None) -> BackfillScreen:
    """Screen 3 once the console is loaded; with `objects`, only those chosen in its form."""
    await loaded(pilot)
    await pilot.press("3")
    screen = pilot.app.screen
    assert isinstance(screen, BackfillScreen)
    if objects is not None:
        chosen = screen.query_one("#objects")
        chosen.deselect_all()
        for name in objects:
            chosen.select(name)
    return screen


async def start_listener(pilot: Any, timeout: float = 20.0) -> ListenerScreen:
    """Screen 5, `s`: returns the screen once its listener (a process of its own) is ready."""
    await pilot.press("5")
    screen = pilot.app.screen
    assert isinstance(screen, ListenerScreen)
    await pilot.press("s")
    await until(pilot, lambda: screen.state.state == "ready", timeout=timeout)
    return screen
