"""Deterministic database states for console tests and screenshots: fixed ids, fixed instants.

Tests may write SQL to set the scene; the console itself only reads through `stripe_sync_core`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg

FROZEN = datetime(2026, 1, 15, 12, 0, 0, tzinfo=UTC)


def at(minutes_ago: float) -> datetime:
    return FROZEN - timedelta(minutes=minutes_ago)


def day(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def seed_account(url: str, account_id: str, name: str = "Rocket Rides", email: str = "ops@rocketrides.test") -> None:
    raw = {"id": account_id, "object": "account", "email": email, "type": "standard",
           "settings": {"dashboard": {"display_name": name}}}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO stripe.accounts (_raw_data, _account_id, _last_synced_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET _raw_data = EXCLUDED._raw_data",
            (json.dumps(raw), account_id, FROZEN))


def _run(conn: psycopg.Connection, account_id: str, objects: list[str], started: datetime,
         closed: datetime | None, error: str | None = None, params: dict | None = None) -> int:
    row = conn.execute(
        "INSERT INTO stripe._sync_runs (account_id, objects, params, started_at, closed_at, error_message) "
        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (account_id, objects, json.dumps(params or {}), started, closed, error)).fetchone()
    assert row is not None
    return row[0]


def _chunk(conn: psycopg.Connection, run_id: int, obj: str, gte: str | None, lte: str | None, status: str,
           processed: int, started: datetime | None, completed: datetime | None, error: str | None = None,
           attempts: int = 1) -> None:
    conn.execute(
        "INSERT INTO stripe._sync_obj_runs (run_id, object, created_gte, created_lte, status, processed_count, "
        "error_message, attempts, started_at, completed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (run_id, obj, day(gte) if gte else None, day(lte) + 86_399 if lte else None, status, processed, error,
         attempts, started, completed))


def seed_runs(url: str, account_id: str, *, open_run: bool = True) -> int | None:
    """Two finished runs (one with an error) and, optionally, one running now. Returns the open run's id."""
    with psycopg.connect(url, autocommit=True) as conn:
        first = _run(conn, account_id, ["customers", "products", "prices"], at(60 * 48), at(60 * 48 - 7),
                     params={"object": "all"})
        for obj, n in (("customers", 1200), ("products", 40), ("prices", 85)):
            _chunk(conn, first, obj, None, None, "complete", n, at(60 * 48), at(60 * 48 - 6))
        second = _run(conn, account_id, ["invoices", "charges"], at(60 * 24), at(60 * 24 - 3))
        _chunk(conn, second, "invoices", "2025-12-01", "2025-12-31", "complete", 310, at(1440), at(1438))
        _chunk(conn, second, "charges", "2025-12-01", "2025-12-31", "error", 12, at(1440), at(1437),
               error="GET /v1/charges (sk_test_51HxSecretValue4242) answered 500: internal error", attempts=5)
        if not open_run:
            return None
        third = _run(conn, account_id, ["customers", "invoices", "charges"], at(10), None,
                     params={"object": "all", "chunk": "week"})
        for gte, lte, status, n, done in (
            ("2025-12-15", "2025-12-21", "complete", 800, at(8)),
            ("2025-12-22", "2025-12-28", "complete", 650, at(6)),
            ("2025-12-29", "2026-01-04", "running", 120, None),
            ("2026-01-05", "2026-01-11", "pending", 0, None),
        ):
            _chunk(conn, third, "customers", gte, lte, status, n, at(10) if status != "pending" else None, done)
        _chunk(conn, third, "invoices", "2025-12-15", "2025-12-21", "complete", 90, at(10), at(9))
        _chunk(conn, third, "invoices", "2025-12-22", "2025-12-28", "pending", 0, None, None)
        _chunk(conn, third, "charges", "2025-12-15", "2025-12-21", "error", 3, at(10), at(5),
               error="Stripe answered 429 to GET /v1/charges: rate limited", attempts=5)
        return third


def seed_managed_webhook(url: str, account_id: str, webhook_id: str = "we_1ManagedConsole",
                         endpoint: str = "https://sync.rocketrides.test/stripe/webhooks",
                         events: list[str] | None = None) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO stripe._managed_webhooks (id, account_id, url, enabled_events, secret, status, "
            "deployment_id, _raw_data, created_at) VALUES (%s, %s, %s, %s, %s, 'enabled', 'console-test', %s, %s)",
            (webhook_id, account_id, endpoint, json.dumps(events or ["customer.created", "customer.updated"]),
             "whsec_testsecretvalue9876", json.dumps({"id": webhook_id, "object": "webhook_endpoint"}), at(120)))


def seed_events(url: str, account_id: str, count: int = 6) -> None:
    types = ["customer.created", "customer.updated", "invoice.paid", "charge.succeeded", "invoice.upcoming",
             "payment_intent.succeeded"]
    outcomes = ["stored", "stored", "stored", "stored", "skipped", "stored"]
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(count):
            conn.execute(
                "INSERT INTO stripe._events (id, type, account_id, received_at, outcome) VALUES (%s, %s, %s, %s, %s)",
                (f"evt_1Console{i:04d}", types[i % len(types)], account_id, at(30 - i), outcomes[i % len(outcomes)]))
