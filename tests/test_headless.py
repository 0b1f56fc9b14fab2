"""Headless mode: golden `--json` output of each command, exit codes, the demo end to end, Ctrl-C.

Golden files live in tests/golden/; volatile values (times, durations, ports, database URLs) are
normalised before comparison. Regenerate with UPDATE_GOLDEN=1 after an intended change.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from backfill_support import EMULATOR_TYPE
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from stripe_sync_emulator import StripeEmulator

CLI = [sys.executable, "-m", "stripe_sync_tui.cli"]
GOLDEN = Path(__file__).parent / "golden"
START, END = "2025-01-01", "2025-12-31"
VOLATILE = {"duration", "started_at", "received_at", "synced_at", "created", "created_at", "database",
            "last_event", "run_id", "chunk_id", "secret", "url", "stripe_key"}


def _normalise(record: dict) -> dict:
    out = {}
    for key, value in sorted(record.items()):
        if key in VOLATILE:
            out[key] = "<volatile>" if value is not None else None
        elif isinstance(value, dict):
            out[key] = _normalise(value)
        elif isinstance(value, str):
            out[key] = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", value)
        else:
            out[key] = value
    return out


def _run(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, "STRIPE_SYNC_CONFIG": "/nonexistent", **(env or {})})


# The live progress stream (what a console follows a worker process by): its pacing depends on the
# machine's speed, so it is checked for what it adds up to, not line by line.
LIVE_PROGRESS = {"chunk_started", "objects_stored", "objects_estimated", "request_rate"}


def _check_golden(name: str, stdout: str) -> list[dict]:
    records = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    # Chunks finish in any order: compare the records as a sorted multiset.
    normalised = "\n".join(sorted(json.dumps(_normalise(r), sort_keys=True) for r in records
                                  if r.get("kind") not in LIVE_PROGRESS)) + "\n"
    path = GOLDEN / f"{name}.jsonl"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(normalised)
    assert path.exists(), f"no golden file {path}: run with UPDATE_GOLDEN=1 once and review it"
    assert normalised == path.read_text(), f"{name}: output differs from {path}"
    return records


@pytest.fixture(scope="module")
def emulator():
    emu = StripeEmulator(seed=7, customers=30, start=START, end=END).start()
    yield emu
    emu.close()


@pytest.fixture
def settings(clean_db, emulator) -> list[str]:
    return ["--database-url", clean_db, "--stripe-key", emulator.secret_key, "--stripe-api-base", emulator.api_base]


def test_json_output_of_each_command_matches_golden(settings, emulator, clean_db):
    migrate = _run("--headless", "--json", "migrate", *settings)
    assert migrate.returncode == 0, migrate.stderr
    _check_golden("migrate", migrate.stdout)

    backfill = _run("--headless", "--json", "backfill", "customers", "--chunk", "month", *settings)
    assert backfill.returncode == 0, backfill.stderr
    records = _check_golden("backfill_customers", backfill.stdout)
    assert records[-1]["stored"] == len(emulator.objects("customers"))
    live = [r for r in records if r.get("kind") in LIVE_PROGRESS]
    assert sum(r["count"] for r in live if r["kind"] == "objects_stored") == records[-1]["stored"]
    chunks_started = {r["chunk_id"] for r in live if r["kind"] == "chunk_started"}
    assert chunks_started == {r["chunk_id"] for r in records if r.get("kind") == "chunk_done"}
    assert all(not line.startswith("{") for line in backfill.stderr.splitlines()), "stderr carries logs only"

    customer = emulator.objects("customers")[0]["id"]
    sync = _run("--headless", "--json", "sync", customer, *settings)
    assert sync.returncode == 0, sync.stderr
    _check_golden("sync", sync.stdout)

    accounts = _run("--headless", "--json", "accounts", *settings)
    assert accounts.returncode == 0, accounts.stderr
    assert [r["id"] for r in _check_golden("accounts", accounts.stdout)] == [emulator.account_id]

    created = _run("--headless", "--json", "webhooks", "create", "https://example.test/hooks", *settings)
    assert created.returncode == 0, created.stderr
    webhook = _check_golden("webhooks_create", created.stdout)[0]
    shown = json.loads(created.stdout)["secret"]
    assert re.fullmatch(r"whsec_\.\.\.\w{4}", shown), shown
    listed = _run("--headless", "--json", "webhooks", "list", *settings)
    assert [r["id"] for r in _check_golden("webhooks_list", listed.stdout)] == [webhook["id"]]
    deleted = _run("--headless", "--json", "webhooks", "delete", webhook["id"], *settings)
    assert deleted.returncode == 0, deleted.stderr
    _check_golden("webhooks_delete", deleted.stdout)

    status = _run("--headless", "--json", "status", *settings)
    assert status.returncode == 0, status.stderr
    _check_golden("status", status.stdout)

    preview = _run("--headless", "--json", "delete-account", emulator.account_id, *settings)
    assert preview.returncode == 2, "no terminal and no --yes: refused"
    assert "pass --yes" in preview.stderr and "--dry-run" in preview.stderr
    _check_golden("delete_account_dry_run", preview.stdout)
    counts = _run("--headless", "--json", "delete-account", emulator.account_id, "--dry-run", *settings)
    assert counts.returncode == 0, counts.stderr  # a script that wants the counts gets them, exit 0
    assert counts.stdout == preview.stdout
    executed = _run("--headless", "--json", "delete-account", emulator.account_id, "--yes", *settings)
    assert executed.returncode == 0, executed.stderr
    [deletion] = _check_golden("delete_account", executed.stdout)  # the result once, not the preview too
    assert deletion["dry_run"] is False
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM stripe.customers").fetchone() == (0,)
    nothing = _run("--headless", "delete-account", "acct_1NothingHereAtAll", "--yes", *settings)
    assert nothing.returncode == 2 and "nothing to delete" in nothing.stderr, nothing.stderr
    assert nothing.stdout == ""


def test_global_flags_work_on_either_side_of_the_command_and_usage_names_headless(settings):
    after = _run("status", "--headless", "--json", "-v", *settings)
    assert after.returncode == 0, after.stderr
    [record] = [json.loads(line) for line in after.stdout.splitlines() if '"status"' in line]
    assert record["kind"] == "status" and record["schema_revision"]
    usage = _run("--headless", "backfill", "--help")
    assert usage.stdout.startswith("usage: stripe-sync-tui --headless backfill")
    assert "--demo" in usage.stdout and "--json" in usage.stdout
    nested = _run("--headless", "webhooks", "create", "--help")
    assert nested.stdout.startswith("usage: stripe-sync-tui --headless webhooks create")


def test_usage_errors_exit_2_with_a_message(settings):
    cases = [
        (["--headless"], "needs a command"),
        (["migrate"], "is a headless command"),
        (["--headless", "backfill", "widgets", *settings], "unknown object type 'widgets'"),
        (["--headless", "backfill", "all", "--since", "yesterday", *settings], "invalid date"),
        (["--headless", "backfill", "all", "--chunk", "fortnight", *settings], "invalid --chunk"),
        (["--headless", "sync", "zz_123", *settings], "cannot tell the object type"),
        (["--headless", "sync", "cus_x/../../charges/ch_1", *settings], "not a Stripe object id"),
        (["--headless", "status", "--stripe-key", "pk_test_nope12345678"], "not a Stripe secret key"),
    ]
    for args, message in cases:
        result = _run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


async def test_refusals_exit_2_and_name_the_way_forward(settings, clean_db, emulator):
    join = _run("--headless", "backfill", "customers", "--join", *settings)
    assert join.returncode == 2, join.stderr
    assert "no open backfill" in join.stderr and "unexpected" not in join.stderr

    from stripe_sync_core import StripeSync, SyncConfig

    config = SyncConfig(database_url=clean_db, stripe_secret_key=emulator.secret_key,
                        stripe_api_base=emulator.api_base, max_requests_per_second=0)
    async with StripeSync(config) as sync:
        await sync.process_next("all")  # one page of one type: the stepped run stays open
        account = await sync.own_account_id()
    refused = _run("--headless", "delete-account", account, "--yes", *settings)
    assert refused.returncode == 2, refused.stderr
    assert "refused" in refused.stderr and "--abandon-runs" in refused.stderr and "unexpected" not in refused.stderr
    assert "Traceback" not in refused.stderr
    assert "open_run" not in refused.stdout and "interrupted" in refused.stdout  # the run it refused for

    async with StripeSync(config) as sync:  # a live worker holds a chunk of the run: abandoning is refused
        from stripe_sync_core.runs import WorkerLease

        [run] = await sync.open_runs(account)
        async with WorkerLease(sync.backfill.ledger, 60, sync.context.log) as lease:
            assert await sync.backfill.ledger.claim(run.run_id, lease.key, lease.worker_id) is not None
            held = _run("--headless", "delete-account", account, "--abandon-runs", "--yes", *settings)
            assert held.returncode == 2, held.stderr
            assert "live worker" in held.stderr and "force" in held.stderr and "Traceback" not in held.stderr
            assert [r.run_id for r in await sync.open_runs(account)] == [run.run_id]  # nothing changed

    deleted = _run("--headless", "--json", "delete-account", account, "--abandon-runs", "--yes", *settings)
    assert deleted.returncode == 0, deleted.stderr
    kinds = [json.loads(line)["kind"] for line in deleted.stdout.splitlines()]
    assert kinds == ["open_run", "run_abandoned", "account_deletion"]  # --yes: the result, not the preview too
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM stripe._sync_runs").fetchone() == (0,)


def test_one_run_covers_several_types_and_the_stream_counts_429s_and_retries(clean_db, tmp_path):
    """`backfill customers,products`: one run, one summary per type; the live `request_rate` records
    carry the process's request totals, 429s and retries (what the console shows per run)."""
    emu = StripeEmulator(seed=7, customers=30, start=START, end=END, rate_limit=4).start()
    config = tmp_path / "config.toml"  # no budget of its own: Stripe's (the emulator's) 429s pace it
    config.write_text("max_requests_per_second = 0\nmax_retries = 20\ninitial_retry_delay_ms = 20\n"
                      "max_retry_delay_ms = 200\n")
    try:
        result = _run("--headless", "--json", "backfill", "customers,products", "--chunk", "month",
                      "--database-url", clean_db, "--stripe-key", emu.secret_key, "--stripe-api-base", emu.api_base,
                      env={"STRIPE_SYNC_CONFIG": str(config)})
        assert result.returncode == 0, result.stderr
        records = [json.loads(line) for line in result.stdout.splitlines()]
        started = [r for r in records if r["kind"] == "run_started"]
        assert len(started) == 1 and started[0]["objects"] == ["customers", "products"]
        stored = {r["object"]: r["stored"] for r in records if r["kind"] == "backfill"}
        assert stored == {"customers": len(emu.objects("customers")), "products": len(emu.objects("products"))}
        rates = [r for r in records if r["kind"] == "request_rate"]
        assert rates, "a run paced by 429s lasts more than one report period"
        assert {"requests", "rate_limited", "retries"} <= set(rates[-1])
        assert rates[-1]["rate_limited"] >= 1 and rates[-1]["retries"] >= rates[-1]["rate_limited"]
    finally:
        emu.close()


def test_unreachable_database_exits_1_without_traceback(emulator):
    result = _run("--headless", "status", "--database-url", "postgresql://u:pw@127.0.0.1:1/x",
                  "--stripe-key", emulator.secret_key)
    assert result.returncode == 1
    assert "cannot reach PostgreSQL" in result.stderr and "pw@" not in result.stderr
    assert "Traceback" not in result.stderr


def test_every_connection_string_form_works_and_never_shows_its_password(clean_db, emulator):
    """A URL with `?password=`, a key=value string and libpq's PG* variables each reach the database;
    the password (ignored by a trust server, but given) appears in no output, no error."""
    parts = conninfo_to_dict(clean_db)
    keyword = " ".join(f"{k}={v}" for k, v in parts.items()) + " password=Secret"
    query_form = clean_db + ("&" if "?" in clean_db else "?") + "password=Secret"
    libpq = {"PGHOST": str(parts.get("host", "")), "PGPORT": str(parts.get("port", "5432")),
             "PGUSER": str(parts.get("user", "postgres")), "PGDATABASE": str(parts["dbname"]),
             "PGPASSWORD": "Secret"}
    for args, env in (([ "--database-url", keyword], {}), (["--database-url", query_form], {}), ([], libpq)):
        for command in ("migrate", "status"):
            result = _run("--headless", "--json", command, *args, "--stripe-key", emulator.secret_key,
                          "--stripe-api-base", emulator.api_base, env=env)
            assert result.returncode == 0, result.stderr
            assert "Secret" not in result.stdout + result.stderr
    unreachable = _run("--headless", "status", "--database-url", "host=127.0.0.1 port=1 password=Secret dbname=x",
                       "--stripe-key", emulator.secret_key)
    assert unreachable.returncode == 1 and "cannot reach PostgreSQL" in unreachable.stderr
    assert "Secret" not in unreachable.stderr and "Traceback" not in unreachable.stderr


def test_a_wrong_key_is_a_clear_error_that_exits_2(clean_db):
    with StripeEmulator(seed=8, customers=2, accept_keys="own") as emu:
        result = _run("--headless", "backfill", "customers", "--database-url", clean_db,
                      "--stripe-api-base", emu.api_base, "--stripe-key", "sk_test_wrongwrongwrong9876")
    assert result.returncode == 2, result.stderr
    assert "Stripe answered 401" in result.stderr and "Invalid API Key" in result.stderr
    assert "wrongwrong" not in result.stderr and "Traceback" not in result.stderr


def test_stripe_out_of_reach_fails_fast_naming_the_base_url_and_migrates_nothing(clean_db):
    """A server that accepts and never answers, then a port nobody listens on: the command says which
    base URL it could not reach and what to check (not 'contact support@stripe.com'), shows its retries,
    exits 1, and has not touched the database (the check comes before the migration)."""
    import socket

    parts = conninfo_to_dict(clean_db)
    fresh = f"{parts['dbname']}_unmigrated"
    with psycopg.connect(clean_db, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{fresh}"')
    fresh_url = make_conninfo(clean_db, dbname=fresh)
    silent = socket.socket()
    try:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes connections; nothing ever answers
        base = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result = _run("--headless", "backfill", "customers", "--database-url", fresh_url,
                      "--stripe-key", "sk_test_abcdefghijkl1234", "--stripe-api-base", base, timeout=60)
        with psycopg.connect(fresh_url) as conn:
            assert conn.execute("SELECT to_regnamespace('stripe')").fetchone() == (None,)  # not migrated
    finally:
        silent.close()
        with psycopg.connect(clean_db, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{fresh}"')
    assert result.returncode == 1, result.stderr
    assert f"cannot reach the Stripe API at {base} (no answer within" in result.stderr
    assert "check --stripe-api-base" in result.stderr and "support@stripe.com" not in result.stderr
    assert "Traceback" not in result.stderr

    with socket.socket() as probe:  # bound but not listening: refuses, and no other program takes the port
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
        refused = _run("--headless", "sync", "cus_123", "--database-url", clean_db,
                       "--stripe-key", "sk_test_abcdefghijkl1234", "--stripe-api-base", closed, timeout=60)
    assert refused.returncode == 1, refused.stderr
    assert f"Stripe at {closed} is not answering (connection refused, try 1); retrying" in refused.stderr
    assert f"cannot reach the Stripe API at {closed} (connection refused)" in refused.stderr


def test_demo_backfill_all_end_to_end(clean_db):
    result = _run("--headless", "--json", "--demo", "backfill", "all", "--database-url", clean_db, timeout=300)
    assert result.returncode == 0, result.stderr
    stored = {r["object"]: r["stored"] for r in map(json.loads, result.stdout.splitlines())
              if r.get("kind") == "backfill"}
    from stripe_sync_tui.demo import DEMO_CUSTOMERS, DEMO_SEED

    with StripeEmulator(seed=DEMO_SEED, customers=DEMO_CUSTOMERS) as reference, psycopg.connect(clean_db) as conn:
        for table, count in stored.items():
            objects = reference.objects(EMULATOR_TYPE.get(table, table))
            if table == "payment_methods":  # Stripe lists payment methods per customer only
                objects = [o for o in objects if o.get("customer")]
            expected = len(objects)
            rows = conn.execute(f"SELECT count(*) FROM stripe.{table} WHERE NOT deleted").fetchone()[0]
            assert rows == expected, table
            assert count >= expected, table


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_a_process_in_a_session_of_its_own_heeds_sigint_even_inherited_ignored():
    """The console stops its workers with SIGINT; started from a console that was itself started in the
    background of a script (SIGINT ignored, and inherited), they must still stop."""
    proc = subprocess.Popen([*CLI, "--headless", "emulator", "--port", "0", "--customers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_ignore_sigint)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("Objects:"):
                break
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ctrl_c_during_a_backfill_leaves_a_resumable_run(clean_db, tmp_path):
    emu = StripeEmulator(seed=3, customers=150, start=START, end=END, latency_ms=20).start()
    # The emulator limits nothing; the test key's default budget (25/s) would only make the test slow.
    config = tmp_path / "config.toml"
    config.write_text("max_requests_per_second = 0\n")
    try:
        args = ["--headless", "--json", "backfill", "all", "--chunk", "week", "--concurrency", "2",
                "--database-url", clean_db, "--stripe-key", emu.secret_key, "--stripe-api-base", emu.api_base]
        env = {"STRIPE_SYNC_CONFIG": str(config)}
        proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **env})
        assert proc.stdout is not None
        for line in proc.stdout:  # wait until real work is under way
            if '"chunk_done"' in line:
                break
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "resumable" in err and "Traceback" not in err
        with psycopg.connect(clean_db) as conn:
            open_runs = conn.execute("SELECT count(*) FROM stripe._sync_runs WHERE closed_at IS NULL").fetchone()[0]
            running = conn.execute("SELECT count(*) FROM stripe._sync_obj_runs WHERE status = 'running'").fetchone()[0]
        assert open_runs == 1 and running == 0
        resumed = _run(*args, env=env, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        with psycopg.connect(clean_db) as conn:
            assert conn.execute("SELECT count(*) FROM stripe.customers").fetchone()[0] == len(emu.objects("customers"))
            assert conn.execute("SELECT count(*) FROM stripe._sync_runs WHERE closed_at IS NULL").fetchone()[0] == 0
    finally:
        emu.close()


@pytest.mark.parametrize("stop", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_a_closed_terminal_or_sigterm_also_stops_the_embedded_database(tmp_path, stop):
    import psutil

    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["STRIPE_SYNC_DATA_DIR"] = str(tmp_path)
    proc = subprocess.Popen([*CLI, "--headless", "--demo", "listen", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env)

    def embedded_servers() -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter(["cmdline"]):
            if str(tmp_path) in " ".join(process.info["cmdline"] or []) and "postgres" in " ".join(
                    process.info["cmdline"] or []):
                found.append(process)
        return found

    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the listener is up: the demo's database runs
            if line.startswith("Ready!"):
                break
        assert embedded_servers(), "the demo should run an embedded PostgreSQL"
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        deadline = time.monotonic() + 15
        while embedded_servers() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert embedded_servers() == []
    finally:
        if proc.poll() is None:
            proc.kill()
        for process in embedded_servers():
            process.kill()
