"""Helpers for the emulator tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from typing import Any

import stripe
from aiohttp import web

from stripe_sync_emulator import StripeEmulator


def client_for(emu: StripeEmulator, key: str | None = None, **kw: Any) -> stripe.StripeClient:
    """An official SDK client pointed at the emulator, with the SDK's own retries off."""
    kw.setdefault("max_network_retries", 0)
    return stripe.StripeClient(key or emu.secret_key, base_addresses={"api": emu.api_base}, **kw)


class WebhookReceiver:
    """A small aiohttp server on 127.0.0.1 (own thread) recording deliveries.

    ``statuses`` lists the answers to give, in order (then 200 forever)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.received: list[tuple[dict[str, str], str]] = []
        self.answered: list[int] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.url = ""

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def handle(request: web.Request) -> web.Response:
            body = await request.text()
            self.received.append((dict(request.headers), body))
            status = self.statuses.pop(0) if self.statuses else 200
            self.answered.append(status)
            return web.Response(status=status, text="ok")

        async def start() -> web.AppRunner:
            app = web.Application()
            app.router.add_post("/hook", handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}/hook"
            return runner

        runner = self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def start(self) -> WebhookReceiver:
        self._thread.start()
        self._ready.wait(10)
        return self

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def control(emu: StripeEmulator, path: str, body: dict[str, Any] | None = None) -> Any:
    """Call the control API over HTTP (no API key needed)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{emu.api_base}/_emulator/{path}", data=data, method="POST" if data else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def raw(emu: StripeEmulator, method: str, path: str, key: str | None = "default",
        headers: dict[str, str] | None = None, body: str | None = None) -> tuple[int, dict[str, str], Any]:
    """A plain HTTP request (no SDK): (status, headers, decoded JSON)."""
    h = dict(headers or {})
    if key == "default":
        key = emu.secret_key
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    if body is not None:
        h["Content-Type"] = "application/x-www-form-urlencoded"
    req = urllib.request.Request(emu.api_base + path, data=body.encode() if body is not None else None,
                                 method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())
