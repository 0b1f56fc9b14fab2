"""`--demo`: everything offline with no Stripe key.

The embedded PostgreSQL (in its own `demo` data directory, apart from real data), the local Stripe
emulator with generated data, and a steady trickle of live changes. A listener started on the demo
registers a managed webhook in the emulator, which delivers the changes to it as signed webhooks. The
console's demo starts a backfill and the listener by itself (`ConsoleSettings.autostart`).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from stripe_sync_core.config import SyncConfig, default_data_dir
from stripe_sync_core.embedded import embedded_database_url
from stripe_sync_core.migrate import run_migrations

DEMO_SEED = 1
DEMO_CUSTOMERS = 200
CONSOLE_DEMO_CUSTOMERS = 2000
"""The console's demo: enough data (about 38,000 objects) for its first backfill to be seen moving."""
TRICKLE_INTERVAL_SECONDS = 2.0
TRICKLE_FIRST_INTERVAL_SECONDS = 0.25
TRICKLE_FIRST_SECONDS = 60.0
"""The console's demo trickles fast in its first minute, so that the listener's feed shows events as soon
as it is up (the headless demo keeps the slow pace: a backfill there is compared with the emulator)."""


def _empty(database_url: str) -> None:
    """Drop the demo's synced data. The emulator generates the same objects and the same event ids each
    session, so a database kept from an earlier session would answer every new event "duplicate"."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS stripe CASCADE")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Trickle(threading.Thread):
    """A few realistic changes every couple of seconds (a few a second at first), through the emulator's
    own API code path."""

    def __init__(self, emulator, interval: float, *, first_interval: float | None = None,  # noqa: ANN001
                 first_seconds: float = 0.0) -> None:  # the emulator is duck-typed here
        super().__init__(name="demo-trickle", daemon=True)
        self.emulator = emulator
        self.interval = interval
        self.first_interval = interval if first_interval is None else first_interval
        self.first_seconds = first_seconds
        self.stopped = threading.Event()

    def run(self) -> None:
        fast_until = time.monotonic() + self.first_seconds
        while not self.stopped.wait(self.first_interval if time.monotonic() < fast_until else self.interval):
            try:
                self.emulator.mutate_random(1)
            except Exception:  # a demo nicety must never take the console down
                continue


@contextmanager
def demo_environment(config: SyncConfig, *, trickle: bool = True, customers: int = DEMO_CUSTOMERS,
                     fresh: bool = False, fast_start: bool = False) -> Iterator[SyncConfig]:
    """Start the emulator (and the embedded database unless one is configured), migrate, and yield
    settings pointing at both. `fresh` empties the demo's own embedded database first (never one
    given with --database-url); `fast_start` trickles a few changes a second in the first minute."""
    from stripe_sync_emulator import StripeEmulator

    database_url = config.database_url or embedded_database_url(default_data_dir() / "demo")
    if fresh and not config.database_url:
        _empty(database_url)
    run_migrations(database_url)
    with StripeEmulator(seed=DEMO_SEED, customers=customers) as emulator:
        demo = config.with_overrides(
            database_url=database_url,
            stripe_api_base=emulator.api_base,
            stripe_secret_key=emulator.secret_key,
            listener_port=_free_port(),  # never collide with a real listener on 8787
            max_requests_per_second=0,
        )
        mutations = _Trickle(emulator, TRICKLE_INTERVAL_SECONDS, first_interval=TRICKLE_FIRST_INTERVAL_SECONDS,
                             first_seconds=TRICKLE_FIRST_SECONDS if fast_start else 0.0) if trickle else None
        if mutations:
            mutations.start()
        try:
            yield demo
        finally:
            if mutations:
                mutations.stopped.set()
                mutations.join(timeout=5)
