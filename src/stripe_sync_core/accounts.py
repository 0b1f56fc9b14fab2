"""Deleting everything synced for one account, safely: a dry run first, one transaction, no strays."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
from psycopg.rows import dict_row

from .errors import Refused
from .registry import REGISTRY
from .results import DeletionReport, ManagedWebhookRef
from .stripe_api import StripeApiError

if TYPE_CHECKING:
    from .context import EngineContext


class AccountDeletionRefused(Refused, RuntimeError):
    """The deletion was refused (an open sync run); nothing was deleted. `open_run_ids` names the runs."""

    def __init__(self, message: str, open_run_ids: list[int] | None = None) -> None:
        super().__init__(message)
        self.open_run_ids = open_run_ids or []


# Bookkeeping tables, deleted after the object tables; `_sync_obj_runs` goes with its runs (ON DELETE CASCADE).
_INTERNAL = (("_events", "account_id"), ("_dead_letters", "account_id"), ("_managed_webhooks", "account_id"),
             ("_sync_runs", "account_id"), ("_verify_results", "account_id"))


async def delete_synced_account_data(ctx: EngineContext, account_id: str, *, dry_run: bool = True,
                                     force: bool = False) -> DeletionReport:
    """See `StripeSync.dangerously_delete_synced_account_data`."""
    warnings: list[str] = []
    async with ctx.database.pool.connection() as conn:
        async with conn.transaction():
            cursor = conn.cursor(row_factory=dict_row)
            # Lock the account's runs so no run opens or closes while we decide and delete.
            await cursor.execute(
                "SELECT id, trigger, started_at FROM stripe._sync_runs WHERE account_id = %s "
                "AND closed_at IS NULL FOR UPDATE", (account_id,))
            open_runs = await cursor.fetchall()
            await cursor.execute("SELECT 1 FROM stripe.accounts WHERE id = %s", (account_id,))
            known = await cursor.fetchone() is not None
            if not known:
                warnings.append(f"no account {account_id} in the database")
            if open_runs:
                ids = [r["id"] for r in open_runs]
                message = f"{len(open_runs)} sync run(s) of {account_id} are open (run {', '.join(map(str, ids))})"
                if not force:
                    raise AccountDeletionRefused(
                        f"refused: {message}; abandon them first (abandon_open_runs: they are closed, their "
                        "stored rows stay until the deletion), let them finish, or force", ids)
                warnings.append(f"{message}: {'would be ' if dry_run else ''}deleted anyway (forced)")
            await cursor.execute(
                "SELECT id, url FROM stripe._managed_webhooks WHERE account_id = %s ORDER BY id", (account_id,))
            webhooks = await cursor.fetchall()
            await cursor.execute("SELECT count(*) AS n FROM stripe._sync_runs WHERE account_id = %s", (account_id,))
            runs = (await cursor.fetchone() or {"n": 0})["n"]

            # The dry run counts with the very statements' filters the deletion uses.
            counts = await _count_or_delete(conn, account_id, delete=not dry_run)
    removed: list[str] = []
    not_removed: list[str] = []
    if not dry_run:
        removed, not_removed = await _remove_webhooks_from_stripe(ctx, account_id, webhooks)
        warnings.extend(not_removed)
    return DeletionReport(
        account_id=account_id, dry_run=dry_run, deleted_record_counts=counts,
        managed_webhooks=[ManagedWebhookRef(w["id"], w["url"]) for w in webhooks], sync_runs=runs,
        webhooks_removed_from_stripe=removed, warnings=warnings)


async def _count_or_delete(conn: psycopg.AsyncConnection, account_id: str, *, delete: bool) -> dict[str, int]:
    """Rows of the account per table: counted, or deleted (children before parents, the account last)."""
    counts: dict[str, int] = {}
    object_tables = [t for t in reversed(REGISTRY) if t != "accounts"]
    for table in object_tables:
        counts[table] = await _rows(conn, f"stripe.{table}", "_account_id", account_id, delete)
    from .sigma import sigma_objects, sigma_table

    for name in sigma_objects():  # Sigma tables: listed where the account has rows
        rows = await _rows(conn, f'sigma."{sigma_table(name).pg_table}"', "_account_id", account_id, delete)
        if rows:
            counts[name] = rows
    for table, column in _INTERNAL:
        counts[table] = await _rows(conn, f"stripe.{table}", column, account_id, delete)
    counts["accounts"] = await _rows(conn, "stripe.accounts", "id", account_id, delete)
    return counts


async def _rows(conn: psycopg.AsyncConnection, table: str, column: str, account_id: str, delete: bool) -> int:
    if delete:
        cursor = await conn.execute(f"DELETE FROM {table} WHERE {column} = %s", (account_id,))
        return cursor.rowcount
    cursor = await conn.execute(f"SELECT count(*) FROM {table} WHERE {column} = %s", (account_id,))
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def _remove_webhooks_from_stripe(ctx: EngineContext, account_id: str,
                                       webhooks: list[dict]) -> tuple[list[str], list[str]]:
    removed: list[str] = []
    problems: list[str] = []
    if not webhooks:
        return removed, problems
    if ctx.stripe_client is None:
        return removed, [f"managed webhook {w['id']} was not removed from Stripe: no Stripe key configured"
                         for w in webhooks]
    for webhook in webhooks:
        try:
            await ctx.stripe.delete(f"/v1/webhook_endpoints/{webhook['id']}",
                                     account=ctx.account.header(account_id))
            removed.append(webhook["id"])
        except StripeApiError as error:
            if error.http_status == 404:
                removed.append(webhook["id"])  # already gone in Stripe
            else:
                problems.append(f"managed webhook {webhook['id']} was not removed from Stripe: {error}")
    return removed, problems
