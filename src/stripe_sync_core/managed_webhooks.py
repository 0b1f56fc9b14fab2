"""Webhook endpoints this deployment creates in Stripe and records in `stripe._managed_webhooks`.

An endpoint is *managed* when its metadata says `managed_by=stripe-sync`; it belongs to *this*
deployment when its `deployment_id` metadata is ours. The deployment id is stable per database: the one
recorded on existing rows, else derived from the PostgreSQL cluster's system identifier and the
database's oid. Cleanup only ever deletes endpoints that carry our deployment id, never another
deployment's and never endpoints without our marker (the user's own).

Every change runs under one PostgreSQL advisory lock per account (held in a transaction), so
concurrent callers in any number of processes end with one endpoint per URL; the table's unique
(url, account_id) is the second line of defence. Signing secrets are stored in the table and never
printed: what callers get shows them masked.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row

from .errors import Refused
from .masking import mask_secret
from .registry import EVENT_TYPES
from .request_budget import in_lane
from .stripe_api import ObjectNotFound

if TYPE_CHECKING:
    from .context import EngineContext

MANAGED_BY = "stripe-sync"
ENDPOINTS_PATH = "/v1/webhook_endpoints"

NOT_SUBSCRIBABLE = frozenset({"invoiceitem.updated"})
"""Routed for payloads of older API versions, but `enabled_events` no longer accepts them."""


def default_enabled_events() -> list[str]:
    """Every event type the registry routes (that Stripe lets an endpoint subscribe to)."""
    return sorted(set(EVENT_TYPES) - NOT_SUBSCRIBABLE)


class ManagedWebhookError(Refused, RuntimeError):
    """A managed-webhook operation was refused; the message says why."""


class ManagedWebhook(dict):
    """A managed endpoint as stored. `["secret"]` is masked; the signing secret is `.signing_secret`."""

    def __init__(self, row: dict) -> None:
        self.signing_secret: str = row["secret"]
        events = row.get("enabled_events")
        super().__init__(
            id=row["id"], url=row["url"], status=row["status"], account_id=row["account_id"],
            deployment_id=row["deployment_id"],
            enabled_events=json.loads(events) if isinstance(events, str) else list(events or []),
            secret=mask_secret(row["secret"]), created_at=row.get("created_at"), connect=bool(row.get("connect")),
        )

    @property
    def id(self) -> str:
        return self["id"]

    @property
    def url(self) -> str:
        return self["url"]

    def __repr__(self) -> str:
        return f"ManagedWebhook({dict.__repr__(self)})"


_COLUMNS = "id, account_id, url, enabled_events, secret, status, deployment_id, created_at, connect"


class ManagedWebhooks:
    """Create, find, list and delete this deployment's webhook endpoints."""

    def __init__(self, ctx: EngineContext, *, on_secrets_changed: Callable[[], None] = lambda: None) -> None:
        self.ctx = ctx
        self.log = ctx.log
        self.on_secrets_changed = on_secrets_changed
        """Called once a new endpoint's signing secret is recorded (the webhook processor reloads its secrets)."""
        self._deployment_id: str | None = None

    # -- identity ----------------------------------------------------------------------------------

    async def deployment_id(self) -> str:
        """This deployment's id: the one on recorded endpoints, else derived from the database."""
        if self._deployment_id is None:
            row = await self.ctx.database.fetch_one(
                "SELECT deployment_id FROM stripe._managed_webhooks ORDER BY created_at, id LIMIT 1")
            if row is not None:
                self._deployment_id = row["deployment_id"]
            else:
                self._deployment_id = await self._derived_deployment_id()
        return self._deployment_id

    async def _derived_deployment_id(self) -> str:
        try:
            row = await self.ctx.database.fetch_one(
                "SELECT (SELECT system_identifier FROM pg_control_system())::text AS cluster, "
                "(SELECT oid FROM pg_database WHERE datname = current_database())::text AS db")
        except psycopg.errors.InsufficientPrivilege:
            row = await self.ctx.database.fetch_one(
                "SELECT coalesce(host(inet_server_addr()), 'local') || ':' || "
                "coalesce(inet_server_port(), 0)::text AS cluster, current_database() AS db")
        assert row is not None
        digest = hashlib.sha256(f"{row['cluster']}/{row['db']}".encode()).hexdigest()
        return f"dep_{digest[:16]}"

    # -- public operations -------------------------------------------------------------------------

    @in_lane("interactive")
    async def find_or_create(self, url: str, enabled_events: builtins.list[str] | None = None, *,
                             connect: bool = False) -> ManagedWebhook:
        """Reuse this deployment's enabled endpoint for `url`, else create one (after removing orphans).

        `connect` makes it a Connect endpoint (`connect: true`): Stripe sends it the events of the
        platform's connected accounts (each with `account`), not the platform's own."""
        wanted = sorted(set(enabled_events or default_enabled_events()))
        account = await self.ctx.account.own_id()
        deployment = await self.deployment_id()
        async with self._locked(account) as conn:
            row = await _row_for_url(conn, url, account, connect)
            if row is not None:
                reused = await self._reuse(conn, row, wanted)
                if reused is not None:
                    return reused
            await self._cleanup(conn, account, deployment)
            return await self._create(conn, url, wanted, account, deployment, connect)

    @in_lane("interactive")
    async def create(self, url: str, enabled_events: builtins.list[str] | None = None, *,
                     connect: bool = False) -> ManagedWebhook:
        """Create a new managed endpoint for `url` (refused when one is already recorded for it)."""
        wanted = sorted(set(enabled_events or default_enabled_events()))
        account = await self.ctx.account.own_id()
        deployment = await self.deployment_id()
        async with self._locked(account) as conn:
            existing = await _row_for_url(conn, url, account, connect)
            if existing is not None:
                raise ManagedWebhookError(f"a managed {'Connect ' if connect else ''}webhook for {url} already "
                                          f"exists ({existing['id']}): reuse it with find_or_create or delete it first")
            return await self._create(conn, url, wanted, account, deployment, connect)

    async def list(self) -> builtins.list[ManagedWebhook]:
        rows = await self.ctx.database.fetch_all(
            f"SELECT {_COLUMNS} FROM stripe._managed_webhooks ORDER BY created_at, id")
        return [ManagedWebhook(row) for row in rows]

    async def get(self, webhook_id: str) -> ManagedWebhook | None:
        row = await self.ctx.database.fetch_one(
            f"SELECT {_COLUMNS} FROM stripe._managed_webhooks WHERE id = %s", (webhook_id,))
        return ManagedWebhook(row) if row else None

    @in_lane("interactive")
    async def delete(self, webhook_id: str) -> None:
        """Delete a managed endpoint in Stripe and in the table; refuses endpoints that are not ours."""
        account = await self.ctx.account.own_id()
        deployment = await self.deployment_id()
        async with self._locked(account) as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(f"SELECT {_COLUMNS} FROM stripe._managed_webhooks WHERE id = %s", (webhook_id,))
            row = await cursor.fetchone()
            if row is None:
                try:
                    endpoint = await self.ctx.stripe.get(f"{ENDPOINTS_PATH}/{webhook_id}")
                except ObjectNotFound:
                    raise ManagedWebhookError(f"no webhook endpoint {webhook_id}") from None
                if not _ours(endpoint, deployment):
                    raise ManagedWebhookError(f"{webhook_id} is not a webhook managed by this deployment; "
                                              "delete it in the Stripe Dashboard if you mean to")
            await self._delete_endpoint(webhook_id, row["account_id"] if row else account)
            await conn.execute("DELETE FROM stripe._managed_webhooks WHERE id = %s", (webhook_id,))
        self.log.info("deleted managed webhook %s", webhook_id)

    @in_lane("interactive")
    async def cleanup_orphans(self) -> builtins.list[str]:
        """Delete this deployment's endpoints that are not recorded (and rows whose endpoint is gone)."""
        account = await self.ctx.account.own_id()
        deployment = await self.deployment_id()
        async with self._locked(account) as conn:
            return await self._cleanup(conn, account, deployment)

    # -- internals ---------------------------------------------------------------------------------

    @asynccontextmanager
    async def _locked(self, account: str) -> AsyncIterator[psycopg.AsyncConnection]:
        """A transaction holding the managed-webhooks advisory lock of `account`."""
        async with self.ctx.database.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                               (f"stripe-sync:managed-webhooks:{account}",))
            yield conn

    async def _reuse(self, conn: psycopg.AsyncConnection, row: dict, wanted: builtins.list[str]) -> ManagedWebhook | None:
        try:
            endpoint = await self.ctx.stripe.get(f"{ENDPOINTS_PATH}/{row['id']}")
        except ObjectNotFound:
            endpoint = None
        if endpoint is not None and endpoint.get("status") == "enabled":
            if sorted(endpoint.get("enabled_events") or []) != wanted:
                endpoint = await self.ctx.stripe.post(f"{ENDPOINTS_PATH}/{row['id']}", {"enabled_events": wanted})
            await conn.execute(
                "UPDATE stripe._managed_webhooks SET status = %s, enabled_events = %s::jsonb, _raw_data = %s::jsonb "
                "WHERE id = %s", (endpoint.get("status", "enabled"), json.dumps(wanted),
                                  json.dumps(_without_secret(endpoint)), row["id"]))
            return ManagedWebhook({**row, "status": endpoint.get("status", "enabled"), "enabled_events": wanted})
        # Gone or disabled (Stripe disables endpoints that keep failing): replace it.
        if endpoint is not None:
            await self._delete_endpoint(row["id"], row["account_id"])
        await conn.execute("DELETE FROM stripe._managed_webhooks WHERE id = %s", (row["id"],))
        self.log.info("managed webhook %s is %s: replacing it", row["id"],
                      "disabled" if endpoint is not None else "gone")
        return None

    async def _create(self, conn: psycopg.AsyncConnection, url: str, wanted: builtins.list[str], account: str,
                      deployment: str, connect: bool = False) -> ManagedWebhook:
        params: dict[str, Any] = {
            "url": url, "enabled_events": wanted,
            "description": f"stripe-sync managed webhook ({deployment})",
            "metadata": {"managed_by": MANAGED_BY, "deployment_id": deployment},
        }
        if self.ctx.config.stripe_api_version:
            params["api_version"] = self.ctx.config.stripe_api_version
        if connect:
            params["connect"] = True
        endpoint = await self.ctx.stripe.post(ENDPOINTS_PATH, params, idempotency_key=str(uuid.uuid4()))
        secret = endpoint.get("secret")
        if not secret:
            await self._delete_endpoint(endpoint["id"], account)
            raise ManagedWebhookError("Stripe returned no signing secret for the new endpoint")
        await self.ctx.database.ensure_accounts([account], conn=conn)
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(
            "INSERT INTO stripe._managed_webhooks (id, account_id, url, enabled_events, secret, status, "
            "deployment_id, _raw_data, connect) VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s, %s::jsonb, %s) "
            f"RETURNING {_COLUMNS}",
            (endpoint["id"], account, url, json.dumps(wanted), secret, endpoint.get("status", "enabled"),
             deployment, json.dumps(_without_secret(endpoint)), connect))
        row = await cursor.fetchone()
        assert row is not None
        self.on_secrets_changed()
        self.log.info("created managed %swebhook %s for %s (secret %s)", "Connect " if connect else "", endpoint["id"],
                      url, mask_secret(secret))
        return ManagedWebhook(row)

    async def _cleanup(self, conn: psycopg.AsyncConnection, account: str, deployment: str) -> builtins.list[str]:
        endpoints: builtins.list[dict] = []
        async for page in self.ctx.stripe.iterate(ENDPOINTS_PATH):
            endpoints.extend(page.get("data") or [])
        cursor = await conn.execute("SELECT id FROM stripe._managed_webhooks WHERE account_id = %s", (account,))
        recorded = {r[0] for r in await cursor.fetchall()}
        removed = []
        for endpoint in endpoints:
            if _ours(endpoint, deployment) and endpoint["id"] not in recorded:
                await self._delete_endpoint(endpoint["id"], account)
                removed.append(endpoint["id"])
                self.log.info("deleted orphaned managed webhook %s (%s)", endpoint["id"], endpoint.get("url"))
        gone = recorded - {e["id"] for e in endpoints}
        if gone:
            await conn.execute("DELETE FROM stripe._managed_webhooks WHERE id = ANY(%s)", (sorted(gone),))
        return removed

    async def _delete_endpoint(self, webhook_id: str, account: str) -> None:
        try:
            await self.ctx.stripe.delete(f"{ENDPOINTS_PATH}/{webhook_id}")
        except ObjectNotFound:
            pass


def _ours(endpoint: dict, deployment: str) -> bool:
    metadata = endpoint.get("metadata") or {}
    return metadata.get("managed_by") == MANAGED_BY and metadata.get("deployment_id") == deployment


def _without_secret(endpoint: dict) -> dict:
    return {k: v for k, v in endpoint.items() if k != "secret"}


async def _row_for_url(conn: psycopg.AsyncConnection, url: str, account: str, connect: bool = False) -> dict | None:
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(f"SELECT {_COLUMNS} FROM stripe._managed_webhooks WHERE url = %s AND account_id = %s "
                         "AND connect = %s", (url, account, connect))
    return await cursor.fetchone()
