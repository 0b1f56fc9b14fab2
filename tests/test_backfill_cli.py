"""`backfill customers invoices charges`: several types in one command and one run, in any order, by
any of their names, and `all --exclude ...`; a wrong name is a usage error that lists the right ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import pytest

from stripe_sync_core.backfill import ALL, NOT_IN_ALL, tables_for
from stripe_sync_core.registry import REGISTRY, UnknownObjectType
from stripe_sync_emulator import StripeEmulator
from stripe_sync_tui.headless import UsageError, backfill_objects

CLI = [sys.executable, "-m", "stripe_sync_tui.cli"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
                          env={**os.environ, "STRIPE_SYNC_CONFIG": "/nonexistent"})


def test_the_same_types_in_any_order_and_by_any_name_are_the_same_request():
    """The run is keyed by its registry tables: a resumed command finds its open run whatever the
    spelling, and the stored objects are the same."""
    asked = backfill_objects(["charges", "customer", "invoices"], [])
    assert asked == ["customers", "invoices", "charges"]  # registry order: parents first
    assert backfill_objects(["invoice,charge", "cus" + "tomers"], []) == asked  # aliases, commas
    assert backfill_objects(["checkout.session", "invoiceitem"], []) == ["invoice_items", "checkout_sessions"]
    assert backfill_objects(["all"], []) == ALL
    assert backfill_objects(["customers", "all"], []) == ALL


def test_exclude_leaves_types_out_of_all():
    kept = backfill_objects(["all"], ["payment_methods,active_entitlement", "tax_ids"])
    assert isinstance(kept, list)
    assert kept == [t for t in tables_for(ALL) if t not in {"payment_methods", "active_entitlements", "tax_ids"}]
    assert "accounts" not in kept and NOT_IN_ALL <= set(REGISTRY)
    assert backfill_objects(["customers", "invoices"], ["invoice"]) == ["customers"]


@pytest.mark.parametrize(("objects", "exclude", "message"), [
    (["customers", "widgets"], [], "unknown object type 'widgets'; supported: accounts, active_entitlements"),
    (["all"], ["gadgets"], "unknown object type 'gadgets'"),
    ([], [], "name the objects to backfill"),
    (["customers"], ["customers"], "leaves no object to backfill"),
    (["customers"], ["invoices"], "--exclude invoices: not among the objects to backfill"),
])
def test_a_wrong_selection_says_what_is_wrong(objects, exclude, message):
    with pytest.raises((UsageError, UnknownObjectType)) as raised:
        backfill_objects(objects, exclude)
    assert message in str(raised.value)


def test_a_wrong_selection_exits_2_before_any_connection():
    """No database or key is reached (the URL points nowhere): the selection is checked first."""
    nowhere = ["--database-url", "postgresql://nobody@127.0.0.1:1/none", "--stripe-key", "sk_test_" + "x" * 24]
    for args, message in [(["charges", "all", "--exclude", "gadgets"], "unknown object type 'gadgets'"),
                          ([], "name the objects to backfill")]:
        result = _run("--headless", "backfill", *args, *nowhere)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_several_types_in_one_command_are_one_run(clean_db):
    emu = StripeEmulator(seed=11, customers=12, start="2025-01-01", end="2025-06-30", rate_limit="off").start()
    settings = ["--database-url", clean_db, "--stripe-key", emu.secret_key, "--stripe-api-base", emu.api_base]
    try:
        result = _run("--headless", "--json", "backfill", "charges", "customer", "invoices", *settings)
        assert result.returncode == 0, result.stderr
        records = [json.loads(line) for line in result.stdout.splitlines()]
        [started] = [r for r in records if r["kind"] == "run_started"]
        assert started["objects"] == ["customers", "invoices", "charges"]
        stored = {r["object"]: r["stored"] for r in records if r["kind"] == "backfill"}
        for table in ("customers", "invoices", "charges"):
            assert stored[table] == len(emu.objects(table)) > 0, table

        plan = _run("--headless", "--json", "plan", "customers", "payment_methods", *settings)
        assert plan.returncode == 0, plan.stderr
        records = [json.loads(line) for line in plan.stdout.splitlines()]
        counts = {r["object"]: (r["objects"], r["counted"]) for r in records if r["kind"] == "plan_count"}
        customers = len(emu.objects("customers"))
        assert counts == {"customers": (customers, "stored")}  # the rows the backfill above stored
        [estimate] = [r for r in records if r["kind"] == "plan_estimate"]
        assert estimate["requests"] == 1 + customers  # a page of customers, then one list per customer
        assert (estimate["requests_per_second"], estimate["endpoint_requests_per_second"]) == (25, 25)  # test key

        excluded = _run("--headless", "--json", "backfill", "all", "--exclude",
                        "payment_methods,active_entitlements,customers,invoices,charges", "--chunk", "month",
                        *settings)
        assert excluded.returncode == 0, excluded.stderr
        records = [json.loads(line) for line in excluded.stdout.splitlines()]
        [started] = [r for r in records if r["kind"] == "run_started"]
        assert {"payment_methods", "active_entitlements", "customers"}.isdisjoint(started["objects"])
        assert {"products", "prices", "subscriptions", "refunds"} <= set(started["objects"])
        with psycopg.connect(clean_db) as conn:
            runs = conn.execute("SELECT count(*) FROM stripe._sync_runs").fetchone()
            payment_methods = conn.execute("SELECT count(*) FROM stripe.payment_methods").fetchone()
        assert runs == (2,)  # one run per command, however many types
        assert payment_methods == (0,)  # excluded: not listed per customer
    finally:
        emu.close()
