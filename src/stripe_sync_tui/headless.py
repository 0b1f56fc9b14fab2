"""Headless commands: each parses its arguments, calls the core, and writes through `Output`."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only what every command needs is imported here: `--help` and the parser load this module, and each
# command imports what it uses inside its function (the Stripe SDK, psycopg, Alembic, aiohttp cost
# 0.1-0.3 s each; tests/test_startup.py checks what `--help` loads).
from stripe_sync_core.errors import ErrorKind, InvalidInput, StripeSyncError
from stripe_sync_core.masking import mask_database_url, mask_secret, mask_secrets_in

from .output import HeadlessProgress, Output

if TYPE_CHECKING:
    import asyncio

    from stripe_sync_core import DeletionReport, OpenRun, StripeSync
    from stripe_sync_core.config import SyncConfig
    from stripe_sync_core.listener import ListenerState, WebhookListener
    from stripe_sync_core.progress import ProgressSink

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class UsageError(InvalidInput):
    """A command was given bad input; exit code 2."""


EXIT_CODES: dict[ErrorKind, int] = {
    "refused": EXIT_USAGE, "invalid_input": EXIT_USAGE, "not_configured": EXIT_USAGE,
    "unavailable": EXIT_FAILED, "failed": EXIT_FAILED,
}
"""Each branch of the engine's error tree, mapped once to the exit code the README promises."""


def add_commands(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text, parents=parents,
                                   prog=f"stripe-sync-tui --headless {name}")

    command("migrate", "create or upgrade the `stripe` schema (safe to run twice or concurrently)")
    command("status", "schema revision, stored rows per table, open runs, last webhook event")
    command("accounts", "the key's account and every account with synced data")

    backfill = command("backfill", "copy existing Stripe objects into PostgreSQL (resumable)")
    backfill.add_argument("objects", nargs="*", metavar="OBJECT",
                          help="object types in any order (customers invoices charges; table names, Stripe "
                               "names or aliases; commas work too): one run covers them all; 'all' is every "
                               "type but connected accounts; Sigma tables as sigma.<table> "
                               "(sigma.invoice_line_items), or 'sigma' for every one")
    backfill.add_argument("--exclude", action="append", default=[], metavar="OBJECT",
                          help="leave these types out (repeat, or separate by commas), e.g. "
                               "all --exclude payment_methods,active_entitlements")
    backfill.add_argument("--since", metavar="DATE", help="only objects created on or after (YYYY-MM-DD)")
    backfill.add_argument("--until", metavar="DATE", help="only objects created on or before (YYYY-MM-DD)")
    backfill.add_argument("--chunk", default=None, metavar="SIZE",
                          help="date-range chunk: auto (default), day, week, month, or a number of days")
    backfill.add_argument("--concurrency", type=int, default=None, metavar="N", help="chunks fetched at once")
    backfill.add_argument("--join", action="store_true", help="add this process as a worker to the open run")
    backfill.add_argument("--sigma", action="store_true", default=None,
                          help="enable Stripe Sigma (env ENABLE_SIGMA): 'all' includes the Sigma tables (live keys only)")
    from .commands_connect import add_backfill_arguments

    add_backfill_arguments(backfill)

    plan = command("plan", "how long a full backfill takes at the key's Stripe rate limits: objects per type "
                           "(stored rows, else one list page each), requests per endpoint, duration")
    plan.add_argument("objects", nargs="*", metavar="OBJECT", default=["all"],
                      help="object types as for backfill (default: all)")
    plan.add_argument("--exclude", action="append", default=[], metavar="OBJECT", help="leave these types out")

    sync = command("sync", "fetch one object by id and store it (type from the id prefix)")
    sync.add_argument("id", help="a Stripe object id, e.g. cus_123")
    sync.add_argument("--sigma", action="store_true", default=None,
                      help="enable Stripe Sigma for this engine (env ENABLE_SIGMA); Sigma rows have no ids: "
                           "`backfill sigma` refreshes them")

    listen = command("listen", "serve the webhook listener (and an ngrok tunnel with a token)")
    listen.add_argument("--port", type=int, default=None, help="port to listen on (default 8787)")
    listen.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    listen.add_argument("--remove-webhook-on-exit", action="store_true",
                        help="delete the managed webhook endpoint when the listener stops")
    listen.add_argument("--stop-on-eof", action="store_true",
                        help="stop when stdin closes (how a parent process, the console, stops its listener; "
                             "it also stops if that parent dies)")
    listen.add_argument("--sigma", action="store_true", default=None,
                        help="also refresh the Stripe Sigma tables (env ENABLE_SIGMA): at start, then every "
                             "--sigma-every hours (live keys only)")
    listen.add_argument("--sigma-every", type=float, default=12.0, metavar="HOURS",
                        help="hours between Sigma refreshes while listening (default 12)")

    from .serve import add_serve_arguments

    add_serve_arguments(command("serve", "run as a service: webhooks, HTTP API, metrics, scheduled sync; "
                                         "SIGTERM drains"))

    webhooks = command("webhooks", "managed webhook endpoints: list, create, delete")
    webhook_commands = webhooks.add_subparsers(dest="webhooks_command", metavar="ACTION", required=True)
    webhook_commands.add_parser("list", help="list managed webhook endpoints", parents=parents)
    create = webhook_commands.add_parser("create", help="create (or reuse) a managed endpoint", parents=parents)
    create.add_argument("url")
    create.add_argument("--events", help="comma-separated event types (default: every supported type)")
    create.add_argument("--connect", action="store_true",
                        help="a Connect endpoint: the platform's connected accounts' events (stored under their account)")
    delete = webhook_commands.add_parser("delete", help="delete a managed endpoint", parents=parents)
    delete.add_argument("id")

    delete_account = command("delete-account", "delete all synced data of an account (dry run unless --yes); "
                             "refused while a backfill run of the account is open: --abandon-runs closes them first")
    delete_account.add_argument("account_id")
    delete_account.add_argument("--yes", action="store_true", help="execute the deletion")
    delete_account.add_argument("--dry-run", action="store_true",
                                help="print what would be deleted and exit 0 (for scripts; changes nothing)")
    delete_account.add_argument("--abandon-runs", action="store_true",
                                help="first close the account's open and interrupted runs as abandoned: their stored "
                                     "rows stay until the deletion, and a later backfill starts a new run (refused "
                                     "while a live worker holds one, unless --force)")
    delete_account.add_argument("--force", action="store_true",
                                help="delete even while a run of that account is open; with --abandon-runs, abandon "
                                     "runs a live worker holds too (it stops at its next page)")

    from .commands_verify import add_verify_command

    add_verify_command(command)

    emulator = command("emulator", "run the local Stripe API emulator (127.0.0.1 only)")
    try:
        from stripe_sync_emulator.cli import add_emulator_arguments
    except ImportError:  # pragma: no cover - the emulator ships with the package
        pass
    else:
        add_emulator_arguments(emulator)


def _config(args: argparse.Namespace) -> SyncConfig:
    from stripe_sync_core.config import load_config

    flags = {
        "database_url": getattr(args, "database_url", None),
        "stripe_secret_key": getattr(args, "stripe_key", None),
        "stripe_webhook_secret": getattr(args, "webhook_secret", None),
        "stripe_api_base": getattr(args, "stripe_api_base", None),
        "ngrok_auth_token": getattr(args, "ngrok_token", None),
        "enable_sigma": getattr(args, "sigma", None),
    }
    config_path = Path(args.config) if getattr(args, "config", None) else None
    return load_config(flags, config_path=config_path)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


def run(args: argparse.Namespace) -> int:
    """Run one headless command; map every expected failure to a clear message and an exit code."""
    import asyncio

    out = Output(json_mode=args.json)
    _setup_logging(args.verbose)
    try:
        config = _config(args)
        if args.command == "emulator":
            from stripe_sync_emulator.cli import run_from_args

            return run_from_args(args)
        handler = _HANDLERS[args.command]
        if args.demo:
            from .demo import demo_environment

            # Live changes only where they show (a listener): a one-shot command's result is then the
            # demo account's, whatever the machine's speed.
            with demo_environment(config, trickle=args.command in ("listen", "serve")) as demo_config:
                out.log(f"demo: Stripe emulator at {demo_config.stripe_api_base}, "
                        f"database {mask_database_url(demo_config.database_url or 'embedded')}")
                return asyncio.run(handler(args, demo_config, out))
        return asyncio.run(handler(args, config, out))
    except KeyboardInterrupt:
        out.log("interrupted: a running backfill is left resumable (run the same command again)")
        return EXIT_INTERRUPTED
    except StripeSyncError as error:
        out.log(f"error: {mask_secrets_in(str(error)) or type(error).__name__}")
        return EXIT_CODES[error.kind]
    except Exception as error:  # a bug: say so plainly; the traceback is one flag away
        if args.verbose:
            import traceback

            out.log(traceback.format_exc())
        out.log(f"error: unexpected {type(error).__name__}: {error} (run with -v for the traceback)")
        return EXIT_FAILED


def open_console(args: argparse.Namespace) -> int:
    from stripe_sync_core.config import ConfigError

    try:
        config = _config(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    from .app import run_console

    return run_console(config, read_only=args.read_only, demo=args.demo)


# -- commands ----------------------------------------------------------------------------------


async def _with_engine(config: SyncConfig, out: Output, body: Callable[[StripeSync], Awaitable[int]],
                       progress: ProgressSink | None = None, *, needs_stripe: bool = False) -> int:
    from stripe_sync_core import StripeSync

    if needs_stripe:  # the key and the API base first: a wrong one must not cost a migration
        await _check_stripe(config, out)
    url = await _migrated_database(config, out)
    async with StripeSync(config.with_overrides(database_url=url), progress=progress) as sync:
        return await body(sync)


async def _migrated_database(config: SyncConfig, out: Output) -> str:
    """The database's URL once its schema is current: Alembic is loaded only when it is not."""
    import asyncio

    from stripe_sync_core.embedded import resolve_database_url
    from stripe_sync_core.schema_version import schema_is_current

    url = await asyncio.to_thread(resolve_database_url, config.database_url)
    if not await asyncio.to_thread(schema_is_current, url):
        from stripe_sync_core import run_migrations

        before, after = await asyncio.to_thread(run_migrations, url)
        if before != after:
            out.log(f"migrated the stripe schema to revision {after}")
    return url


async def _check_stripe(config: SyncConfig, out: Output) -> None:
    """Reach Stripe with the key before anything else: within 10 s, saying so while it retries."""
    from stripe_sync_core.stripe_api import StripeApi, StripeKeyMissing

    if not config.stripe_secret_key:
        raise StripeKeyMissing()
    api = StripeApi(config)
    try:
        await api.check_reachable(on_retry=lambda attempt, reason, left: out.log(
            f"Stripe at {api.base_url} is not answering ({reason}, try {attempt}); retrying for {left:.0f} s more"))
    finally:
        await api.close()


async def cmd_migrate(args: argparse.Namespace, config: SyncConfig, out: Output) -> int:
    import asyncio

    from stripe_sync_core import run_migrations
    from stripe_sync_core.embedded import resolve_database_url

    url = await asyncio.to_thread(resolve_database_url, config.database_url)
    before, after = await asyncio.to_thread(run_migrations, url)
    out.data({"kind": "migrate", "database": mask_database_url(url), "revision_before": before,
              "revision": after, "changed": before != after},
             text=f"stripe schema at revision {after} ({'upgraded from ' + str(before) if before != after else 'unchanged'})"
                  f" in {mask_database_url(url)}")
    return EXIT_OK


async def cmd_status(args: argparse.Namespace, config: SyncConfig, out: Output) -> int:
    # The database alone: no engine, no Stripe client (the SDK and aiohttp are most of a start-up).
    from stripe_sync_core import status
    from stripe_sync_core.database import Database

    from .format import mode_label

    db = Database(await _migrated_database(config, out), max_size=1)
    await db.open()
    try:
        counts = await status.table_row_counts(db)
        counts.update(await status.sigma_row_counts(db))
        runs = await status.open_runs(db)
        last_event = await status.last_event(db)
        dead_letter_count, dead = await status.dead_letters(db)
        revision = await status.schema_revision(db)
        out.data({"kind": "status", "database": db.display_url, "schema_revision": revision,
                  "stripe_key": mask_secret(config.stripe_secret_key),
                  "mode": mode_label(config.livemode), "open_runs": len(runs), "last_event": last_event,
                  "dead_letters": dead_letter_count},
                 text=f"database {db.display_url}  schema {revision or '-'}  "
                      f"key {mask_secret(config.stripe_secret_key) or '-'}  "
                      f"mode {mode_label(config.livemode)}  open runs {len(runs)}  "
                      f"last event {last_event['type'] + ' at ' + str(last_event['received_at']) if last_event else '-'}"
                      f"  dead letters {dead_letter_count}")
        out.table([{"object": t, "rows": n} for t, n in counts.items() if n], ["object", "rows"], kind="table_rows")
        if runs:
            out.table(runs, ["run_id", "account_id", "status", "started_at", "total_processed", "error_count"],
                      kind="open_run")
        if dead:  # acknowledged to Stripe but not stored: the operator decides (bodies in stripe._dead_letters)
            out.table(dead, ["event_id", "event_type", "received_at", "deliveries", "reason", "body_bytes"],
                      kind="dead_letter")
        return EXIT_OK
    finally:
        await db.close()


async def cmd_accounts(args: argparse.Namespace, config: SyncConfig, out: Output) -> int:

    async def body(sync: StripeSync) -> int:
        from .commands_connect import account_rows

        own = (await sync.get_current_account())["id"] if config.stripe_secret_key else None
        rows = await account_rows(sync, own, out)
        out.table(rows, ["id", "email", "country", "own", "connected", "rows", "synced_at"], kind="account")
        return EXIT_OK

    return await _with_engine(config, out, body, needs_stripe=bool(config.stripe_secret_key))


def split_names(values: Iterable[str]) -> list[str]:
    """Names given as separate arguments, separated by commas, or both (`a b,c`), blanks dropped."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def backfill_objects(objects: list[str], exclude: list[str], *, join: bool = False) -> str | list[str]:
    """What `backfill OBJECT... [--exclude OBJECT...]` asks for: `all`, or the registry tables named
    (by table, Stripe name or alias, in any order: the run is the same). An unknown name is a usage
    error naming the supported ones."""
    from stripe_sync_core.backfill import ALL, tables_for

    names, left_out = split_names(objects), split_names(exclude)
    if not names:
        if join:
            return ALL  # `--join` works the open run, whatever its objects
        raise UsageError("name the objects to backfill (customers invoices ..., or all)")
    selection = ALL if ALL in names else names
    if not left_out:
        return selection if selection == ALL else tables_for(selection)
    chosen, excluded = tables_for(selection), set(tables_for(left_out))
    if not excluded & set(chosen):
        raise UsageError(f"--exclude {', '.join(sorted(excluded))}: not among the objects to backfill")
    kept = [table for table in chosen if table not in excluded]
    if not kept:
        raise UsageError("--exclude leaves no object to backfill")
    return kept


async def cmd_backfill(args: argparse.Namespace, config: SyncConfig, out: Output) -> int:
    objects = backfill_objects(args.objects, args.exclude, join=args.join)
    from stripe_sync_core.chunking import parse_created_bound

    created_gte, created_lte = parse_created_bound(args.since), parse_created_bound(args.until, end=True)
    if created_gte is not None and created_lte is not None and created_gte > created_lte:
        raise UsageError("--since is after --until")
    chunk: str | int | None = args.chunk
    if isinstance(chunk, str) and chunk.isdigit():
        chunk = int(chunk)
    elif chunk not in (None, "auto", "day", "week", "month"):
        raise UsageError(f"invalid --chunk {chunk!r}: auto, day, week, month or a number of days")
    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    from .commands_connect import account_ids, backfill_accounts, wants_accounts

    account_ids(args)  # a malformed --account fails before any connection
    progress = HeadlessProgress(out)

    async def body(sync: StripeSync) -> int:
        from stripe_sync_core.gc_tuning import fewer_collections

        progress.api_stats = sync.stripe.stats  # its 429s and retries ride on the request_rate records
        with fewer_collections():  # this process does nothing else meanwhile
            if wants_accounts(args):
                return await backfill_accounts(sync, args, out, progress, objects, created_gte, created_lte, chunk)
            if args.join:
                summary = await sync.join_open_run(args.concurrency)
            else:
                summary = await sync.process_until_done(objects, created_gte=created_gte,
                                                        created_lte=created_lte, chunk=chunk,
                                                        concurrency=args.concurrency)
        progress.finish()
        errors = 0
        for name, result in summary.items():
            errors += result.errors
            out.data({"kind": "backfill", "object": name, **result.to_dict()},
                     text=f"{name:<28} stored {result.stored:>9,}  errors {result.errors}  {result.duration:.1f}s")
        return EXIT_PARTIAL if errors else EXIT_OK

    return await _with_engine(config, out, body, progress=progress, needs_stripe=True)


async def cmd_plan(args: argparse.Namespace, config: SyncConfig, out: Output) -> int:
    from stripe_sync_core.backfill import tables_for

    from .format import mode_label

    tables = tables_for(backfill_objects(args.objects, args.exclude))

    async def body(sync: StripeSync) -> int:
        from stripe_sync_core.estimate import describe, estimate_from_stripe

        account = await sync.get_current_account()
        created = account.get("created")
        estimate = await estimate_from_stripe(sync.stripe, sync.database, tables, livemode=config.livemode,
                                              floor=created if isinstance(created, int) else None)
        out.table([{"object": c.table, "objects": c.objects, "counted": c.source} for c in estimate.counts],
                  ["object", "objects", "counted"], kind="plan_count")
        out.table([{"endpoint": e.endpoint, "requests": e.requests, "why": e.why} for e in estimate.endpoints],
                  ["endpoint", "requests", "why"], kind="plan_endpoint")
        out.data({"kind": "plan_estimate", **{k: v for k, v in estimate.to_dict().items()
                                              if k not in ("counts", "endpoints")}},
                 text=describe(estimate, mode_label(config.livemode)))
        return EXIT_OK

    return await _with_engine(config, out, body, needs_stripe=True)


async def cmd_sync(args: argparse.Namespace, config: SyncConfig, out: Output) -> int:
    from stripe_sync_core.registry import object_type_for_id

    object_type_for_id(args.id)

    async def body(sync: StripeSync) -> int:
        result = await sync.sync_single_entity(args.id)
        out.data({"kind": "sync", **result.to_dict()})
        return EXIT_OK

    return await _with_engine(config, out, body, needs_stripe=True)


async def cmd_listen(args: argparse.Namespace, config: SyncConfig, out: Output) -> int:
    """Serve until interrupted. With --json, stdout streams one line per delivery (`event`) and the
    listener's state whenever it changes (`listener_state`: URLs, webhook, catch-up, counters): the
    stream the console follows its listener process by."""
    import asyncio

    from stripe_sync_core.listener import ready_banner

    port = config.listener_port if args.port is None else args.port  # 0: a port the OS picks

    async def body(sync: StripeSync) -> int:
        listener = sync.listener(host=args.host, port=port, remove_webhook_on_exit=args.remove_webhook_on_exit)
        state = await listener.start(wait_for_catch_up=False)
        out.data({"kind": "listening", "local_url": state.local_url, "public_url": state.public_url,
                  "webhook_url": state.webhook_url, "webhook_id": state.webhook_id,
                  "catch_up": state.catch_up.state},
                 text=ready_banner(state.local_url, state.public_url, state.webhook_url, state.webhook_id))
        stopped = asyncio.Event()
        if args.stop_on_eof:
            _stop_when_stdin_closes(stopped)
        _check_webhook_on_sigusr1(listener)
        refresh = asyncio.create_task(_refresh_sigma(sync, out, args.sigma_every)) if config.enable_sigma else None
        try:
            if out.json_mode:
                await _stream_listener_state(listener, out, stopped)
            else:
                await stopped.wait()
        finally:
            if refresh is not None:
                refresh.cancel()
                await asyncio.gather(refresh, return_exceptions=True)
            await listener.stop()
        return EXIT_OK

    return await _with_engine(config, out, body, progress=_ListenProgress(out), needs_stripe=True)


async def _refresh_sigma(sync: StripeSync, out: Output, every_hours: float) -> None:
    """While listening: refresh the Sigma tables (an incremental backfill run) now and every `every_hours`;
    a failure is reported and the next refresh comes on time (Sigma data lands hours late anyway)."""
    from stripe_sync_core.sigma import SIGMA

    while True:
        try:
            summary = await sync.process_until_done(SIGMA)
            stored = sum(result.stored for result in summary.values())
            out.data({"kind": "sigma_refreshed", "stored": stored,
                      "errors": sum(result.errors for result in summary.values())},
                     text=f"Sigma tables refreshed: {stored:,} row(s)")
        except StripeSyncError as error:
            out.log(f"Sigma refresh failed: {mask_secrets_in(str(error))}")
        await asyncio.sleep(max(every_hours, 0.001) * 3600)


LISTENER_STATE_INTERVAL = 0.25
"""Seconds between looks at the listener's state; a `listener_state` line is written when it changed."""


def listener_state_record(state: ListenerState) -> dict[str, Any]:
    return {"kind": "listener_state", **dataclasses.asdict(state)}


async def _stream_listener_state(listener: WebhookListener, out: Output, stopped: asyncio.Event) -> None:
    import asyncio

    last: dict[str, Any] | None = None
    while not stopped.is_set():
        record = listener_state_record(listener.state)
        if record != last:
            out.data(record)
            last = record
        try:
            await asyncio.wait_for(stopped.wait(), LISTENER_STATE_INTERVAL)
        except TimeoutError:
            pass


def _check_webhook_on_sigusr1(listener: WebhookListener) -> None:
    """SIGUSR1 asks the listener to check its managed webhook now, as the console does after a deletion
    removed one from Stripe (the listener re-registers or stops; its state says which)."""
    import asyncio

    loop = asyncio.get_running_loop()
    checks: set[asyncio.Task] = set()

    def check_now() -> None:
        task = loop.create_task(listener.check_webhook())
        checks.add(task)
        task.add_done_callback(checks.discard)

    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):  # not POSIX, not main thread
        loop.add_signal_handler(signal.SIGUSR1, check_now)


def _stop_when_stdin_closes(stopped: asyncio.Event) -> None:
    import asyncio

    loop = asyncio.get_running_loop()

    def watch() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        loop.call_soon_threadsafe(stopped.set)

    # A daemon thread: a read blocked on stdin must not keep the process alive once it stops otherwise.
    threading.Thread(target=watch, name="stdin-eof", daemon=True).start()


class _ListenProgress(HeadlessProgress):
    def event_received(self, event_id: str, event_type: str, outcome: str, status: int | None = None) -> None:
        if self.output.json_mode:
            self.output.data({"kind": "event", "id": event_id, "type": event_type, "outcome": outcome,
                              "status": status})
        else:
            self.output.data({}, text=f"--> {event_type} [{event_id}]\n<-- [{status}] {outcome}")


async def cmd_serve(args: argparse.Namespace, config: SyncConfig, out: Output) -> int:
    from .serve import cmd_serve as serve

    return await serve(args, config, out)


async def cmd_webhooks(args: argparse.Namespace, config: SyncConfig, out: Output) -> int:
    async def body(sync: StripeSync) -> int:
        if args.webhooks_command == "list":
            rows = await sync.list_managed_webhooks()
            out.table([_webhook_row(w) for w in rows], ["id", "url", "status", "events", "connect", "created"],
                      kind="webhook")
        elif args.webhooks_command == "create":
            events = [e.strip() for e in args.events.split(",")] if args.events else None
            webhook = await sync.find_or_create_managed_webhook(args.url, events, connect=args.connect)
            out.data({"kind": "webhook", **_webhook_row(webhook)})
        else:
            if await sync.get_managed_webhook(args.id) is None:
                raise UsageError(f"no managed webhook {args.id}")
            await sync.delete_managed_webhook(args.id)
            out.data({"kind": "webhook_deleted", "id": args.id}, text=f"deleted {args.id}")
        return EXIT_OK

    return await _with_engine(config, out, body, needs_stripe=True)


def _webhook_row(webhook: dict) -> dict:
    events = webhook.get("enabled_events") or []
    return {"id": webhook.get("id"), "url": webhook.get("url"), "status": webhook.get("status"),
            "events": len(events) if isinstance(events, list) else events,
            "created": webhook.get("created_at") or webhook.get("created"), "connect": bool(webhook.get("connect")),
            "secret": mask_secret(webhook.get("secret"))}


async def cmd_delete_account(args: argparse.Namespace, config: SyncConfig, out: Output) -> int:
    interactive = sys.stdin.isatty() and sys.stdout.isatty()

    async def body(sync: StripeSync) -> int:
        runs = await sync.open_runs(args.account_id)
        if runs:
            out.table([_open_run_row(run) for run in runs], list(_open_run_row(runs[0])), kind="open_run")
        if args.dry_run:  # counts only, changes nothing (no run abandoned): exit 0 for scripts
            preview = await sync.dangerously_delete_synced_account_data(args.account_id, dry_run=True, force=True)
            _print_deletion(out, preview, dry_run=True)
            return EXIT_OK
        if runs:
            if args.abandon_runs:
                abandoned = await sync.abandon_open_runs(args.account_id, force=args.force)
                for run in abandoned:
                    out.data({"kind": "run_abandoned", "run_id": run.run_id, "chunks_left": run.chunks_left},
                             text=f"abandoned run {run.run_id}: closed, its {run.chunks_left:,} chunk(s) left "
                                  "will not be fetched; its stored rows go with the deletion")
            elif not args.force:
                out.log(f"refused: {len(runs)} backfill run(s) of {args.account_id} are open (listed above): "
                        "pass --abandon-runs to close them as abandoned first, or let them finish")
                return EXIT_USAGE
        preview = await sync.dangerously_delete_synced_account_data(args.account_id, dry_run=True,
                                                                    force=args.force)
        if preview.total_rows == 0:
            out.log(f"nothing to delete: no synced data of {args.account_id}")
            return EXIT_USAGE
        if not args.yes:
            _print_deletion(out, preview, dry_run=True)
            if not interactive:
                out.log("refused: this was a dry run; pass --yes to delete, or --dry-run for the counts "
                        "alone (no terminal to confirm on)")
                return EXIT_USAGE
            answer = input(f"Type the account id ({args.account_id}) to delete its data: ").strip()
            if answer != args.account_id:
                out.log("cancelled: nothing deleted")
                return EXIT_USAGE
        result = await sync.dangerously_delete_synced_account_data(args.account_id, dry_run=False,
                                                                   force=args.force)
        _print_deletion(out, result, dry_run=False)
        return EXIT_OK

    return await _with_engine(config, out, body)


def _open_run_row(run: OpenRun) -> dict[str, Any]:
    return {"run_id": run.run_id, "state": run.state, "objects": run.objects, "started_at": run.started_at,
            "chunks_done": run.chunks_done, "chunks_left": run.chunks_left, "workers": run.workers}


def _print_deletion(out: Output, result: DeletionReport, *, dry_run: bool) -> None:
    counts = result.deleted_record_counts
    verb = "would delete" if dry_run else "deleted"
    out.data({"kind": "account_deletion", **result.to_dict()},
             text=f"account {result.account_id}: {verb} {result.total_rows:,} row(s)")
    if not out.json_mode:
        out.table([{"table": t, "rows": n} for t, n in counts.items() if n], ["table", "rows"], kind="count")
        for warning in result.warnings:
            out.log(f"warning: {warning}")


async def cmd_verify(args: argparse.Namespace, config: SyncConfig, out: Output) -> int:
    from .commands_verify import cmd_verify as verify

    return await verify(args, config, out, _with_engine)


_HANDLERS: dict[str, Callable[[argparse.Namespace, SyncConfig, Output], Coroutine[Any, Any, int]]] = {
    "migrate": cmd_migrate,
    "status": cmd_status,
    "accounts": cmd_accounts,
    "backfill": cmd_backfill,
    "plan": cmd_plan,
    "sync": cmd_sync,
    "listen": cmd_listen,
    "serve": cmd_serve,
    "webhooks": cmd_webhooks,
    "delete-account": cmd_delete_account,
    "verify": cmd_verify,
}

__all__ = ["add_commands", "open_console", "run"]
