"""`stripe-sync-tui --headless serve`: the engine as a service (`stripe_sync_core.service`).

Its first stdout line says where it serves (with `--json`: `{"kind": "serving", "port": ...}`, so a
supervisor or a test that asked for `--port 0` learns the port); then one line for the catch-up and one
per scheduled sync this process ran. SIGTERM or SIGINT drains it (`SyncService.drain`) and it exits 0.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from stripe_sync_core.config import SyncConfig
from stripe_sync_core.progress import ProgressSink

from .output import Output

if TYPE_CHECKING:
    from stripe_sync_core import StripeSync
    from stripe_sync_core.service_metrics import ServiceMetrics

API_KEY_VARIABLE = "SYNC_API_KEY"
INTERVAL_VARIABLE = "SYNC_INTERVAL"
PORT_VARIABLE = "PORT"
"""Set by most container platforms (Cloud Run, Heroku, Fly.io); `--port` wins over it."""


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--port", type=int, default=None,
                       help="port to listen on (default $PORT, else 8787; 0: one the OS picks, printed first)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1; 0.0.0.0 in a container)")
    serve.add_argument("--public-url", metavar="URL",
                       help="where Stripe reaches this service (e.g. https://sync.example.com): registers a "
                            "managed webhook for <URL>/webhooks")
    serve.add_argument("--sync-interval", metavar="TIME", default=None,
                       help=f"incremental sync period across all serve processes: seconds, or 90s, 15m, 1h; "
                            f"0 for none (env {INTERVAL_VARIABLE}, default 15m)")
    serve.add_argument("--sync-objects", default="all", metavar="OBJECTS",
                       help="what the scheduled sync covers: all (default) or types separated by commas")
    serve.add_argument("--verify-interval", metavar="TIME", default=None,
                       help="a sampled verify of the scheduled sync's objects this often, across all serve "
                            "processes (e.g. 24h; default 0: none); drift goes to the metrics and screen 1")
    serve.add_argument("--verify-sample", type=int, default=None, metavar="N",
                       help="objects a type each scheduled verify compares: the newest N and N random stored "
                            "rows (default 100)")
    serve.add_argument("--verify-repair", action="store_true",
                       help="store Stripe's state for what a scheduled verify finds (no-lost-update rule)")
    serve.add_argument("--no-catch-up", action="store_true", help="do not apply missed events on start")
    serve.add_argument("--drain-seconds", type=float, default=None, metavar="S",
                       help="longest drain after SIGTERM (default 25)")


class _ServeProgress(ProgressSink):
    """Deliveries and catch-up events into the metrics; the engine's messages onto stderr."""

    def __init__(self, out: Output, metrics: ServiceMetrics) -> None:
        self.out = out
        self.metrics = metrics

    def event_received(self, event_id: str, event_type: str, outcome: str, status: int | None = None) -> None:
        self.metrics.event_received(event_id, event_type, outcome, status)

    def message(self, level: str, text: str) -> None:
        self.out.log(f"{level}: {text}" if level != "info" else text)


async def cmd_serve(args: argparse.Namespace, config: SyncConfig, out: Output) -> int:
    from stripe_sync_core.masking import mask_secret
    from stripe_sync_core.service import (
        DEFAULT_DRAIN_SECONDS,
        DEFAULT_VERIFY_SAMPLE,
        ServiceOptions,
        SyncService,
        parse_interval,
    )
    from stripe_sync_core.service_metrics import ServiceMetrics

    from .headless import UsageError, _with_engine, split_names

    port = args.port
    if port is None:
        port = int(os.environ[PORT_VARIABLE]) if os.environ.get(PORT_VARIABLE, "").isdigit() else config.listener_port
    objects: str | tuple[str, ...] = "all"
    if args.sync_objects != "all":
        from stripe_sync_core.backfill import tables_for

        objects = tuple(split_names([args.sync_objects]))
        tables_for(list(objects))
    options = ServiceOptions(
        api_key=os.environ.get(API_KEY_VARIABLE) or None,
        sync_interval_seconds=parse_interval(args.sync_interval if args.sync_interval is not None
                                             else os.environ.get(INTERVAL_VARIABLE)),
        sync_objects=objects,
        drain_seconds=args.drain_seconds if args.drain_seconds is not None else DEFAULT_DRAIN_SECONDS,
        verify_interval_seconds=parse_interval(args.verify_interval, what="verify interval") if args.verify_interval is not None else 0.0,
        verify_sample=args.verify_sample if args.verify_sample is not None else DEFAULT_VERIFY_SAMPLE,
        verify_repair=args.verify_repair)
    if args.drain_seconds is not None and args.drain_seconds <= 0:
        raise UsageError("--drain-seconds must be more than 0")
    metrics = ServiceMetrics()

    async def body(sync: StripeSync) -> int:
        import asyncio  # here, not at the top: `--help` builds the parser from this module
        import contextlib
        import signal

        def make_listener(**kwargs: Any) -> Any:
            return sync.listener(host=args.host, port=port, public_url=args.public_url,
                                 catch_up=not args.no_catch_up, **kwargs)

        service = SyncService(sync.context, sync.backfill, make_listener, metrics, options, report=out.data)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for stop in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(stop, stopping.set)
        state = await service.start()
        local = f"http://{args.host}:{service.listener.port}"
        out.data({"kind": "serving", "url": local, "port": service.listener.port,
                  "webhook_url": state.webhook_url, "webhook_id": state.webhook_id,
                  "api": "on" if options.api_key else "off",
                  "api_key": mask_secret(options.api_key) if options.api_key else None,
                  "sync_interval_seconds": options.sync_interval_seconds},
                 text=f"Serving on {local}: POST /webhooks, GET /health; "
                      + ("POST /sync, POST /sync/single/{id}, GET /metrics with the bearer token"
                         if options.api_key else f"API and /metrics off (set {API_KEY_VARIABLE})")
                      + (f"; webhook {state.webhook_id} for {state.webhook_url}" if state.webhook_id else "")
                      + (f"; incremental sync every {options.sync_interval_seconds:g} s"
                         if options.sync_interval_seconds else "; no scheduled sync"))
        await stopping.wait()
        started = loop.time()
        out.log("draining: new requests get 503, running syncs go back to pending, deliveries in flight finish")
        try:
            await asyncio.wait_for(service.drain(), options.drain_seconds)
        except TimeoutError:
            out.log(f"drain took over {options.drain_seconds:g} s: stopping anyway (Stripe retries what was "
                    "not answered; chunks left running resume after their lease)")
        out.data({"kind": "drained", "seconds": round(loop.time() - started, 3)},
                 text=f"drained in {loop.time() - started:.2f} s")
        return 0

    progress = _ServeProgress(out, metrics)
    return await _with_engine(config, out, body, progress=progress, needs_stripe=True)
