"""Standalone server: ``python -m stripe_sync_emulator`` and the project CLI's ``emulator`` command."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

# The project CLI builds its parser (and so `--help`) with `add_emulator_arguments`: the emulator
# itself (aiohttp, its generators) is imported only when one is built.
if TYPE_CHECKING:
    from .emulator import StripeEmulator


def add_emulator_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's flags to a parser (used by ``stripe-sync-tui --headless emulator``)."""
    g = parser.add_argument_group("Stripe API emulator")
    g.add_argument("--port", type=int, default=12111, help="port on 127.0.0.1 (0: any free port; default 12111)")
    g.add_argument("--seed", type=int, default=1, help="data seed (same seed and sizes: same objects)")
    g.add_argument("--customers", type=int, default=1000, help="customers; every other type scales from it")
    g.add_argument("--start", default=None, help="first created date (YYYY-MM-DD or epoch; default end - 365 days)")
    g.add_argument("--end", default=None, help="last created date (YYYY-MM-DD or epoch; default today 00:00 UTC)")
    g.add_argument("--connected-accounts", type=int, default=0, help="Connect accounts, each with its own data")
    g.add_argument("--rate-limit", default="auto",
                   help="off, auto (Stripe's preset for the key's mode), test (25/s), live (100/s) or N per second")
    g.add_argument("--error-rate", type=float, default=0.0, help="fraction of requests answered 500 (0..1)")
    g.add_argument("--latency-ms", type=float, default=0.0, help="added latency per request")
    g.add_argument("--accept-keys", default="any", metavar="any|own|KEY[,KEY...]",
                   help="keys answered as valid: any well-formed key (default), only the emulator's own "
                        "(printed at start), or the listed ones; others get Stripe's 401")
    g.add_argument("--webhook-retry-base-delay", type=float, default=1.0, help="first webhook retry delay, seconds")
    g.add_argument("--sigma-polls", type=int, default=None,
                   help="Sigma: retrievals a query run answers 'running' before its outcome (default 2)")
    g.add_argument("--sigma-rows", action="append", default=None, metavar="TABLE=N",
                   help="Sigma: N extra synthetic rows in a reporting table (repeatable), e.g. balance_transactions=1000000")
    g.add_argument("--sigma-inaccessible", default=None, metavar="TABLE[,TABLE...]",
                   help="Sigma: reporting tables the account cannot read")
    g.add_argument("--sigma-failing", default=None, metavar="TABLE[,TABLE...]",
                   help="Sigma: reporting tables whose queries fail")


def build_from_args(args: argparse.Namespace) -> StripeEmulator:
    from .emulator import StripeEmulator, to_epoch

    return StripeEmulator(
        seed=args.seed, customers=args.customers, start=to_epoch(args.start), end=to_epoch(args.end),
        connected_accounts=args.connected_accounts, rate_limit=args.rate_limit, error_rate=args.error_rate,
        latency_ms=args.latency_ms, port=args.port,
        accept_keys=_accepted_keys(getattr(args, "accept_keys", "any")),
        webhook_retry_base_delay=getattr(args, "webhook_retry_base_delay", 1.0),
        sigma=_sigma_settings(args),
    )


def _sigma_settings(args: argparse.Namespace) -> dict[str, object]:
    rows: dict[str, int] = {}
    for item in getattr(args, "sigma_rows", None) or []:
        table, sep, n = item.partition("=")
        if not sep or not n.strip().isdigit():
            raise ValueError(f"--sigma-rows takes TABLE=N, not {item!r}")
        rows[table.strip()] = int(n)
    settings = {"polls": getattr(args, "sigma_polls", None), "synthetic_rows": rows or None,
                "inaccessible_tables": getattr(args, "sigma_inaccessible", None),
                "failing_tables": getattr(args, "sigma_failing", None)}
    return {k: v for k, v in settings.items() if v is not None}


def _accepted_keys(value: str) -> str | list[str]:
    return value if value in ("any", "own") else [key.strip() for key in value.split(",") if key.strip()]


def run_from_args(args: argparse.Namespace) -> int:
    """Build, serve on 127.0.0.1 until Ctrl-C (exit 0). Prints the API base and a test key."""
    try:
        emu = build_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import asyncio
    import signal

    from .emulator import tune_gc

    tune_gc()

    async def serve() -> None:
        stop = asyncio.Event()
        try:  # a service manager's SIGTERM stops as cleanly as Ctrl-C
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-POSIX
            pass
        await emu.start_async()
        print(f"Stripe API emulator listening on {emu.api_base}", flush=True)
        print(f"API key: {emu.secret_key}", flush=True)
        print(f"Live key (Sigma answers live keys only): {emu.live_secret_key}", flush=True)
        print(f"Account: {emu.account_id}" + (f" (connected: {', '.join(emu.connected_account_ids)})"
                                               if emu.connected_account_ids else ""), flush=True)
        print(f"Objects: {emu.total_objects()} generated in {emu.build_seconds:.1f}s; control API at "
              f"{emu.api_base}/_emulator/info", flush=True)
        try:
            await stop.wait()
        finally:
            await emu.close_async()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stripe_sync_emulator", description="Local Stripe API emulator")
    add_emulator_arguments(parser)
    return run_from_args(parser.parse_args(argv))
