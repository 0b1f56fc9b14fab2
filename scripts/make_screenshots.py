"""Write screenshots/*.svg: one per console screen, from the state the snapshot tests use.

    STRIPE_SYNC_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python scripts/make_screenshots.py

A database of its own is created on that server (and dropped afterwards); the Stripe side is the
project's emulator. The clock is frozen and the ids are fixed, so a rerun changes no file unless the
console changed.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")

from tui.conftest import SIZE, TEST_SETTINGS, loaded, until  # noqa: E402
from tui.seed import FROZEN, at, seed_account, seed_events, seed_managed_webhook, seed_runs  # noqa: E402

from stripe_sync_core.config import SyncConfig  # noqa: E402
from stripe_sync_core.migrate import run_migrations  # noqa: E402
from stripe_sync_emulator import StripeEmulator  # noqa: E402
from stripe_sync_tui.app import ConsoleApp, ConsoleSettings  # noqa: E402
from stripe_sync_tui.clock import FrozenClock  # noqa: E402

OUT = ROOT / "screenshots"
NAME = "stripe_sync_screenshots"

Steps = Callable[[Any], Awaitable[None]]


async def runs(pilot: Any) -> None:
    await loaded(pilot)


async def webhooks(pilot: Any) -> None:
    await pilot.press("2")
    await loaded(pilot)


async def backfill(pilot: Any) -> None:
    await pilot.press("3")
    await loaded(pilot)
    await until(pilot, lambda: pilot.app.screen.resumable is not None)


async def deletion(pilot: Any) -> None:
    await pilot.press("4")
    await loaded(pilot)
    await pilot.press("enter")  # the seeded account has an interrupted run: the wizard lists it first
    await until(pilot, lambda: pilot.app.screen.open_runs is not None)


async def listener(pilot: Any) -> None:
    await pilot.press("5")
    await loaded(pilot)
    sink = pilot.app.sink
    for i, (kind, status) in enumerate((("customer.created", 200), ("invoice.paid", 200),
                                        ("charge.refunded", 400), ("payment_intent.succeeded", 503))):
        sink.clock.at = at(-i / 60)
        sink.event_received(f"evt_1Feed{i:03d}", kind, "stored" if status < 300 else "error", status)
    sink.clock.at = FROZEN
    await until(pilot, lambda: not sink._events)


async def help_screen(pilot: Any) -> None:
    await loaded(pilot)
    await pilot.press("question_mark")


SCREENS: dict[str, Steps] = {
    "1-sync-runs": runs, "2-webhooks": webhooks, "3-backfill": backfill, "4-delete-account-data": deletion,
    "5-listener": listener, "help": help_screen,
}


async def shoot(config: SyncConfig, name: str, steps: Steps, settings: ConsoleSettings) -> None:
    app = ConsoleApp(config, clock=FrozenClock(FROZEN), settings=settings)
    async with app.run_test(size=SIZE) as pilot:
        await steps(pilot)
        await pilot.pause()
        (OUT / f"{name}.svg").write_text(app.export_screenshot(title=f"stripe-sync · {name}"))
    print(f"screenshots/{name}.svg")


def main() -> None:
    server = os.environ.get("STRIPE_SYNC_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{NAME}"')
    url = server.split("?")[0].rsplit("/", 1)[0] + f"/{NAME}"
    try:
        run_migrations(url)
        OUT.mkdir(exist_ok=True)
        with StripeEmulator(seed=1, customers=5) as emulator:
            config = SyncConfig(database_url=url, stripe_secret_key=emulator.secret_key,
                                stripe_api_base=emulator.api_base, max_retries=0)
            for name, steps in SCREENS.items():
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("TRUNCATE stripe.accounts, stripe._events RESTART IDENTITY CASCADE")
                account = _account_id(emulator)
                seed_account(url, account)
                seed_runs(url, account, open_run=name != "4-delete-account-data")
                seed_managed_webhook(url, account)
                seed_events(url, account)
                asyncio.run(shoot(config, name, steps, TEST_SETTINGS))
            broken = config.with_overrides(database_url="postgresql://postgres:hunter2@127.0.0.1:1/stripe")
            asyncio.run(shoot(broken, "error-database", _problem, ConsoleSettings(
                **{**TEST_SETTINGS.__dict__, "database_label": None})))
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')


async def _problem(pilot: Any) -> None:
    from stripe_sync_tui.screens.problem import ProblemScreen

    await until(pilot, lambda: isinstance(pilot.app.screen, ProblemScreen))


def _account_id(emulator: Any) -> str:
    import stripe

    client = stripe.StripeClient(emulator.secret_key, base_addresses={"api": emulator.api_base})
    return client.raw_request("get", "/v1/account").data["id"]  # type: ignore[union-attr]


if __name__ == "__main__":
    main()
