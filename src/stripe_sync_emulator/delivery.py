"""Webhook delivery: signed POSTs in the background, retried with exponential backoff, with
optional drop / duplicate / reorder faults.

First attempts to one endpoint go out in event order through one worker per endpoint; retries
are scheduled on their own so one failing event does not hold back the next ones (as at Stripe,
order is not guaranteed once anything fails).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:  # pragma: no cover
    from .account import AccountStore
    from .core import EmulatorCore


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """``Stripe-Signature`` header value for a payload (what ``stripe.Webhook`` verifies)."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


@dataclass
class _Item:
    store: AccountStore  # the account owning the endpoint
    endpoint_seq: int
    event: dict[str, Any]  # the stored event (pending_webhooks is decremented on success)
    payload: str
    attempt: int = 1


class Deliverer:
    """Runs on the server's event loop."""

    def __init__(self, core: EmulatorCore, loop: asyncio.AbstractEventLoop) -> None:
        self.core = core
        self.loop = loop
        self.session: aiohttp.ClientSession | None = None
        self.queues: dict[tuple[str, int], asyncio.Queue[_Item]] = {}
        self.workers: dict[tuple[str, int], asyncio.Task[None]] = {}
        self.pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.log: deque[dict[str, Any]] = deque(maxlen=20_000)
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False

    # ---- bookkeeping -----------------------------------------------------------------------
    def _inc(self) -> None:
        self.pending += 1
        self._idle.clear()

    def _dec(self) -> None:
        self.pending -= 1
        if self.pending <= 0:
            self.pending = 0
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    # ---- entry point -------------------------------------------------------------------------
    def enqueue(self, store: AccountStore, endpoint_seq: int, event: dict[str, Any], payload: str) -> None:
        """Schedule delivery of one event to one endpoint, applying the configured faults."""
        if self.closed:
            return
        faults = self.core.faults
        stats = self.core.stats
        rng = faults.webhook_rng
        if faults.webhook_drop_rate and rng.random() < faults.webhook_drop_rate:
            stats.delivery("dropped")
            self._record(store, endpoint_seq, event, 0, None, "dropped (fault injection)")
            return
        copies = 1
        if faults.webhook_duplicate_rate and rng.random() < faults.webhook_duplicate_rate:
            copies = 2
            stats.delivery("duplicated")
        for _ in range(copies):
            item = _Item(store, endpoint_seq, event, payload)
            self._inc()
            if faults.webhook_reorder_rate and rng.random() < faults.webhook_reorder_rate:
                # Hold it back so the following events overtake it.
                stats.delivery("reordered")
                self._later(self.core.config.webhook_reorder_delay, self._put, item)
            else:
                self._put(item)

    def _later(self, delay: float, fn: Any, *args: Any) -> None:
        handle: asyncio.TimerHandle

        def run() -> None:
            self._timers.discard(handle)
            fn(*args)

        handle = self.loop.call_later(delay, run)
        self._timers.add(handle)

    def _put(self, item: _Item) -> None:
        if self.closed:
            self._dec()
            return
        key = (item.store.id, item.endpoint_seq)
        q = self.queues.get(key)
        if q is None:
            q = self.queues[key] = asyncio.Queue()
            self.workers[key] = self.loop.create_task(self._worker(q))
        q.put_nowait(item)

    async def _worker(self, q: asyncio.Queue[_Item]) -> None:
        while True:
            item = await q.get()
            try:
                await self._attempt(item)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one bad delivery kill the worker
                self._dec()

    def _retry(self, item: _Item) -> None:
        task = self.loop.create_task(self._attempt(item))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attempt(self, item: _Item) -> None:
        cfg = self.core.config
        stats = self.core.stats
        ep = item.store.tables["webhook_endpoints"].rows.get(item.endpoint_seq)
        secret = item.store.webhook_secrets.get(item.endpoint_seq)
        if ep is None or secret is None or ep.get("status") != "enabled":
            self._record(item.store, item.endpoint_seq, item.event, item.attempt, None, "endpoint gone or disabled")
            self._dec()
            return
        stats.delivery("attempted")
        status: int | None = None
        error: str | None = None
        try:
            if self.session is None:
                self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=cfg.webhook_timeout))
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": sign(item.payload, secret),
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                "Cache-Control": "no-cache",
            }
            async with self.session.post(ep["url"], data=item.payload.encode(), headers=headers) as resp:
                await resp.read()
                status = resp.status
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # connection refused, timeout, DNS...
            error = f"{type(exc).__name__}: {exc}"
        ok = status is not None and 200 <= status < 300
        self._record(item.store, item.endpoint_seq, item.event, item.attempt, status, error)
        if ok:
            stats.delivery("succeeded")
            item.event["pending_webhooks"] = max(0, item.event.get("pending_webhooks", 0) - 1)
            self._dec()
            return
        stats.delivery("failed")
        if item.attempt >= cfg.webhook_max_attempts or self.closed:
            stats.delivery("gave_up")
            self._dec()
            return
        delay = min(cfg.webhook_retry_max_delay, cfg.webhook_retry_base_delay * (2 ** (item.attempt - 1)))
        item.attempt += 1
        self._later(delay, self._retry, item)

    def _record(self, store: AccountStore, ep_seq: int, event: dict[str, Any], attempt: int,
                status: int | None, error: str | None) -> None:
        ep = store.tables["webhook_endpoints"].rows.get(ep_seq) or {}
        self.log.append({
            "event": event.get("id"), "type": event.get("type"), "account": store.id,
            "endpoint": ep.get("id"), "url": ep.get("url"), "attempt": attempt, "status": status,
            "error": error, "at": time.time(),
        })

    async def close(self) -> None:
        self.closed = True
        for h in list(self._timers):
            h.cancel()
        self._timers.clear()
        for t in list(self.workers.values()) + list(self._tasks):
            t.cancel()
        for t in list(self.workers.values()) + list(self._tasks):
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        if self.session is not None:
            await self.session.close()
            self.session = None
        self.pending = 0
        self._idle.set()
