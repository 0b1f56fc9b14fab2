"""Everything through a real PgBouncer in transaction mode (what Supabase's pooler on port 6543 does):
migrations, webhooks under concurrency, a backfill with two workers, managed webhook find-or-create
under contention, a worker killed with SIGKILL and its run resumed, an account's deletion.

PgBouncer hands a server connection to another client between transactions, so nothing may rely on
a session: no server-side prepared statement, no session advisory lock."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from backfill_support import (
    FAST,
    assert_same_ids,
    chunk_rows,
    emulator_objects,
    engine,
    kill_when_held,
    run_rows,
    writes_held_after,
)
from pgbouncer_support import missing_reason, pgbouncer
from test_backfill_resume import start_worker
from webhook_support import WEBHOOK_SECRET, engine_config, event, signed, truth

from stripe_sync_core import StripeSync, SyncConfig
from stripe_sync_core.backfill import BackfillOptions
from stripe_sync_core.database import PREPARE_THRESHOLD, PREPARED_MAX, Database
from stripe_sync_core.migrate import current_revision, downgrade_migrations, run_migrations
from stripe_sync_core.progress import RecordingSink
from stripe_sync_core.runs import WORKER_LOCK_CLASS, WorkerLease
from stripe_sync_core.schema_version import head_revision
from stripe_sync_emulator import StripeEmulator

FIXTURES = json.loads((Path(__file__).parent / "data" / "stripe_fixtures.json").read_text())["resources"]


@pytest.fixture(scope="module")
def bouncer(migrated_url: str) -> Iterator[str]:
    """The session's test database through PgBouncer (transaction pooling, a Unix socket only)."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    with pgbouncer(migrated_url) as url:
        yield url


@pytest.fixture
def pooled(clean_db: str, bouncer: str) -> str:
    """Empty tables; the URL through the pooler (`clean_db` is the direct one)."""
    return bouncer


def advisory_locks(direct_url: str) -> int:
    with psycopg.connect(direct_url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                           "(SELECT oid FROM pg_database WHERE datname = current_database())").fetchone()
        return int(row[0]) if row else 0


def test_migrations_run_through_the_pooler_and_leave_no_lock_behind(pooled: str, clean_db: str) -> None:
    downgrade_migrations(pooled, revision="0004")
    assert current_revision(pooled) == "0004"
    head = head_revision()
    assert run_migrations(pooled) == ("0004", head)
    assert run_migrations(pooled) == (head, head)
    # A session lock would have stayed on a server connection PgBouncer keeps for the next client.
    assert advisory_locks(clean_db) == 0


async def test_concurrent_webhooks_through_the_pooler(pooled: str, emulator: StripeEmulator) -> None:
    emulator.clock.freeze()
    customer = emulator.create("customers", {"name": "first"})
    for name in ("second", "third", "fourth"):
        emulator.action("customers", customer["id"], "update", {"name": name})
    same_second = [e for e in emulator.events() if e["data"]["object"].get("id") == customer["id"]]
    random.Random(5).shuffle(same_second)
    now = int(time.time())
    template = json.loads(json.dumps(FIXTURES["subscription"]))
    item = template["items"]["data"][0]
    parents = []
    for i in range(30):
        items = [{**item, "id": f"si_pool{i}_{k}", "subscription": f"sub_pool{i}"} for k in range(2)]
        parents.append(event("customer.subscription.updated",
                             {**template, "id": f"sub_pool{i}", "items": {**template["items"], "data": items,
                                                                          "has_more": False}}, now))
    async with StripeSync(engine_config(pooled, emulator, pool_max_size=6)) as sync:
        outcomes = await asyncio.gather(*(sync.process_webhook(*signed(e)) for e in [*parents, *same_second]))
        assert all(o.outcome in ("stored", "refetched") for o in outcomes)
        row = await sync.database.fetch_one("SELECT _raw_data FROM stripe.customers WHERE id = %s",
                                            (customer["id"],))
        assert row is not None and row["_raw_data"] == truth(emulator, "customers", customer["id"])
        rows = await sync.database.fetch_all("SELECT id, subscription FROM stripe.subscription_items "
                                             "WHERE NOT deleted")
        assert {(r["id"], r["subscription"]) for r in rows} == {
            (f"si_pool{i}_{k}", f"sub_pool{i}") for i in range(30) for k in range(2)}
        logged = await sync.database.fetch_one("SELECT count(*) AS n FROM stripe._events")
        assert logged == {"n": len(outcomes)}


async def test_statements_are_prepared_on_a_direct_connection_only(pooled: str, clean_db: str) -> None:
    """A direct connection prepares what it repeats (parsing and planning a webhook batch anew cost
    PostgreSQL two thirds of its time); through the pooler nothing is prepared and repeats never fail."""
    statement = "SELECT count(*) FROM stripe.customers WHERE id = %s"

    async def prepared_after_repeats(db: Database) -> bool:
        async with db.pool.connection() as conn:
            for _ in range(PREPARE_THRESHOLD + 5):
                await conn.execute(statement, ("cus_none",))
                await asyncio.sleep(0)  # the others' transactions in between, on whichever server connection
            cursor = await conn.execute("SELECT count(*) FROM pg_prepared_statements "
                                        "WHERE statement LIKE 'SELECT count(*) FROM stripe.customers%%'")
            row = await cursor.fetchone()
            return row is not None and row[0] == 1

    for url, prepares in ((clean_db, True), (pooled, False)):
        db = Database(url, max_size=3)
        await db.open()
        try:
            assert await asyncio.gather(*(prepared_after_repeats(db) for _ in range(3))) == [prepares] * 3, url
        finally:
            await db.close()


async def test_a_direct_connection_keeps_few_statements_prepared(clean_db: str) -> None:
    """Each mix of tables a webhook batch writes is a statement of its own, whose plan holds megabytes of
    the server's memory: a connection keeps only the most recently used prepared."""
    db = Database(clean_db, max_size=1)
    await db.open()
    try:
        async with db.pool.connection() as conn:
            for n in range(PREPARED_MAX + 8):
                for _ in range(PREPARE_THRESHOLD + 1):
                    await conn.execute(f"SELECT count(*) FROM stripe.customers WHERE id = %s AND {n} = {n}",
                                       ("cus_none",))
            cursor = await conn.execute("SELECT count(*) FROM pg_prepared_statements")
            row = await cursor.fetchone()
            # psycopg deallocates the least recently used once it meets the next statement
            assert row is not None and PREPARED_MAX <= row[0] <= PREPARED_MAX + 1
    finally:
        await db.close()


async def test_two_workers_share_a_run_through_the_pooler(pooled: str, clean_db: str) -> None:
    options = BackfillOptions(target_chunk_objects=150, max_split=6, idle_poll_seconds=0.05, heartbeat_seconds=0.2)
    with StripeEmulator(seed=50, customers=80, start="2024-01-01", end="2025-01-01", latency_ms=3) as emu:
        first, second = RecordingSink(), RecordingSink()
        async with engine(pooled, emu, progress=first, options=options) as a, \
                engine(pooled, emu, progress=second, options=options) as b:
            task = asyncio.create_task(a.process_until_done("all", concurrency=3))
            while not [r for r in run_rows(clean_db) if r["closed_at"] is None]:
                await asyncio.sleep(0.01)
            await b.backfill.join_open_run(concurrency=3)
            summary = await task
        started = [{args[2] for name, args in sink.calls if name == "chunk_started"} for sink in (first, second)]
        chunks = chunk_rows(clean_db)
        assert started[0] and started[1] and not started[0] & started[1]  # both worked, never on one chunk
        assert started[0] | started[1] == {c["id"] for c in chunks}
        assert all(c["attempts"] == 1 for c in chunks)  # each chunk claimed exactly once
        assert all(s.errors == 0 for s in summary.values())
        assert_same_ids(clean_db, emu, ["customers", "invoices", "charges", "tax_ids", "payment_methods"])
        assert run_rows(clean_db)[0]["status"] == "complete"
    assert advisory_locks(clean_db) == 0  # the workers' locks ended with their transactions


async def test_managed_webhook_find_or_create_under_contention_through_the_pooler(
        pooled: str, emulator: StripeEmulator) -> None:
    engines = [StripeSync(engine_config(pooled, emulator, pool_max_size=2)) for _ in range(6)]
    for sync in engines:
        await sync.open()
    try:
        found = await asyncio.gather(*(sync.find_or_create_managed_webhook("https://example.test/pooled")
                                       for sync in engines))
    finally:
        for sync in engines:
            await sync.close()
    assert len({webhook["id"] for webhook in found}) == 1
    assert [e["id"] for e in emulator.objects("webhook_endpoints")] == [found[0]["id"]]


async def test_a_live_workers_lease_is_seen_through_the_pooler_and_holds_back_no_vacuum(
        pooled: str, clean_db: str) -> None:
    def holders(key: int) -> list[tuple[int, str, object]]:
        with psycopg.connect(clean_db) as conn:
            return conn.execute(
                "SELECT a.pid, a.state, a.backend_xmin FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s AND l.granted",
                (WORKER_LOCK_CLASS, key)).fetchall()

    async def idle_holder(key: int, not_pid: int = 0) -> int:
        """The pid of the connection holding `key`'s lock once it idles in its transaction without a
        snapshot (a heartbeat's ping may be caught running)."""
        for _ in range(100):
            found = holders(key)
            if len(found) == 1 and found[0][0] != not_pid and found[0][1:] == ("idle in transaction", None):
                return found[0][0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"the lock of {key} is not held by one idle transaction: {holders(key)}")

    async with StripeSync(engine_config_without_stripe(pooled)) as sync:
        async with WorkerLease(sync.backfill.ledger, 0.05, sync.context.log) as lease:
            pid = await idle_holder(lease.key)
            # Its server connection is closed under it (a restarted pooler, an idle timeout): the next
            # heartbeat takes the same lock again, so the worker's claims are not taken for a dead one's.
            with psycopg.connect(clean_db, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            await idle_holder(lease.key, not_pid=pid)
    assert advisory_locks(clean_db) == 0


def engine_config_without_stripe(url: str) -> SyncConfig:
    return SyncConfig(database_url=url)


async def test_a_killed_worker_is_taken_over_at_once_and_its_run_resumed_through_the_pooler(
        pooled: str, clean_db: str) -> None:
    """SIGKILL closes the worker's client connection; PgBouncer then closes the server connection in
    the middle of the lease's transaction, so its lock goes at once: no waiting for the lease."""
    with StripeEmulator(seed=30, customers=400, start="2024-01-01", end="2025-01-01", latency_ms=20) as emu:
        with writes_held_after(clean_db, "stripe.customers", 100) as holder:  # killed mid-chunk
            proc = start_worker(pooled, emu, "customers")  # the worker of test_backfill_resume, through the pooler
            kill_when_held(holder, proc)
        assert any(c["status"] == "running" for c in chunk_rows(clean_db))
        options = BackfillOptions(lease_seconds=3600, idle_poll_seconds=0.05)  # only the lock can tell
        async with engine(pooled, emu, options=options) as sync:
            summary = await asyncio.wait_for(sync.process_until_done("customers"), 30)
        [run] = run_rows(clean_db)
        assert run["status"] == "complete" and summary["customers"].errors == 0
        assert sum(c["processed_count"] for c in chunk_rows(clean_db)) == len(emulator_objects(emu, "customers"))
        assert_same_ids(clean_db, emu, ["customers"])


async def test_an_accounts_deletion_through_the_pooler(pooled: str, clean_db: str) -> None:
    with StripeEmulator(seed=51, customers=6) as emu:
        async with engine(pooled, emu, options=FAST) as sync:
            await sync.process_until_done(["customers", "invoices"])
            account = (await sync.get_current_account())["id"]
            preview = await sync.dangerously_delete_synced_account_data(account, dry_run=True)
            done = await sync.dangerously_delete_synced_account_data(account, dry_run=False)
            assert preview.deleted_record_counts == done.deleted_record_counts
            assert done.deleted_record_counts["customers"] == len(emulator_objects(emu, "customers")) > 0
            for table in ("customers", "invoices", "_sync_runs"):
                row = await sync.database.fetch_one(f"SELECT count(*) AS n FROM stripe.{table}")
                assert row == {"n": 0}, table


def test_a_function_handler_through_the_pooler(pooled: str, clean_db: str, emulator: StripeEmulator) -> None:
    from stripe_sync_core.serverless import WebhookFunction, lambda_reply
    from stripe_sync_emulator.delivery import sign

    function = WebhookFunction(engine_config(pooled, emulator, pool_max_size=2))
    try:
        for name in ("Ada", "Grace", "Edsger"):
            customer = emulator.create("customers", {"name": name})
            [created] = [e for e in emulator.events() if e["data"]["object"].get("id") == customer["id"]]
            payload = json.dumps(created)
            reply = lambda_reply(function, {"version": "2.0", "requestContext": {"http": {"method": "POST"}},
                                            "headers": {"stripe-signature": sign(payload, WEBHOOK_SECRET)},
                                            "body": payload, "isBase64Encoded": False})
            assert reply["statusCode"] == 200, reply["body"]
    finally:
        function.close()
    with psycopg.connect(clean_db) as conn:
        names = sorted(r[0] for r in conn.execute("SELECT name FROM stripe.customers"))
    assert names == ["Ada", "Edsger", "Grace"]


async def test_prepared_statements_off_keeps_even_a_direct_connection_from_preparing(
        clean_db: str, tmp_path: Path) -> None:
    """For a pooler that passes on a server's own cancel key (taken for PostgreSQL itself), the config
    file turns preparing off altogether; a value that is not a boolean is a clear error."""
    from stripe_sync_core.config import ConfigError, load_config

    settings = tmp_path / "config.toml"
    settings.write_text("prepared_statements = false\n")
    config = load_config({"database_url": clean_db}, config_path=settings, environ={})
    assert config.prepared_statements is False
    async with StripeSync(config) as sync:
        async with sync.database.pool.connection() as conn:
            for _ in range(PREPARE_THRESHOLD + 5):
                await conn.execute("SELECT count(*) FROM stripe.customers WHERE id = %s", ("cus_none",))
            cursor = await conn.execute("SELECT count(*) FROM pg_prepared_statements")
            assert await cursor.fetchone() == (0,)
    settings.write_text('prepared_statements = "no"\n')
    with pytest.raises(ConfigError, match="prepared_statements must be true or false"):
        load_config({}, config_path=settings, environ={})
