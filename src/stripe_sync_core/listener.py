"""The embedded webhook listener: an aiohttp server in the caller's event loop.

`POST /webhooks` answers 2xx only once the event is committed; 400 for a bad, stale or replayed
signature or a malformed body (nothing written); 413 over the size limit; 503 while the database is
unreachable and 500 for anything else, so that Stripe redelivers and nothing is lost. `GET /healthz`
reports whether the database answers (its details and the delivery counters only to a local client).

With an ngrok auth token the listener opens a tunnel (tunnel.py, in a worker thread) and registers a
managed webhook for `<public URL>/webhooks`. On start it catches up on events missed while it was down
(`/v1/events` since the last logged event, for the key's account and each connected account seen;
Stripe keeps 30 days, beyond which a backfill is advised).

Its managed webhook can disappear under it (an account data deletion removes the account's managed
webhooks, in this process or another): `check_webhook`, run after such a deletion and every
`webhook_check_seconds`, re-registers a webhook for the same URL while the account is still the key's
own, and otherwise stops the listener; either way it says so (a message, `state.notice`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from aiohttp import web

from .errors import Refused
from .event_writer import is_connection_error
from .masking import mask_secrets_in
from .request_budget import in_lane
from .status import connected_backfills_started, last_backfill_started
from .webhooks import WebhookError, WebhookProcessor, claimed_identity

if TYPE_CHECKING:
    from .context import EngineContext
    from .managed_webhooks import ManagedWebhooks
    from .tunnel import Tunnel

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
EVENT_RETENTION_DAYS = 30
"""How long Stripe keeps events listable in `/v1/events`."""


@dataclass
class CatchUp:
    """What the listener did on start about events missed while it was down."""

    state: str = "pending"
    """pending, running, done, skipped (nothing to catch up from) or failed."""
    since: datetime | None = None
    events: int = 0
    applied: int = 0
    duplicates: int = 0
    backfill_recommended: bool = False
    message: str = ""


@dataclass
class ListenerState:
    """A snapshot for the console: where the listener is reachable and how deliveries went."""

    running: bool = False
    local_url: str | None = None
    public_url: str | None = None
    webhook_url: str | None = None
    webhook_id: str | None = None
    connect_webhook_id: str | None = None
    """Its managed Connect endpoint (same URL, `connect: true`): the connected accounts' events."""
    received: int = 0
    ok: int = 0
    client_errors: int = 0
    server_errors: int = 0
    catch_up: CatchUp = field(default_factory=CatchUp)
    notice: str | None = None
    """What happened to its managed webhook since it started (re-registered), or why it stopped by itself."""


def ready_banner(local_url: str | None, public_url: str | None, webhook_url: str | None,
                 webhook_id: str | None) -> str:
    """`stripe listen`'s first line: where Stripe delivers and where that lands. With no public URL the
    listener is reachable only from this machine (the emulator's deliveries, a proxy of one's own)."""
    forwarded = webhook_url or public_url
    if forwarded and forwarded != local_url:
        text = f"Ready! Forwarding {forwarded} -> {local_url}"
    else:
        text = f"Ready! Listening on {local_url} (no tunnel: reachable from this machine only)"
    if webhook_id:
        text += f" (webhook {webhook_id})"
    return text


WebhookCheck = Literal["none", "present", "re-registered", "stopped"]
"""What `WebhookListener.check_webhook` did."""


class ManagedWebhookGone(Refused, RuntimeError):
    """The listener's managed webhook was deleted and may not be re-registered."""


REQUEST_TIMEOUT_DB_TIMEOUTS = 2
"""A delivery is answered within this many `db_timeout`s: stored (2xx), refused, or 503."""


class WebhookListener:
    """Receives Stripe webhooks and writes them to the engine's database (make one with
    `StripeSync.listener(...)`)."""

    def __init__(self, ctx: EngineContext, webhooks: WebhookProcessor, managed_webhooks: ManagedWebhooks,
                 host: str = "127.0.0.1", port: int = 8787, *,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, path: str = "/webhooks",
                 ngrok_auth_token: str | None = None, ngrok_path: str | None = None,
                 manage_webhook: bool | None = None, remove_webhook_on_exit: bool = False,
                 catch_up: bool = True, db_timeout: float = 5.0,
                 webhook_check_seconds: float | None = 30.0,
                 configure_app: Callable[[web.Application], None] | None = None,
                 shutdown_seconds: float = 10.0, public_url: str | None = None,
                 connect_webhook: bool | None = None) -> None:
        self.ctx = ctx
        self.public_url = public_url.rstrip("/") if public_url else None
        """Where Stripe reaches this listener without a tunnel (a load balancer's URL): its webhook's base."""
        self.webhooks = webhooks
        self.managed_webhooks = managed_webhooks
        self.host = host
        self.port = port
        self.max_body_bytes = max_body_bytes
        self.path = path
        self.ngrok_auth_token = ngrok_auth_token or ctx.config.ngrok_auth_token
        self.ngrok_path = ngrok_path
        self.manage_webhook = self._stripe_can_reach_us() if manage_webhook is None else manage_webhook
        """Register a managed webhook for the URL Stripe reaches (the tunnel's, else the local one)."""
        self.connect_webhook = connect_webhook
        """With a managed webhook, also a managed Connect endpoint for the same URL (None: when the database
        holds connected accounts)."""
        self.remove_webhook_on_exit = remove_webhook_on_exit
        self.catch_up_on_start = catch_up
        self.db_timeout = db_timeout
        self.request_timeout = REQUEST_TIMEOUT_DB_TIMEOUTS * db_timeout
        """How long one delivery may take before it is answered 503 (Stripe retries it)."""
        self.webhook_check_seconds = webhook_check_seconds
        """How often to check that its managed webhook is still recorded (None: only when asked)."""
        self.configure_app = configure_app
        """Called with the listener's application before it serves: more routes, middlewares (`serve`)."""
        self.shutdown_seconds = shutdown_seconds
        """On stop, how long requests in flight may take to finish once the port is closed."""
        self.state = ListenerState()
        self._runner: web.AppRunner | None = None
        self._tunnel: Tunnel | None = None
        self._catch_up_task: asyncio.Task | None = None
        self._watch_task: asyncio.Task | None = None
        self._abandoned: set[asyncio.Future] = set()
        """Deliveries answered 503 after `request_timeout` whose write has not ended yet."""
        self._webhook_account: str | None = None
        self._checking = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def _wants_connect_webhook(self, own: str) -> bool:
        if self.connect_webhook is not None:
            return self.connect_webhook
        row = await self.ctx.database.fetch_one(
            "SELECT EXISTS (SELECT 1 FROM stripe.accounts WHERE id <> %s) AS connected", (own,))
        return bool(row and row["connected"])

    def _stripe_can_reach_us(self) -> bool:
        """Register a managed webhook by default when Stripe can call us: through a tunnel, or when
        "Stripe" is a local API (the emulator of the demo and the tests)."""
        base = self.ctx.config.stripe_api_base or ""
        return bool(self.ngrok_auth_token or self.public_url) or "://127.0.0.1" in base or "://localhost" in base

    async def start(self, *, wait_for_catch_up: bool = True) -> ListenerState:
        """Serve, open the tunnel and register the webhook when configured, then catch up."""
        if self._runner is not None:
            return self.state
        self.webhooks.db_timeout = self.db_timeout
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_post(self.path, self._on_webhook)
        app.router.add_get("/healthz", self._on_health)
        if self.configure_app is not None:
            self.configure_app(app)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=self.shutdown_seconds)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        self.state.local_url = f"http://{self.host}:{self.port}{self.path}"
        self.state.running = True
        try:
            if self.ngrok_auth_token:
                from .tunnel import open_tunnel

                self._tunnel = await asyncio.to_thread(
                    open_tunnel, self.port, self.ngrok_auth_token, ngrok_path=self.ngrok_path, host=self.host)
                self.state.public_url = self._tunnel.public_url
            elif self.public_url:
                self.state.public_url = self.public_url
            self.state.webhook_url = (f"{self.state.public_url}{self.path}" if self.state.public_url
                                      else self.state.local_url)
            if self.manage_webhook:
                webhook = await self.managed_webhooks.find_or_create(self.state.webhook_url)
                self.state.webhook_id, self._webhook_account = webhook["id"], webhook["account_id"]
                if await self._wants_connect_webhook(webhook["account_id"]):
                    connect = await self.managed_webhooks.find_or_create(self.state.webhook_url, connect=True)
                    self.state.connect_webhook_id = connect["id"]
        except BaseException:
            await self.stop()
            raise
        self._message("info", self._banner())
        if self.state.webhook_id and self.webhook_check_seconds:
            self._watch_task = asyncio.create_task(self._watch_webhook(self.webhook_check_seconds))
        if self.catch_up_on_start:
            self._catch_up_task = asyncio.create_task(self.catch_up())
            if wait_for_catch_up:
                await asyncio.shield(self._catch_up_task)
        else:
            self.state.catch_up.state = "skipped"
        return self.state

    def _forget_abandoned(self, processing: asyncio.Future) -> None:
        self._abandoned.discard(processing)
        if not processing.cancelled():
            processing.exception()  # answered 503 already: its failure was the database's, retrieved here

    async def stop(self) -> None:
        """Stop serving (in-flight deliveries finish), close the tunnel, remove the webhook if asked."""
        watch, self._watch_task = self._watch_task, None
        if watch is not None and watch is not asyncio.current_task():
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        if self._catch_up_task is not None:
            self._catch_up_task.cancel()
            await asyncio.gather(self._catch_up_task, return_exceptions=True)
            self._catch_up_task = None
        if self.remove_webhook_on_exit and self.state.connect_webhook_id:
            try:
                await self.managed_webhooks.delete(self.state.connect_webhook_id)
                self.state.connect_webhook_id = None
            except Exception as error:
                self._message("warning", f"could not delete webhook {self.state.connect_webhook_id}: {error}")
        if self.remove_webhook_on_exit and self.state.webhook_id:
            try:
                await self.managed_webhooks.delete(self.state.webhook_id)
                self.state.webhook_id = None
            except Exception as error:
                self._message("warning", f"could not delete webhook {self.state.webhook_id}: {error}")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tunnel is not None:
            tunnel, self._tunnel = self._tunnel, None
            await asyncio.to_thread(tunnel.close)
        self.state.running = False

    async def __aenter__(self) -> WebhookListener:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- its managed webhook -------------------------------------------------------------------------

    async def check_webhook(self) -> WebhookCheck:
        """Make sure the managed webhook feeding this listener still exists; returns what was done:
        `none` (no managed webhook, or not running), `present`, `re-registered` or `stopped`.

        Gone (its account's data was deleted, or someone deleted it): while its account is still the
        key's own, a new managed webhook is registered for the same URL; otherwise, or when that fails,
        the listener stops rather than stay up with a silent feed. Either way a message says so.
        """
        async with self._checking:  # after a deletion and from the watch at once: one re-registration
            return await self._check_webhook()

    async def _check_webhook(self) -> WebhookCheck:
        old = self.state.webhook_id
        if not self.state.running or not old or not self.state.webhook_url:
            return "none"
        result: WebhookCheck = "present"
        if await self.managed_webhooks.get(old) is None:
            result = await self._re_register(old)
            if result == "stopped":
                return result
        connect = self.state.connect_webhook_id
        if connect and await self.managed_webhooks.get(connect) is None:
            notice = await self._re_register_connect(connect)
            self.state.notice = notice if result == "present" else f"{self.state.notice}; {notice}"
            result = "re-registered" if self.state.connect_webhook_id else result
        return result

    async def _re_register_connect(self, old: str) -> str:
        """Its Connect endpoint is gone (the platform's data was deleted): register a new one for the same
        URL, or say that the connected accounts' events no longer arrive (the key's own still do).
        Returns the notice."""
        assert self.state.webhook_url is not None
        try:
            webhook = await self.managed_webhooks.find_or_create(self.state.webhook_url, connect=True)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.state.connect_webhook_id = None
            notice = mask_secrets_in(
                f"Connect webhook {old} was deleted and no new one could be registered ({error}): the connected "
                "accounts' events no longer arrive until the listener is restarted (its catch-up fetches them)")
            self._message("error", notice)
            return notice
        self.state.connect_webhook_id = webhook["id"]
        notice = f"Connect webhook {old} was deleted; re-registered {webhook['id']} for {self.state.webhook_url}"
        self._message("warning", notice)
        return notice

    async def _re_register(self, old: str) -> WebhookCheck:
        assert self.state.webhook_url is not None
        try:
            own = await self.ctx.account.own_id()
            if self._webhook_account is not None and self._webhook_account != own:
                raise ManagedWebhookGone(f"its account {self._webhook_account} is not the key's own ({own})")
            webhook = await self.managed_webhooks.find_or_create(self.state.webhook_url)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            notice = mask_secrets_in(f"the listener stopped: its managed webhook {old} was deleted and no new one "
                                     f"could be registered ({error})")
            self.state.webhook_id, self.state.notice = None, notice  # gone: nothing to remove on stop
            self._message("error", notice)
            await self.stop()
            return "stopped"
        self.state.webhook_id, self._webhook_account = webhook["id"], webhook["account_id"]
        self.state.notice = (f"managed webhook {old} was deleted; re-registered {webhook['id']} "
                             f"for {self.state.webhook_url}")
        self._message("warning", self.state.notice)
        return "re-registered"

    async def _watch_webhook(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                if await self.check_webhook() == "stopped":
                    return
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database may be down a while: look again next time
                self.ctx.log.warning("cannot check the listener's managed webhook: %s", error)

    def _banner(self) -> str:
        state = self.state
        return ready_banner(state.local_url, state.public_url, state.webhook_url, state.webhook_id)

    def _message(self, level: str, text: str) -> None:
        try:
            self.ctx.progress.message(level, mask_secrets_in(text))
        except Exception:
            self.ctx.log.exception("progress sink failed on message")

    # -- requests ----------------------------------------------------------------------------------

    async def _on_webhook(self, request: web.Request) -> web.Response:
        self.state.received += 1
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            return self._reply(413, {"error": f"body over {self.max_body_bytes} bytes"}, None)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._reply(413, {"error": f"body over {self.max_body_bytes} bytes"}, None)
        signature = request.headers.get("Stripe-Signature", "")
        # Bounded: a database that stopped answering (frozen, a network partition) or deliveries of one
        # object queued behind each other's timeouts must not hold Stripe's request open for long. A
        # write that commits after the 503 is safe: Stripe redelivers and finds a duplicate.
        # Not `asyncio.timeout`: cancelling a statement on a frozen server waits for the server too.
        # The write is left to finish or fail on its own, off Stripe's request.
        processing = asyncio.ensure_future(self.webhooks.process_webhook(body, signature, report=False))
        await asyncio.wait({processing}, timeout=self.request_timeout)
        if not processing.done():
            processing.cancel()
            self._abandoned.add(processing)
            processing.add_done_callback(self._forget_abandoned)
            return self._reply(503, {"error": f"not stored within {self.request_timeout:g} s (the database is slow "
                                              "or unreachable); retry later"}, body, outcome="timed_out")
        try:
            result = processing.result()
        except WebhookError as error:
            return self._reply(400, {"error": str(error)}, body, outcome=type(error).__name__)
        except Exception as error:
            if is_connection_error(error):
                return self._reply(503, {"error": "the database is unreachable; retry later"}, body,
                                   outcome="database_unavailable")
            self.ctx.log.exception("webhook delivery failed")
            return self._reply(500, {"error": mask_secrets_in(f"{type(error).__name__}: {error}")}, body,
                               outcome="error")
        return self._reply(200, {"received": True, "outcome": result.outcome}, None,
                           event_id=result.event_id, event_type=result.type, outcome=result.outcome)

    def _reply(self, status: int, payload: dict, body: bytes | None, *, event_id: str | None = None,
               event_type: str | None = None, outcome: str | None = None) -> web.Response:
        if status < 300:
            self.state.ok += 1
        elif status < 500:
            self.state.client_errors += 1
        else:
            self.state.server_errors += 1
        if event_id is None and body is not None:
            event_id, event_type = claimed_identity(body)
        try:
            self.ctx.progress.event_received(event_id or "-", event_type or "-", outcome or str(status), status)
        except Exception:
            self.ctx.log.exception("progress sink failed on event_received")
        return web.json_response(payload, status=status)

    async def _on_health(self, request: web.Request) -> web.Response:
        """Liveness for anyone (`status` only); the details (database latency, delivery counters, the
        error) only for a client on this machine. Behind the tunnel every request comes from the
        local ngrok agent, so a forwarded request is a remote one whatever its peer address."""
        started = time.monotonic()
        local = _is_local(request)
        try:
            async with asyncio.timeout(self.db_timeout):
                async with self.ctx.database.pool.connection(timeout=self.db_timeout) as conn:
                    await conn.execute("SELECT 1")
        except Exception as error:
            details = {"database": "unreachable", "error": mask_secrets_in(str(error) or type(error).__name__)}
            return web.json_response({"status": "unavailable", **(details if local else {})}, status=503)
        if not local:
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "ok", "database": "ok",
                                  "database_ms": round((time.monotonic() - started) * 1000, 1),
                                  "received": self.state.received, "ok": self.state.ok,
                                  "client_errors": self.state.client_errors,
                                  "server_errors": self.state.server_errors})

    # -- catching up -------------------------------------------------------------------------------

    @in_lane("interactive")  # a backfill's chunks never hold it up
    async def catch_up(self) -> CatchUp:
        """Apply `/v1/events` since the newest logged event, for the key's own account and for each
        connected account (Stripe lists a connected account's events only under its `Stripe-Account`
        header): those whose events were logged, and those backfilled (since their last backfill
        started) whose events were not. One account failing does not stop the others."""
        report = self.state.catch_up = CatchUp(state="running")
        try:
            own = await self.ctx.account.own_id()
            rows = await self.ctx.database.fetch_all(
                "SELECT account_id, max(event_created) AS last FROM stripe._events "
                "WHERE account_id IS NOT NULL GROUP BY account_id")
            last_seen = {row["account_id"]: row["last"] for row in rows if row["last"] is not None}
            for account, started in (await connected_backfills_started(self.ctx.database, own)).items():
                last_seen.setdefault(account, started)
            origin = ""
            if own not in last_seen:
                backfill = await last_backfill_started(self.ctx.database, own)
                if backfill is None:
                    report.state, report.backfill_recommended = "skipped", True
                    report.message = ("nothing to catch up from: no event logged and no backfill run yet; "
                                      "run a backfill to load existing data")
                    self._message("warning", report.message)
                    return report
                # No event logged, but a backfill ran: what changed after it started may be missing.
                run_id, last_seen[own] = backfill
                origin = f" (the start of backfill run #{run_id})"
            horizon = self.ctx.now() - timedelta(days=EVENT_RETENTION_DAYS)
            failed: list[str] = []
            for account in [own, *sorted(a for a in last_seen if a != own)]:
                last = last_seen[account]
                since = max(last, horizon)
                report.since = since if report.since is None else min(report.since, since)
                try:
                    await self._catch_up_account(account, since, connected=account != own, report=report)
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    if account == own:
                        raise
                    failed.append(mask_secrets_in(f"{account}: {error}"))
                    continue
                if last < horizon:
                    report.backfill_recommended = True
            report.state = "done"
            accounts = f" across {len(last_seen)} accounts" if len(last_seen) > 1 else ""
            assert report.since is not None
            report.message = (f"caught up {report.applied} missed event(s){accounts} since "
                              f"{report.since:%Y-%m-%d %H:%M:%S}{origin}")
            if report.backfill_recommended:
                report.message += (f"; the last logged event is older than Stripe's {EVENT_RETENTION_DAYS}-day "
                                   "event history: run a backfill to recover what is older")
            if failed:
                report.message += "; could not catch up " + "; ".join(failed)
            self._message("warning" if report.backfill_recommended or failed else "info", report.message)
        except asyncio.CancelledError:
            report.state, report.message = "failed", "cancelled"
            raise
        except Exception as error:
            report.state = "failed"
            report.message = mask_secrets_in(f"catch-up failed: {error}")
            self._message("error", report.message)
        return report

    async def _catch_up_account(self, account: str, since: datetime, *, connected: bool, report: CatchUp) -> None:
        events: list[dict] = []
        async for page in self.ctx.stripe.iterate("/v1/events", {"created": {"gte": int(since.timestamp())}},
                                                   account=self.ctx.account.header(account)):
            events.extend(page.get("data") or [])
        report.events += len(events)
        for event in reversed(events):  # Stripe lists newest first; apply in the order they happened
            if connected and not event.get("account"):
                event["account"] = account  # listed under its header: the event is that account's
            outcome = (await self.webhooks.process_event(event)).outcome
            if outcome == "duplicate":
                report.duplicates += 1
            else:
                report.applied += 1


FORWARDING_HEADERS = ("X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded", "X-Real-IP")


def _is_local(request: web.Request) -> bool:
    """A request from this machine that no proxy or tunnel forwarded."""
    if any(name in request.headers for name in FORWARDING_HEADERS):
        return False
    try:
        return ipaddress.ip_address((request.remote or "").split("%")[0]).is_loopback
    except ValueError:
        return False
