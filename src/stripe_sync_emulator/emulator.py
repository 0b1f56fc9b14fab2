"""``StripeEmulator``: the in-process entry point (server in a background thread, or inside an
existing event loop), with Python methods for faults, clock, stats and ground truth."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from aiohttp import web

from .app import build_app
from .clock import Clock
from .control import Control
from .core import DEFAULT_API_VERSION, EmulatorConfig, EmulatorCore
from .delivery import Deliverer
from .errors import StripeError
from .ids import b62_hash, stable_hash

T = TypeVar("T")


def tune_gc() -> None:
    """For a process that mostly serves the emulator (CLI, benchmark): move everything built so
    far out of the collector's view and collect young objects less often. Rendering a page
    allocates thousands of short-lived dicts, and full collections would otherwise walk the
    whole process on the request path (p99 spikes). Not done automatically in-process: it is
    process-wide."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 50)


def to_epoch(value: Any) -> int | None:
    """Accept epoch seconds, ``YYYY-MM-DD`` / ISO strings, ``date`` or ``datetime`` (UTC if naive)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(value.timestamp())
    if isinstance(value, dt.date):
        return int(dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp())
    s = str(value).strip()
    if s.lstrip("-").isdigit():
        return int(s)
    return to_epoch(dt.datetime.fromisoformat(s.replace("Z", "+00:00")))


class StripeEmulator:
    """A local Stripe API. ``with StripeEmulator(seed=1, customers=200) as emu:`` serves
    ``emu.api_base`` with ``emu.secret_key`` until the block ends.

    Keys: ``accept_keys`` "any" (every well-formed key, the default), "own" (only ``secret_key``,
    ``live_secret_key`` and ``restricted_key``) or the keys to accept; others get Stripe's 401.
    Sizes: ``customers`` scales every type (see ``generation.RATIOS``); ``sizes`` pins types.
    Sigma (live keys only, as on Stripe): ``sigma`` settings such as ``{"polls": 2,
    "inaccessible_tables": ["disputes"], "synthetic_rows": {"balance_transactions": 1_000_000}}``
    (see ``sigma.SigmaSettings``; ``set_sigma`` changes them later).
    Faults: ``rate_limit`` (None/"off", "auto", "test", "live" or requests per second),
    ``error_rate`` (0..1 of requests answered 500), ``latency_ms``, and webhook
    ``webhook_drop_rate`` / ``webhook_duplicate_rate`` / ``webhook_reorder_rate``. The rate limit's buckets
    refill by ``rate_limit_clock`` (seconds, ``time.monotonic`` by default): a test that passes its own
    decides when time passes, whatever the speed of the machine.
    """

    def __init__(
        self,
        seed: int = 0,
        customers: int = 100,
        start: Any = None,
        end: Any = None,
        *,
        connected_accounts: int = 0,
        connected_customers: int | None = None,
        sizes: dict[str, int] | None = None,
        rate_limit: Any = None,
        rate_limit_clock: Callable[[], float] = time.monotonic,
        error_rate: float = 0.0,
        latency_ms: float = 0.0,
        webhook_drop_rate: float = 0.0,
        webhook_duplicate_rate: float = 0.0,
        webhook_reorder_rate: float = 0.0,
        webhook_retry_base_delay: float = 1.0,
        webhook_retry_max_delay: float = 60.0,
        webhook_max_attempts: int = 5,
        webhook_timeout: float = 10.0,
        webhook_reorder_delay: float = 0.25,
        api_version: str = DEFAULT_API_VERSION,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        secret_key: str | None = None,
        accept_keys: str | Iterable[str] = "any",
        sigma: dict[str, Any] | None = None,
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the emulator only binds to the loopback interface")
        config = EmulatorConfig(
            seed=seed, customers=customers, start=to_epoch(start), end=to_epoch(end), sizes=sizes,
            connected_accounts=connected_accounts, connected_customers=connected_customers, api_version=api_version,
            webhook_retry_base_delay=webhook_retry_base_delay, webhook_retry_max_delay=webhook_retry_max_delay,
            webhook_max_attempts=webhook_max_attempts, webhook_timeout=webhook_timeout,
            webhook_reorder_delay=webhook_reorder_delay,
        )
        self.core = EmulatorCore(config, clock or Clock(), rate_limit=rate_limit, error_rate=error_rate,
                                 latency_ms=latency_ms, webhook_drop_rate=webhook_drop_rate,
                                 webhook_duplicate_rate=webhook_duplicate_rate,
                                 webhook_reorder_rate=webhook_reorder_rate, rate_limit_clock=rate_limit_clock)
        self.control = Control(self.core)
        if sigma:
            try:
                self.control.sigma(**sigma)
            except StripeError as exc:
                raise ValueError(exc.message) from None
        self.clock: Clock = self.core.clock
        token = b62_hash(stable_hash("key", seed), 24)
        self.secret_key: str = secret_key or f"sk_test_emu{token}"
        self.live_secret_key: str = f"sk_live_emu{token}"
        self.restricted_key: str = f"rk_test_emu{token}"
        if accept_keys == "own":
            self.core.accepted_keys = frozenset({self.secret_key, self.live_secret_key, self.restricted_key})
        elif accept_keys != "any":
            if isinstance(accept_keys, str):
                raise ValueError(f"accept_keys is 'any', 'own' or a list of keys, not {accept_keys!r}")
            self.core.accepted_keys = frozenset(accept_keys)
        self.host = host
        self.port = port
        self._info: dict[str, Any] = {"secret_key": self.secret_key}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._owns_loop = False
        self._start_error: BaseException | None = None

    # ---- identity -------------------------------------------------------------------------------
    @property
    def api_base(self) -> str:
        host = "127.0.0.1" if self.host == "localhost" else self.host
        return f"http://{host}:{self.port}"

    @property
    def account_id(self) -> str:
        return self.core.platform_id

    @property
    def connected_account_ids(self) -> list[str]:
        return [a for a in self.core.accounts if a != self.core.platform_id]

    @property
    def build_seconds(self) -> float:
        return self.core.build_seconds

    def __repr__(self) -> str:
        return f"<StripeEmulator {self.api_base} account={self.account_id}>"

    # ---- lifecycle --------------------------------------------------------------------------------
    async def _astart(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET6 if self.host == "::1" else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1" if self.host == "localhost" else self.host, self.port))
        self.port = sock.getsockname()[1]
        self._info["api_base"] = self.api_base
        self.core.files.public_base = self.api_base  # file objects' ``url`` (Stripe: files.stripe.com)
        app = build_app(self.core, self._info)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.SockSite(runner, sock, backlog=1024)
        await site.start()
        self._runner = runner
        self._loop = loop
        self.core.deliverer = Deliverer(self.core, loop)

    async def _astop(self) -> None:
        if self.core.deliverer is not None:
            await self.core.deliverer.close()
            self.core.deliverer = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self) -> StripeEmulator:
        """Serve from a background thread with its own event loop; returns when listening."""
        if self._thread is not None or self._loop is not None:
            return self
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._astart())
            except BaseException as exc:  # report bind errors to the caller
                self._start_error = exc
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._astop())
                loop.close()

        self._owns_loop = True
        self._thread = threading.Thread(target=main, name=f"stripe-emulator-{self.port}", daemon=True)
        self._thread.start()
        ready.wait()
        if self._start_error is not None:
            self._thread = None
            raise self._start_error
        return self

    async def start_async(self) -> StripeEmulator:
        """Serve inside the running event loop (call ``await close_async()`` when done)."""
        await self._astart()
        self._owns_loop = False
        return self

    async def close_async(self) -> None:
        await self._astop()
        self._loop = None

    def close(self) -> None:
        if self._thread is not None and self._loop is not None:
            loop = self._loop
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=30)
            self._thread = None
            self._loop = None

    def __enter__(self) -> StripeEmulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> StripeEmulator:
        return await self.start_async()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close_async()

    # ---- running things on the server's loop --------------------------------------------------------
    def _call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run on the server loop when it lives in another thread (deliveries must be scheduled there)."""
        loop = self._loop
        if loop is not None and self._owns_loop and self._thread is not None \
                and threading.current_thread() is not self._thread:
            async def run() -> T:
                return fn(*args, **kw)

            return asyncio.run_coroutine_threadsafe(run(), loop).result()
        return fn(*args, **kw)

    # ---- faults -------------------------------------------------------------------------------------
    def set_rate_limit(self, value: Any) -> None:
        """None/"off", "auto" (preset by key mode), "test" (25/s), "live" (100/s) or requests per second."""
        self.control.set_faults(rate_limit=value if value is not None else "off")

    def set_error_rate(self, ratio: float) -> None:
        self.control.set_faults(error_rate=ratio)

    def set_latency(self, ms: float) -> None:
        self.control.set_faults(latency_ms=ms)

    def set_webhook_faults(self, *, drop: float | None = None, duplicate: float | None = None,
                           reorder: float | None = None) -> None:
        self.control.set_faults(webhook_drop_rate=drop, webhook_duplicate_rate=duplicate,
                                webhook_reorder_rate=reorder)

    def burst_events(self, n: int) -> None:
        """The next ``n`` events all get the same ``created`` second."""
        self.control.set_faults(burst_events=n)

    def faults(self) -> dict[str, Any]:
        return self.control.faults()

    # ---- Sigma --------------------------------------------------------------------------------------
    def set_sigma(self, **settings: Any) -> dict[str, Any]:
        """Change Sigma's knobs: ``polls``, ``success_status`` ("succeeded"/"completed"),
        ``failing_tables`` ({table: message} or names), ``inaccessible_tables``,
        ``inaccessible_error`` ("request"/"run"), ``synthetic_rows`` ({table: n}). Answers all."""
        return self._call(self.control.sigma, **settings)

    def sigma_rows(self, table: str, account: str | None = None) -> list[dict[str, str | None]]:
        """Every row of a Sigma reporting table, as text the way a result file carries it."""
        return self._call(self.control.sigma_rows, table, account)

    def sigma_count(self, table: str, account: str | None = None) -> int:
        """Rows in a Sigma reporting table (synthetic ones included)."""
        return self._call(self.control.sigma_count, table, account)

    # ---- stats ------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return self.core.stats.snapshot()

    def reset_stats(self) -> None:
        self.core.stats.reset()

    # ---- ground truth and writes -----------------------------------------------------------------------
    def objects(self, type_name: str, account: str | None = None) -> list[dict[str, Any]]:
        """Every live object of a type, fully rendered, newest first (deleted excluded)."""
        return self._call(self.control.objects, type_name, account)

    def counts(self, account: str | None = None) -> dict[str, int]:
        return self._call(self.control.counts, account)

    def total_objects(self, account: str | None = None) -> int:
        return sum(self.counts(account).values())

    def get(self, type_name: str, ident: str, account: str | None = None) -> dict[str, Any] | None:
        return self._call(self.control.get, type_name, ident, account)

    def events(self, account: str | None = None) -> list[dict[str, Any]]:
        """Retained events, oldest first."""
        def run() -> list[dict[str, Any]]:
            acc = self.control.account(account)
            floor = self.core.retention_floor()
            seqs = reversed(acc.all_seqs("events"))  # the history of generated objects, then the API's
            return [e for e in (acc.render("events", s, False) for s in seqs) if e and e["created"] >= floor]

        return self._call(run)

    def mutate_random(self, n: int = 1, account: str | None = None, burst: bool = False) -> list[dict[str, Any]]:
        """Perform ``n`` random realistic changes (each emits events); returns the events."""
        return self._call(self.control.mutate_random, n, account, burst)

    def create(self, type_name: str, params: dict[str, Any], account: str | None = None, *,
               silent: bool = False) -> dict[str, Any]:
        """Create any object, including ones Stripe only creates itself (disputes, early fraud
        warnings, reviews). Params use the API's names (strings or plain values). `silent`: no event
        is recorded or delivered (drift for `verify`: an object no event announced)."""
        return self._call(self.control.create, type_name, params, account, silent=silent)

    def action(self, type_name: str, ident: str, action: str, params: dict[str, Any] | None = None,
               account: str | None = None, *, silent: bool = False) -> dict[str, Any]:
        """An action on one object: an API action (`capture`, `cancel`...), `update` or `delete`.
        `silent`: no event is recorded or delivered (an object changed or deleted without an event)."""
        return self._call(self.control.action, type_name, ident, action, params or {}, account, silent=silent)

    def complete_checkout_session(self, ident: str, account: str | None = None) -> dict[str, Any]:
        return self.action("checkout_sessions", ident, "complete", {}, account)

    def wait_for_deliveries(self, timeout: float = 10.0) -> bool:
        """Block until no webhook delivery (incl. scheduled retries) is pending."""
        d = self.core.deliverer
        loop = self._loop
        if d is None or loop is None:
            return True
        if self._owns_loop:
            return asyncio.run_coroutine_threadsafe(d.wait_idle(timeout), loop).result(timeout + 5)
        raise RuntimeError("use await emu.wait_for_deliveries_async() when running inside the loop")

    async def wait_for_deliveries_async(self, timeout: float = 10.0) -> bool:
        d = self.core.deliverer
        return True if d is None else await d.wait_idle(timeout)

    def deliveries(self) -> list[dict[str, Any]]:
        d = self.core.deliverer
        return list(d.log) if d is not None else []
