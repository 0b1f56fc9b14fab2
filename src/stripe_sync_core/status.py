"""Read-only views of the engine's bookkeeping, for consoles and dashboards.

Each function is one small query over the `stripe` schema (or one Stripe list call) and returns plain
frozen dataclasses, so a caller never writes SQL against the engine's internal tables. Functions that
derive rates or estimates take `now`, so a caller with a frozen clock gets stable figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from .database import Database
from .errors import NotConfigured
from .masking import mask_secrets_in

if TYPE_CHECKING:
    from .stripe_api import StripeApi

RUN_HISTORY_LIMIT = 500
RECENT_EVENTS_LIMIT = 1000


class SchemaMissing(NotConfigured):
    """The database answers but the `stripe` schema is not migrated."""


@dataclass(frozen=True)
class ObjectProgress:
    """One object type of a run: how far its chunks got."""

    run_id: int
    object: str
    status: str
    chunks_total: int
    chunks_done: int
    chunks_failed: int
    chunks_running: int
    processed: int
    """Objects of this type stored (the chunks' `processed_count`)."""
    started_at: datetime | None
    finished_at: datetime | None
    last_error: str | None
    objects_per_second: float | None
    eta_seconds: float | None
    child_rows: int = 0
    """Rows of child tables stored through these objects (subscription items, invoice lines...): not
    objects of this type, so never added to `processed`."""


@dataclass(frozen=True)
class RunSummary:
    """A row of the `stripe.sync_runs` view plus what the run asked for."""

    run_id: int
    account_id: str
    trigger: str
    status: str
    objects: tuple[str, ...]
    started_at: datetime
    closed_at: datetime | None
    total_processed: int
    """Objects stored (children through their parents not included: see `child_rows`)."""
    complete_count: int
    error_count: int
    running_count: int
    pending_count: int
    error_message: str | None
    params: dict
    updated_at: datetime | None
    child_rows: int = 0
    """Rows of child tables stored through the run's objects."""

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


def overall_eta(progress: list[ObjectProgress], now: datetime) -> float | None:
    """Seconds until every object of a running run is done: the chunks left at the run's own pace so
    far (chunks done per second since its first chunk started), None until a chunk is done."""
    running = [p for p in progress if p.status in ("running", "pending")]
    if not running:
        return None
    started = [p.started_at for p in progress if p.started_at is not None]
    done = sum(p.chunks_done for p in progress)
    left = sum(p.chunks_total - p.chunks_done - p.chunks_failed for p in progress)
    if not started or not done:
        return None
    elapsed = (now - min(started)).total_seconds()
    return elapsed / done * left if elapsed > 0 else None


@dataclass(frozen=True)
class ChunkRow:
    """One chunk (`_sync_obj_runs` row): an object type over one `created` window."""

    chunk_id: int
    run_id: int
    object: str
    created_gte: int | None
    created_lte: int | None
    status: str
    processed: int
    attempts: int
    error: str | None
    started_at: datetime | None
    completed_at: datetime | None


@dataclass(frozen=True)
class EventRow:
    """A processed webhook event from the event log."""

    event_id: str
    type: str
    account_id: str | None
    object_id: str | None
    received_at: datetime
    outcome: str
    detail: str | None


@dataclass(frozen=True)
class ManagedWebhookRow:
    """A webhook endpoint this engine created and manages."""

    webhook_id: str
    account_id: str
    url: str
    status: str
    enabled_events: tuple[str, ...]
    created_at: datetime
    event_count: int
    connect: bool = False
    """A Connect endpoint: fed the connected accounts' events (its event count is theirs)."""


@dataclass(frozen=True)
class WebhookEndpointRow:
    """A webhook endpoint as Stripe lists it, managed by us or not."""

    webhook_id: str
    url: str
    status: str
    enabled_events: tuple[str, ...]
    created: int | None
    livemode: bool | None
    description: str | None


@dataclass(frozen=True)
class DatabaseHealth:
    ok: bool
    latency_ms: float | None
    server_version: str | None
    schema_ready: bool
    error: str | None = None


def _status_of(total: int, done: int, failed: int, running: int, closed: bool) -> str:
    """Same rule as the `stripe.sync_runs` view, for one object's chunks."""
    if running:
        return "running"
    if total and done == total:
        return "complete"
    if failed and done + failed == total:
        return "error"
    if done + failed == 0:
        return "interrupted" if closed else "pending"
    return "interrupted" if closed else "running"


async def current_run_id(db: Database, account_id: str | None = None) -> int | None:
    """The open run that moved last, or else the newest run."""
    row = await db.fetch_one(
        "SELECT id FROM stripe._sync_runs WHERE (%(account)s::text IS NULL OR account_id = %(account)s) "
        "ORDER BY (closed_at IS NULL) DESC, _updated_at DESC, id DESC LIMIT 1",
        {"account": account_id},
    )
    return row["id"] if row else None


async def current_run_rows(db: Database, *, now: datetime, run_id: int | None = None,
                           account_id: str | None = None) -> tuple[RunSummary | None, list[ObjectProgress]]:
    """The current (or given) run and one progress row per object type, in the run's order."""
    run_id = run_id if run_id is not None else await current_run_id(db, account_id)
    if run_id is None:
        return None, []
    runs = await _runs(db, "WHERE v.run_id = %(run)s", {"run": run_id})
    run = runs[0] if runs else None
    rows = await db.fetch_all(
        """
        SELECT object,
               count(*) AS total,
               count(*) FILTER (WHERE status = 'complete') AS done,
               count(*) FILTER (WHERE status = 'error') AS failed,
               count(*) FILTER (WHERE status = 'running') AS running,
               COALESCE(sum(processed_count), 0)::bigint AS processed,
               min(started_at) AS started_at,
               max(completed_at) AS finished_at,
               (array_agg(error_message ORDER BY _updated_at DESC)
                    FILTER (WHERE error_message IS NOT NULL))[1] AS last_error,
               COALESCE(sum((SELECT sum(value::bigint) FROM jsonb_each_text(children_processed))), 0)::bigint
                    AS child_rows
        FROM stripe._sync_obj_runs WHERE run_id = %(run)s
        GROUP BY object ORDER BY min(id)
        """,
        {"run": run_id},
    )
    closed = run is not None and run.closed_at is not None
    progress = []
    for row in rows:
        status = _status_of(row["total"], row["done"], row["failed"], row["running"], closed)
        started = row["started_at"]
        end = now if status in ("running", "pending") else (row["finished_at"] or now)
        elapsed = (end - started).total_seconds() if started else None
        rate = row["processed"] / elapsed if elapsed and elapsed > 0 else None
        eta = None
        if status == "running" and elapsed and row["done"]:
            eta = elapsed / row["done"] * (row["total"] - row["done"] - row["failed"])
        progress.append(ObjectProgress(
            run_id=run_id, object=row["object"], status=status, chunks_total=row["total"],
            chunks_done=row["done"], chunks_failed=row["failed"], chunks_running=row["running"],
            processed=row["processed"], started_at=started, finished_at=row["finished_at"],
            last_error=mask_secrets_in(row["last_error"]) if row["last_error"] else None,
            objects_per_second=rate, eta_seconds=eta, child_rows=row["child_rows"],
        ))
    return run, progress


async def _runs(db: Database, where: str, params: dict) -> list[RunSummary]:
    rows = await db.fetch_all(
        f"""
        SELECT v.*, r.objects, r.params, r.error_message, r._updated_at AS updated_at,
               (SELECT COALESCE(sum(c.value::bigint), 0) FROM stripe._sync_obj_runs o,
                       jsonb_each_text(o.children_processed) c WHERE o.run_id = v.run_id)::bigint AS child_rows
        FROM stripe.sync_runs v JOIN stripe._sync_runs r ON r.id = v.run_id
        {where}
        ORDER BY v.run_id DESC LIMIT %(limit)s
        """,
        {"limit": RUN_HISTORY_LIMIT, **params},
    )
    return [RunSummary(
        run_id=row["run_id"], account_id=row["account_id"], trigger=row["trigger"], status=row["status"],
        objects=tuple(row["objects"] or ()), started_at=row["started_at"], closed_at=row["closed_at"],
        total_processed=row["total_processed"], complete_count=row["complete_count"],
        error_count=row["error_count"], running_count=row["running_count"],
        pending_count=row["pending_count"],
        error_message=mask_secrets_in(row["error_message"]) if row["error_message"] else None,
        params=row["params"] or {}, updated_at=row["updated_at"], child_rows=row["child_rows"],
    ) for row in rows]


async def last_backfill_started(db: Database, account_id: str) -> tuple[int, datetime] | None:
    """(run id, start) of the account's newest run that stored a chunk: a listener with no logged event
    to catch up from catches up from there (what changed after it started may be missing)."""
    row = await db.fetch_one(
        "SELECT r.id, r.started_at FROM stripe._sync_runs r WHERE r.account_id = %s AND EXISTS ("
        "SELECT 1 FROM stripe._sync_obj_runs o WHERE o.run_id = r.id AND o.status = 'complete') "
        "ORDER BY r.started_at DESC, r.id DESC LIMIT 1", (account_id,))
    return (row["id"], row["started_at"]) if row else None


async def connected_backfills_started(db: Database, own_account_id: str) -> dict[str, datetime]:
    """Start of each other account's newest run that stored a chunk (one query): where a listener
    catches up a connected account none of whose events it logged."""
    rows = await db.fetch_all(
        "SELECT DISTINCT ON (r.account_id) r.account_id, r.started_at FROM stripe._sync_runs r "
        "WHERE r.account_id <> %s AND EXISTS (SELECT 1 FROM stripe._sync_obj_runs o WHERE o.run_id = r.id "
        "AND o.status = 'complete') ORDER BY r.account_id, r.started_at DESC", (own_account_id,))
    return {row["account_id"]: row["started_at"] for row in rows}


async def run_history(db: Database, *, account_id: str | None = None,
                      limit: int = RUN_HISTORY_LIMIT) -> list[RunSummary]:
    """Runs newest first (from the `stripe.sync_runs` view), at most `limit`."""
    return await _runs(db, "WHERE (%(account)s::text IS NULL OR v.account_id = %(account)s)",
                       {"account": account_id, "limit": limit})


async def run_chunks(db: Database, run_id: int) -> list[ChunkRow]:
    """Every chunk of a run, in plan order."""
    rows = await db.fetch_all(
        "SELECT id, run_id, object, created_gte, created_lte, status, processed_count, attempts, "
        "error_message, started_at, completed_at FROM stripe._sync_obj_runs WHERE run_id = %s ORDER BY id",
        (run_id,),
    )
    return [ChunkRow(
        chunk_id=row["id"], run_id=row["run_id"], object=row["object"], created_gte=row["created_gte"],
        created_lte=row["created_lte"], status=row["status"], processed=row["processed_count"],
        attempts=row["attempts"],
        error=mask_secrets_in(row["error_message"]) if row["error_message"] else None,
        started_at=row["started_at"], completed_at=row["completed_at"],
    ) for row in rows]


async def recent_events(db: Database, *, limit: int = RECENT_EVENTS_LIMIT) -> list[EventRow]:
    """The newest processed events, oldest first (the order a feed shows them in)."""
    rows = await db.fetch_all(
        "SELECT * FROM (SELECT id, type, account_id, object_id, received_at, outcome, detail "
        "FROM stripe._events ORDER BY received_at DESC, id DESC LIMIT %s) e ORDER BY received_at, id",
        (limit,),
    )
    return [EventRow(
        event_id=row["id"], type=row["type"], account_id=row["account_id"], object_id=row["object_id"],
        received_at=row["received_at"], outcome=row["outcome"],
        detail=mask_secrets_in(row["detail"]) if row["detail"] else None,
    ) for row in rows]


async def managed_webhook_rows(db: Database, *, account_id: str | None = None) -> list[ManagedWebhookRow]:
    """Managed webhook endpoints, newest first, with the events received for their account since creation."""
    rows = await db.fetch_all(
        """
        SELECT w.id, w.account_id, w.url, w.status, w.enabled_events, w.created_at, w.connect,
               (SELECT count(*) FROM stripe._events e
                 WHERE (e.account_id = w.account_id) <> w.connect AND e.received_at >= w.created_at) AS event_count
        FROM stripe._managed_webhooks w
        WHERE (%(account)s::text IS NULL OR w.account_id = %(account)s)
        ORDER BY w.created_at DESC, w.id
        """,
        {"account": account_id},
    )
    return [ManagedWebhookRow(
        webhook_id=row["id"], account_id=row["account_id"], url=row["url"], status=row["status"],
        enabled_events=tuple(row["enabled_events"] or ()), created_at=row["created_at"],
        event_count=row["event_count"], connect=row["connect"],
    ) for row in rows]


async def webhook_endpoints(api: StripeApi, *, account: str | None = None) -> list[WebhookEndpointRow]:
    """Every webhook endpoint Stripe will call for the account (`GET /v1/webhook_endpoints`)."""
    endpoints: list[WebhookEndpointRow] = []
    async for page in api.iterate("/v1/webhook_endpoints", account=account):
        for item in page.get("data") or []:
            endpoints.append(WebhookEndpointRow(
                webhook_id=item["id"], url=item.get("url") or "", status=item.get("status") or "enabled",
                enabled_events=tuple(item.get("enabled_events") or ()), created=item.get("created"),
                livemode=item.get("livemode"), description=item.get("description"),
            ))
    return endpoints


async def database_health(db: Database) -> DatabaseHealth:
    """Round-trip time, server version and whether the `stripe` schema is migrated."""
    started = time.perf_counter()
    try:
        row = await db.fetch_one(
            "SELECT current_setting('server_version') AS version, "
            "to_regclass('stripe._sync_runs') IS NOT NULL AS ready"
        )
    except Exception as error:  # any driver or pool error means the same thing here: unreachable
        return DatabaseHealth(False, None, None, False, mask_secrets_in(str(error)))
    latency = (time.perf_counter() - started) * 1000
    assert row is not None
    return DatabaseHealth(True, latency, row["version"], bool(row["ready"]))



async def probe_database(url: str, *, timeout: float = 5.0) -> None:
    """Connect once, quickly, to say precisely why a database is unreachable (a pool only times out)."""
    import psycopg

    from .database import DatabaseUnavailable
    from .masking import mask_database_url

    try:
        connection = await psycopg.AsyncConnection.connect(url, connect_timeout=max(1, int(timeout)))
    except psycopg.Error as error:
        reason = " ".join(str(error).split())
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {mask_database_url(url)}: {reason}") from None
    await connection.close()


async def table_row_counts(db: Database) -> dict[str, int]:
    """Rows stored per object table, in registry order (one query for all tables)."""
    from .registry import REGISTRY

    rows = await db.fetch_all(" UNION ALL ".join(
        f"SELECT '{table}' AS object, count(*) AS n FROM stripe.{table}" for table in REGISTRY))
    counts = {row["object"]: int(row["n"]) for row in rows}
    return {table: counts[table] for table in REGISTRY}


async def sigma_row_counts(db: Database) -> dict[str, int]:
    """Rows stored per Sigma table (`sigma.<table>`), those holding any, in table order (one query)."""
    from .sigma import sigma_objects, sigma_table

    tables = [sigma_table(name) for name in sigma_objects()]
    # A table never written has no pages: only the others are counted (planning a count over all 187
    # tables costs most of a `status` on a new connection; most accounts fill a few of them).
    written = {row["relname"] for row in await db.fetch_all(
        "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'sigma'::regnamespace AND c.relkind = 'r' "
        "AND pg_relation_size(c.oid) > 0")}
    tables = [t for t in tables if t.pg_table in written]
    if not tables:
        return {}
    rows = await db.fetch_all(" UNION ALL ".join(
        f"SELECT '{t.object}' AS object, count(*) AS n FROM sigma.\"{t.pg_table}\"" for t in tables))
    counts = {row["object"]: int(row["n"]) for row in rows}
    return {t.object: counts[t.object] for t in tables if counts.get(t.object)}


async def open_runs(db: Database) -> list[dict]:
    """Runs not closed yet, oldest first, from the `stripe.sync_runs` view."""
    return await db.fetch_all(
        "SELECT run_id, account_id, status, started_at, total_processed, error_count "
        "FROM stripe.sync_runs WHERE closed_at IS NULL ORDER BY started_at")


async def last_event(db: Database) -> dict | None:
    """The most recently received webhook event (id, type, received_at, outcome), if any."""
    return await db.fetch_one(
        "SELECT id, type, received_at, outcome FROM stripe._events ORDER BY received_at DESC LIMIT 1")


async def schema_revision(db: Database) -> str | None:
    """The Alembic revision the `stripe` schema is at (None before the first migration)."""
    present = await db.fetch_one("SELECT to_regclass('stripe._migrations') IS NOT NULL AS present")
    if not present or not present["present"]:
        return None
    row = await db.fetch_one("SELECT version_num FROM stripe._migrations LIMIT 1")
    return row["version_num"] if row else None


async def dead_letters(db: Database, limit: int = 5) -> tuple[int, list[dict]]:
    """How many signed events could not be stored (see webhooks.DEAD_LETTER), and the newest few
    (event id, type, received_at, deliveries, reason, body size); the bodies stay in the table."""
    total = await db.fetch_one("SELECT count(*) AS n FROM stripe._dead_letters")
    newest = await db.fetch_all(
        "SELECT event_id, event_type, received_at, deliveries, reason, octet_length(body) AS body_bytes "
        "FROM stripe._dead_letters ORDER BY received_at DESC, id DESC LIMIT %s", (limit,))
    return (int(total["n"]) if total else 0), newest


async def synced_account_rows(db: Database, own_account_id: str | None) -> list[dict]:
    """Every stored account with its email, country, whether it is the key's own, and when it synced."""
    return await db.fetch_all(
        "SELECT id, _raw_data->>'email' AS email, country, (id = %s) AS own, _last_synced_at AS synced_at "
        "FROM stripe.accounts ORDER BY id", (own_account_id,))


async def account_row_counts(db: Database) -> dict[str, int]:
    """Object rows stored per account, every object table but `accounts` (one query)."""
    from .registry import REGISTRY

    parts = [f"SELECT _account_id AS account, count(*) AS n FROM stripe.{table} GROUP BY 1"
             for table in REGISTRY if table != "accounts"]
    rows = await db.fetch_all(f"SELECT account, sum(n) AS n FROM ({' UNION ALL '.join(parts)}) t GROUP BY 1")
    return {row["account"]: int(row["n"]) for row in rows}


@dataclass(frozen=True)
class AccountChoice:
    """An account the console can show alone: the key's own or a connected one, with its runs and rows."""

    account_id: str
    name: str
    own: bool
    runs: int
    open_runs: int
    rows: int


async def account_choices(db: Database, own_account_id: str | None) -> list[AccountChoice]:
    """Every account with runs or a stored account row, the key's own first, with runs and object rows."""
    counts = await account_row_counts(db)
    rows = await db.fetch_all(
        "SELECT a.id, COALESCE(a._raw_data->'settings'->'dashboard'->>'display_name', "
        "a._raw_data->'business_profile'->>'name', '') AS name, "
        "(SELECT count(*) FROM stripe._sync_runs r WHERE r.account_id = a.id) AS runs, "
        "(SELECT count(*) FROM stripe._sync_runs r WHERE r.account_id = a.id AND r.closed_at IS NULL) AS open "
        "FROM stripe.accounts a ORDER BY (a.id = %s) DESC, a.id", (own_account_id,))
    return [AccountChoice(account_id=row["id"], name=row["name"], own=row["id"] == own_account_id,
                          runs=row["runs"], open_runs=row["open"], rows=counts.get(row["id"], 0)) for row in rows]


async def accounts_with_runs(db: Database) -> int:
    """How many accounts have sync runs (more than one: the console offers to show one alone)."""
    row = await db.fetch_one("SELECT count(DISTINCT account_id) AS n FROM stripe._sync_runs")
    return int(row["n"]) if row else 0
