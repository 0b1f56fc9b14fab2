"""Headless commands for Connect platforms: `backfill ... --connected` / `--account acct_...` (one run per
connected account, under its `Stripe-Account` header) and the row counts `accounts` shows."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stripe_sync_core.errors import InvalidInput

if TYPE_CHECKING:  # the parser is built from here at start-up: nothing heavy at import time
    from stripe_sync_core import StripeSync

    from .output import HeadlessProgress, Output

EXIT_OK, EXIT_PARTIAL = 0, 3


def add_backfill_arguments(backfill: argparse.ArgumentParser) -> None:
    accounts = backfill.add_mutually_exclusive_group()
    accounts.add_argument("--connected", action="store_true",
                          help="every connected account of the platform (listed through /v1/accounts), one run "
                               "each under its Stripe-Account header; with --join, work their open runs")
    accounts.add_argument("--account", action="append", metavar="ACCT",
                          help="a connected account (acct_...), under its Stripe-Account header; repeat or "
                               "separate with commas for several")


def wants_accounts(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "connected", False) or getattr(args, "account", None))


def account_ids(args: argparse.Namespace) -> list[str] | None:
    """The accounts `--account` names (None with --connected: every connected account)."""
    if not getattr(args, "account", None):
        return None
    from stripe_sync_core.connect import check_account_id

    from .headless import split_names

    ids = [check_account_id(name) for name in split_names(args.account)]
    if not ids:
        raise InvalidInput("--account needs an account id (acct_...)")
    return ids


async def backfill_accounts(sync: StripeSync, args: argparse.Namespace, out: Output, progress: HeadlessProgress,
                            objects: str | Sequence[str], created_gte: int | None, created_lte: int | None,
                            chunk: str | int | None) -> int:
    """Run (or join) the backfill of connected accounts and print each account's summary."""
    summaries = await sync.process_connected(objects, created_gte=created_gte, created_lte=created_lte,
                                             chunk=chunk, concurrency=args.concurrency,
                                             accounts=account_ids(args), join=args.join)
    progress.finish()
    errors = 0
    totals: dict[str, dict[str, Any]] = {}
    for account, summary in summaries.items():
        stored = sum(result.stored for result in summary.values())
        failed = sum(result.errors for result in summary.values())
        errors += failed
        statuses = {result.status for result in summary.values()}
        state = "complete" if statuses <= {"complete"} else ("error" if "error" in statuses else sorted(statuses)[0])
        run_id = next((result.run_id for result in summary.values() if result.run_id), None)
        if out.json_mode:
            for name, result in summary.items():
                out.data({"kind": "backfill", "account": account, "object": name, **result.to_dict()})
        out.data({"kind": "backfill_account", "account": account, "run_id": run_id, "stored": stored,
                  "errors": failed, "status": state},
                 text=f"{account:<24} run {run_id or '-'}  stored {stored:>9,}  errors {failed}  {state}"
                      + ("".join(f"  {m}" for r in summary.values() for m in r.error_messages[:1]) if not run_id else ""))
        for name, result in summary.items():
            total = totals.setdefault(name, {"stored": 0, "errors": 0})
            total["stored"] += result.stored
            total["errors"] += result.errors
    if not out.json_mode:
        out.log(f"{len(summaries)} account(s): "
                + ", ".join(f"{name} {t['stored']:,}" for name, t in totals.items() if t["stored"]))
    return EXIT_PARTIAL if errors else EXIT_OK


async def account_rows(sync: StripeSync, own: str | None, out: Output) -> list[dict[str, Any]]:
    """Every account in the database (the key's own first, then the connected ones) with its rows per
    account; with a key, the platform's connected accounts are listed from Stripe first (stored)."""
    from stripe_sync_core import status
    from stripe_sync_core.stripe_api import StripeApiError

    if own is not None:
        try:
            await sync.list_connected_accounts()
        except StripeApiError as error:  # not a platform, or a key that may not list accounts
            out.log(f"note: cannot list connected accounts ({error})")
    rows = await status.synced_account_rows(sync.database, own)
    counts = await status.account_row_counts(sync.database)
    for row in rows:
        row["rows"] = counts.get(row["id"], 0)
        row["connected"] = own is not None and not row["own"]
    rows.sort(key=lambda row: (not row["own"], row["id"]))
    return rows
