"""`serve`: the engine as one long-lived process, on the webhook listener's HTTP server.

Routes, like the TypeScript engine's Fastify server:

- `POST /webhooks`: the listener's (signed deliveries; 2xx once committed), public;
- `GET /health`: liveness, public (503 while draining);
- `POST /sync` (JSON `{"objects": "all" | "customers,invoices" | [...], "since": "YYYY-MM-DD" | epoch}`),
  `POST /sync/single/{id}` and `GET /metrics` (Prometheus text): only with `Authorization: Bearer
  <api key>`, and off (403) when no API key is configured.

Beside the routes: catch-up on start (the listener's), an incremental sync of `sync_objects` once per
interval across every `serve` process of the database (`schedule.py`: the process that claims the slot
runs it), and, when asked for, a sampled `verify` of the same objects on a schedule of its own (its
differences in the metrics and `stripe._verify_results`, repaired only when told). `drain()` (SIGTERM) answers new requests 503, cancels running syncs (their chunks go back to
pending, resumable), closes the port and lets deliveries in flight finish.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .chunking import parse_created_bound
from .errors import InvalidInput, StripeSyncError
from .masking import mask_secrets_in
from .schedule import Schedule
from .stripe_api import ObjectNotFound

if TYPE_CHECKING:
    from .backfill import Backfill
    from .context import EngineContext
    from .listener import CatchUp, ListenerState, WebhookListener
    from .results import BackfillResult
    from .service_metrics import ServiceMetrics

SCHEDULED_JOB = "incremental_sync"
VERIFY_JOB = "sampled_verify"
DEFAULT_VERIFY_SAMPLE = 100
DEFAULT_SYNC_INTERVAL_SECONDS = 15 * 60.0
MIN_API_KEY_LENGTH = 16
DEFAULT_DRAIN_SECONDS = 25.0
"""How long a drain may take (SIGTERM to exit stays under 30 s, what orchestrators wait by default)."""
RETRY_SCHEDULE_SECONDS = 5.0
"""How soon the schedule looks again after the database failed to answer."""
PUBLIC_ROUTES = frozenset({"/webhooks", "/health", "/healthz"})
HTTP_STATUS: dict[str, int] = {"invalid_input": 400, "refused": 409, "unavailable": 503,
                               "not_configured": 500, "failed": 500}
"""Each branch of the error tree as an HTTP status (`ObjectNotFound` is 404)."""


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class ServiceSettingError(InvalidInput, ValueError):
    """A `serve` setting is malformed (the interval, the API key)."""


def parse_interval(text: str | float | None, *, what: str = "sync interval") -> float:
    """Seconds from `900`, `90s`, `15m` or `1h`; 0 turns the schedule off."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return DEFAULT_SYNC_INTERVAL_SECONDS
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        value, unit = text.strip().lower(), 1.0
        if value and value[-1] in "smh":
            value, unit = value[:-1], {"s": 1.0, "m": 60.0, "h": 3600.0}[value[-1]]
        try:
            seconds = float(value) * unit
        except ValueError:
            raise ServiceSettingError(f"invalid {what} {text!r}: seconds, or a number with s, m or h "
                                      "(15m), or 0 for no schedule") from None
    if seconds < 0 or seconds != seconds:
        raise ServiceSettingError(f"invalid {what} {text!r}: 0 (no schedule) or more")
    return seconds


@dataclass(frozen=True)
class ServiceOptions:
    api_key: str | None = None
    """Bearer token of `/sync`, `/sync/single/{id}` and `/metrics`; None turns those routes off."""
    sync_interval_seconds: float = DEFAULT_SYNC_INTERVAL_SECONDS
    """The scheduled incremental sync's period; 0: no schedule."""
    sync_objects: str | tuple[str, ...] = "all"
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    verify_interval_seconds: float = 0.0
    """The sampled verify's period (0: none): drift is found without an operator asking."""
    verify_sample: int = DEFAULT_VERIFY_SAMPLE
    """Objects a type each scheduled verify compares: the newest N and N random stored rows."""
    verify_repair: bool = False
    """Store Stripe's state for what a scheduled verify finds (under the no-lost-update rule)."""
    holder: str = field(default_factory=default_holder)
    """Who claims the schedule's slots (host:pid), as recorded in `stripe._service_lease`."""

    def __post_init__(self) -> None:
        if self.api_key is not None and len(self.api_key) < MIN_API_KEY_LENGTH:
            raise ServiceSettingError(f"SYNC_API_KEY is too short: use at least {MIN_API_KEY_LENGTH} random "
                                      "characters (e.g. `openssl rand -hex 32`)")
        if self.sync_interval_seconds < 0:
            raise ServiceSettingError("the sync interval must be 0 (no schedule) or more")
        if self.verify_interval_seconds < 0:
            raise ServiceSettingError("the verify interval must be 0 (no scheduled verify) or more")
        if self.verify_sample < 1:
            raise ServiceSettingError("the verify sample must be at least 1 object a type")
        if not self.drain_seconds > 0:
            raise ServiceSettingError("the drain time must be more than 0 seconds")


MakeListener = Callable[..., "WebhookListener"]
"""Builds the listener with the service's `configure_app` and `shutdown_seconds` (e.g. `StripeSync.listener`)."""
Report = Callable[[dict[str, Any]], None]


class SyncService:
    """The webhook listener plus the API, the schedule and the drain. `start()`, then `drain()`."""

    def __init__(self, ctx: EngineContext, backfill: Backfill, make_listener: MakeListener,
                 metrics: ServiceMetrics, options: ServiceOptions | None = None, *,
                 report: Report | None = None) -> None:
        self.ctx = ctx
        self.backfill = backfill
        self.metrics = metrics
        self.options = options or ServiceOptions()
        self.report = report or (lambda record: None)
        """Told of what the service does on its own (the catch-up, each scheduled sync)."""
        self.listener = make_listener(configure_app=self._configure,
                                      shutdown_seconds=self.options.drain_seconds * 0.6)
        self.draining = False
        self._scheduler: asyncio.Task | None = None
        self._verifier: asyncio.Task | None = None
        self._syncs: set[asyncio.Task] = set()
        self._watchers: set[asyncio.Task] = set()
        metrics.attach(ctx)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> ListenerState:
        """Serve (the listener: its webhook, its catch-up in the background), then start the schedule."""
        state = await self.listener.start(wait_for_catch_up=False)
        self.metrics.up.set(1)
        self._watch(self._report_catch_up())
        options = self.options
        if options.sync_interval_seconds:
            self._scheduler = asyncio.create_task(self._schedule_loop(
                Schedule(self.ctx.database, SCHEDULED_JOB, options.sync_interval_seconds, options.holder),
                self._scheduled_sync))
        if options.verify_interval_seconds:
            self._verifier = asyncio.create_task(self._schedule_loop(
                Schedule(self.ctx.database, VERIFY_JOB, options.verify_interval_seconds, options.holder),
                self._scheduled_verify))
        return state

    async def drain(self) -> None:
        """Stop: answer new requests 503, cancel running syncs (chunks back to pending), close the port,
        let deliveries in flight finish (at most `shutdown_seconds`), stop the tunnel and watchers."""
        self.draining = True
        self.metrics.draining.set(1)
        tasks = [t for t in (self._scheduler, self._verifier, *self._syncs, *self._watchers) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.listener.stop()
        self.metrics.up.set(0)

    def _watch(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _report_catch_up(self) -> CatchUp:
        catch_up = self.listener.state.catch_up
        while catch_up.state in ("pending", "running"):
            await asyncio.sleep(0.05)
            catch_up = self.listener.state.catch_up
        self.report({"kind": "catch_up", "state": catch_up.state, "events": catch_up.events,
                     "applied": catch_up.applied, "duplicates": catch_up.duplicates, "message": catch_up.message})
        return catch_up

    # -- syncs -----------------------------------------------------------------------------------

    async def run_sync(self, trigger: str, objects: str | Sequence[str], since: int | None = None) -> BackfillResult:
        """One sync (incremental after a complete run, else a full pass), counted in the metrics."""
        metrics = self.metrics
        metrics.sync_running.labels(trigger).inc()
        started = time.monotonic()
        outcome = "failed"
        try:
            result = await self.backfill.process_until_done(objects, created_gte=since)
            outcome = "partial" if any(r.errors for r in result.values()) else "ok"
            if outcome == "ok":
                metrics.last_sync_success.set(time.time())
            return result
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except StripeSyncError as error:
            outcome = error.kind
            raise
        finally:
            metrics.sync_running.labels(trigger).dec()
            metrics.syncs.labels(trigger, outcome).inc()
            metrics.last_sync_seconds.set(time.monotonic() - started)

    async def _schedule_loop(self, schedule: Schedule,
                             job: Callable[[Schedule, Any], Awaitable[None]]) -> None:
        while True:
            try:
                claim = await schedule.claim()
                if claim is not None:
                    await job(schedule, claim)
                wait = await schedule.seconds_to_next_slot()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database is down a while: look again soon
                self.ctx.log.warning("scheduled %s: %s", schedule.job,
                                     mask_secrets_in(str(error) or type(error).__name__))
                wait = min(schedule.interval, RETRY_SCHEDULE_SECONDS)
            await asyncio.sleep(wait + 0.01)  # just past the slot's start, by the server's clock

    async def _scheduled_sync(self, schedule: Schedule, claim: Any) -> None:
        record: dict[str, Any] = {"kind": "scheduled_sync", "slot": claim.slot, "holder": self.options.holder}
        try:
            result = await self.run_sync("schedule", self.options.sync_objects)
        except asyncio.CancelledError:
            await asyncio.shield(schedule.finish(claim, "cancelled: its chunks are pending, resumable"))
            raise
        except Exception as error:
            outcome = mask_secrets_in(f"failed: {error}")
            record.update(outcome=outcome)
        else:
            errors = sum(r.errors for r in result.values())
            outcome = f"partial: {errors} error(s)" if errors else "ok"
            record.update(outcome=outcome, stored=sum(r.stored for r in result.values()), errors=errors,
                          run_id=next((r.run_id for r in result.values()), None))
        await schedule.finish(claim, outcome)
        self.report(record)

    async def _scheduled_verify(self, schedule: Schedule, claim: Any) -> None:
        """A sampled verify of the scheduled sync's objects: each type's differences are reported, kept in
        `stripe._verify_results` (screen 1 shows them) and in the metrics."""
        from .backfill import tables_for
        from .verify import verify

        options = self.options
        record: dict[str, Any] = {"kind": "scheduled_verify", "slot": claim.slot, "holder": options.holder,
                                  "sample": options.verify_sample}
        outcome = "failed"
        try:
            results = await verify(self.ctx, tables_for(options.sync_objects), sample=options.verify_sample,
                                   repair=options.verify_repair)
        except asyncio.CancelledError:
            await asyncio.shield(schedule.finish(claim, "cancelled"))
            raise
        except Exception as error:
            outcome = mask_secrets_in(f"failed: {error}")
            record.update(outcome=outcome)
        else:
            differences = {r.object: r.drift for r in results if r.drift}
            self.metrics.verified(results)
            outcome = "clean" if not differences else f"drift: {sum(differences.values())} row(s)"
            record.update(outcome=outcome, checked=sum(r.checked for r in results), differences=differences,
                          repaired=sum(r.repaired for r in results))
        await schedule.finish(claim, outcome)
        self.report(record)

    # -- HTTP ------------------------------------------------------------------------------------

    def _configure(self, app: web.Application) -> None:
        app.middlewares.append(self._middleware)
        app.router.add_get("/health", self._on_health)
        app.router.add_get("/metrics", self._on_metrics)
        app.router.add_post("/sync", self._on_sync)
        app.router.add_post("/sync/single/{id}", self._on_sync_single)

    @web.middleware
    async def _middleware(self, request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "other"
        metrics = self.metrics
        started = time.monotonic()
        metrics.in_flight.inc()
        status = 500
        try:
            if self.draining and route != "/health":
                response: web.StreamResponse = _error(503, "the service is shutting down; retry on another "
                                                           "instance or later")
            elif route not in PUBLIC_ROUTES and route != "other":
                response = self._refuse_unauthorized(request) or await handler(request)
            else:
                response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        finally:
            metrics.in_flight.dec()
            metrics.http_requests.labels(route, str(status)).inc()
            metrics.http_seconds.labels(route).observe(time.monotonic() - started)

    def _refuse_unauthorized(self, request: web.Request) -> web.Response | None:
        key = self.options.api_key
        if not key:
            return _error(403, "this route is off: set SYNC_API_KEY (at least 16 characters) in the service's "
                               "environment, then send it as `Authorization: Bearer <key>`")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            response = _error(401, "missing or wrong bearer token: send `Authorization: Bearer <SYNC_API_KEY>`")
            response.headers["WWW-Authenticate"] = 'Bearer realm="stripe-sync"'
            return response
        return None

    async def _on_health(self, request: web.Request) -> web.Response:
        if self.draining:
            return web.json_response({"status": "draining"}, status=503)
        return web.json_response({"status": "ok"})

    async def _on_metrics(self, request: web.Request) -> web.Response:
        body = await self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": self.metrics.content_type})

    async def _on_sync(self, request: web.Request) -> web.Response:
        try:
            objects, since = _sync_request(await request.read())
        except InvalidInput as error:
            return _error(400, str(error))
        return await self._answer(self.run_sync("api", objects, since),
                                  lambda result: {"run": {name: r.to_dict() for name, r in result.items()}})

    async def _on_sync_single(self, request: web.Request) -> web.Response:
        object_id = request.match_info["id"]
        return await self._answer(self.backfill.sync_single_entity(object_id), lambda result: result.to_dict())

    async def _answer(self, work: Awaitable[Any], render: Callable[[Any], dict]) -> web.Response:
        """Run `work` as a task the drain can cancel; its result or error as JSON."""
        task = asyncio.ensure_future(work)
        self._syncs.add(task)
        task.add_done_callback(self._syncs.discard)
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled():  # this request was cancelled, not the work
                task.cancel()
                raise
            return _error(503, "interrupted: the service is shutting down; the sync's chunks are pending "
                               "and resume with the next sync")
        except ObjectNotFound as error:
            return _error(404, str(error))
        except StripeSyncError as error:
            return _error(HTTP_STATUS.get(error.kind, 500), str(error))
        except Exception as error:
            self.ctx.log.exception("serve: request failed")
            return _error(500, f"{type(error).__name__}: {error}")
        return web.json_response(render(result), dumps=_dumps)


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, default=str)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": mask_secrets_in(message)}, status=status)


def _sync_request(body: bytes) -> tuple[str | list[str], int | None]:
    """`objects` and `since` of a `POST /sync` body (empty: everything, incrementally)."""
    import json

    from .backfill import tables_for

    if not body.strip():
        return "all", None
    try:
        request = json.loads(body)
    except ValueError as error:
        raise ServiceSettingError(f"the body is not JSON: {error}") from None
    if not isinstance(request, dict):
        raise ServiceSettingError('the body must be a JSON object: {"objects": "all", "since": "2025-01-01"}')
    unknown = set(request) - {"objects", "since"}
    if unknown:
        raise ServiceSettingError(f"unknown field(s) {', '.join(sorted(unknown))}: only objects and since")
    objects = request.get("objects", "all")
    if isinstance(objects, str):
        names = [name.strip() for name in objects.split(",") if name.strip()]
    elif isinstance(objects, list) and all(isinstance(name, str) for name in objects):
        names = objects
    else:
        raise ServiceSettingError('objects must be "all", a name, names separated by commas, or a list of names')
    if not names:
        raise ServiceSettingError("objects is empty")
    chosen: str | list[str] = "all" if names == ["all"] else names
    tables_for(chosen)  # an unknown name is a 400 before anything runs
    since = request.get("since")
    if since is None:
        return chosen, None
    if isinstance(since, bool) or not isinstance(since, int | str):
        raise ServiceSettingError('since must be a date ("2025-01-01"), an ISO timestamp or a Unix time')
    return chosen, since if isinstance(since, int) else parse_created_bound(since)
