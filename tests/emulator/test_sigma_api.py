"""Stripe Sigma on the emulator: query runs over HTTP with the official SDK, result files, the CSV
format, keyset paging, changes landing with a new ``batch_timestamp``, faults and test-mode refusal."""

from __future__ import annotations

import argparse
import csv
import io
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import stripe
from emulator_helpers import client_for, control, raw

from stripe_sync_emulator import StripeEmulator
from stripe_sync_emulator.cli import add_emulator_arguments, build_from_args
from stripe_sync_emulator.sigma.schema import tables, trino_double

TS_FORMAT = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}"


def live(emu: StripeEmulator) -> stripe.StripeClient:
    return client_for(emu, key=emu.live_secret_key)


def create_run(client: stripe.StripeClient, sql: str, **params: Any) -> dict[str, Any]:
    resp = client.raw_request("post", "/v1/sigma/query_runs", sql=sql, **params)
    return client.deserialize(resp, api_mode="V1").to_dict()


def get_run(client: stripe.StripeClient, run_id: str, **params: Any) -> dict[str, Any]:
    resp = client.raw_request("get", f"/v1/sigma/query_runs/{run_id}", **params)
    return client.deserialize(resp, api_mode="V1").to_dict()


def wait_run(client: stripe.StripeClient, run: dict[str, Any], max_polls: int = 20) -> dict[str, Any]:
    for _ in range(max_polls):
        if run["status"] not in ("running", "pending"):
            return run
        run = get_run(client, run["id"])
    raise AssertionError(f"run {run['id']} still {run['status']}")


def contents(url: str, key: str) -> tuple[str, dict[str, str]]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read().decode(), dict(resp.headers)


def query(emu: StripeEmulator, sql: str) -> list[dict[str, str]]:
    """Run ``sql`` to the end and read its result file (over HTTP, through the file's ``url``)."""
    client = live(emu)
    run = wait_run(client, create_run(client, sql))
    assert run["status"] == "succeeded", run
    f = client.v1.files.retrieve(run["result"]["file"])
    text, _ = contents(f.url, emu.live_secret_key)
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def sigma_emulator(stripe_emulator_factory) -> StripeEmulator:
    return stripe_emulator_factory(customers=30, sigma={"polls": 0})


def test_query_run_takes_polls_then_succeeds_with_a_csv_file(stripe_emulator_factory):
    emu = stripe_emulator_factory(customers=20, sigma={"polls": 2})
    client = live(emu)
    run = create_run(client, "SELECT id, amount, captured, created FROM charges ORDER BY id ASC LIMIT 5")
    assert run["object"] == "sigma.sigma_query_run" and run["id"].startswith("qry_")
    assert run["livemode"] is True and run["status"] == "running" and run["result"] is None
    assert run["finalized_at"] is None and run["error"] is None and run["sql"].startswith("SELECT id")
    statuses = [get_run(client, run["id"])["status"] for _ in range(3)]
    assert statuses == ["running", "running", "succeeded"]
    done = get_run(client, run["id"])
    assert done["finalized_at"] >= done["created"] and done["result"]["file"].startswith("file_")

    # The file object (through the SDK) names where its contents are: the emulator's own address.
    f = client.v1.files.retrieve(done["result"]["file"])
    assert f.object == "file" and f.type == "csv" and f.purpose == "sigma_scheduled_query"
    assert f.url == f"{emu.api_base}/v1/files/{f.id}/contents"
    text, headers = contents(f.url, emu.live_secret_key)
    assert headers["Content-Type"].startswith("text/csv") and f.size == len(text.encode())
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["id", "amount", "captured", "created"] and len(rows) == 6
    ids = [r[0] for r in rows[1:]]
    assert ids == sorted(ids) and all(i.startswith("ch_") for i in ids)

    # Expanding the file inlines the object; Stripe's other success word is a setting.
    first = create_run(client, "SELECT 1 AS one")
    for _ in range(2):
        get_run(client, first["id"])
    expanded = get_run(client, first["id"], expand=["result.file"])
    assert expanded["result"]["file"]["object"] == "file" and expanded["result"]["file"]["size"] == len("one\n1\n")
    emu.set_sigma(polls=0, success_status="completed")
    assert create_run(client, "SELECT 1 AS one")["status"] == "completed"
    with pytest.raises(stripe.InvalidRequestError, match="No such sigma.sigma_query_run"):
        get_run(client, "qry_missing")


def test_csv_is_written_as_sigma_writes_it(sigma_emulator):
    emu = sigma_emulator
    client = live(emu)
    cus = client.v1.customers.create(params={"name": 'Smith, "Jo"', "email": "jo@example.com",
                                             "metadata": {"note": "line one\nline two"}})
    [row] = query(emu, f"SELECT id, name, email, delinquent, created, balance, phone, deleted FROM customers "
                       f"WHERE id = '{cus.id}'")
    assert row["name"] == 'Smith, "Jo"' and row["delinquent"] == "false" and row["balance"] == "0"
    assert row["phone"] == "" and row["deleted"] == ""  # NULL is an empty field
    assert row["created"] == time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(cus.created)) + ".000"
    [meta] = query(emu, f"SELECT key, value FROM customers_metadata WHERE customer_id = '{cus.id}'")
    assert meta == {"key": "note", "value": "line one\nline two"}
    # Doubles as Trino prints them.
    assert [trino_double(x) for x in (100.0, 0.25, 1e-4, 12345678.9, -2.5e-7)] == [
        "100.0", "0.25", "1.0E-4", "1.23456789E7", "-2.5E-7"]
    [fx] = query(emu, "SELECT CAST(1 AS double) / 8 AS ratio, CAST(1 AS double) / 20000 AS small")
    assert fx == {"ratio": "0.125", "small": "5.0E-5"}


def _keyset_pages(emu: StripeEmulator, table: str, size: int,
                  keys: list[str] | None = None) -> tuple[list[dict[str, str]], int]:
    """Page through ``table`` as the engine does: ORDER BY the key, ``row > cursor`` expanded."""
    st = tables()[table]
    keys = keys or list(st.primary_key)

    def literal(value: str, typ: str | None) -> str:
        if typ == "timestamp":
            return f"timestamp '{value}'"
        if typ in ("bigint", "double"):
            return value
        return "'" + value.replace("'", "''") + "'"

    got: list[dict[str, str]] = []
    cursor: list[str] | None = None
    pages = 0
    while True:
        where = ""
        if cursor is not None:
            ors = []
            for i, k in enumerate(keys):
                eqs = [f"{keys[j]} = {literal(cursor[j], st.type_of(keys[j]))}" for j in range(i)]
                ors.append("(" + " AND ".join([*eqs, f"{k} > {literal(cursor[i], st.type_of(k))}"]) + ")")
            where = f" WHERE ({' OR '.join(ors)})"
        rows = query(emu, f"SELECT * FROM {table}{where} ORDER BY {', '.join(keys)} ASC LIMIT {size}")
        pages += 1
        got += rows
        if len(rows) < size:
            return got, pages
        cursor = [rows[-1][k] for k in keys]


def test_keyset_paging_reads_every_row_once(sigma_emulator):
    emu = sigma_emulator
    for table, size in (("charges", 40), ("subscription_item_change_events", 25), ("exchange_rates_from_usd", 100)):
        truth = emu.sigma_rows(table)
        got, pages = _keyset_pages(emu, table, size)
        key = tables()[table].primary_key
        assert len(truth) > size and pages == len(truth) // size + 1
        assert sorted(tuple(r[k] for k in key) for r in got) == sorted(tuple(r[k] for k in key) for r in truth)
        assert len({tuple(r[k] for k in key) for r in got}) == len(got)
    # An incremental pass: ordered by landing time, then id.
    got, _ = _keyset_pages(emu, "invoice_line_items", 50, keys=["batch_timestamp", "id"])
    assert sorted(r["id"] for r in got) == sorted(r["id"] for r in emu.sigma_rows("invoice_line_items"))
    assert [(r["batch_timestamp"], r["id"]) for r in got] == sorted((r["batch_timestamp"], r["id"]) for r in got)
    # A timestamp cursor column compares as time, whatever precision the literal has.
    [first] = query(emu, "SELECT min(date) AS d FROM exchange_rates_from_usd")
    later = query(emu, f"SELECT date FROM exchange_rates_from_usd WHERE date > timestamp '{first['d'][:19]}' "
                       "ORDER BY date LIMIT 1")
    assert later[0]["date"] > first["d"] and later[0]["date"].endswith("00:00:00.000")


def test_reporting_tables_agree_with_the_api(sigma_emulator):
    emu = sigma_emulator
    client = live(emu)
    names = tables()
    assert len(names) == 187
    counts = {t: int(emu.sigma_count(t)) for t in names}
    filled = [t for t, n in counts.items() if n > 0]
    assert len(filled) >= 20, filled
    for t in ("balance_transactions", "charges", "customers", "invoices", "invoice_line_items", "subscriptions",
              "subscription_item_change_events", "transfers", "refunds", "disputes", "prices", "products",
              "coupons", "payment_intents"):
        assert counts[t] > 0, t
    api_customers = {c.id for c in client.v1.customers.list(params={"limit": 100}).auto_paging_iter()}
    [n] = query(emu, "SELECT count(*) AS n FROM customers")
    assert int(n["n"]) == len(api_customers) == counts["customers"]
    charges = {c["id"]: c for c in emu.objects("charges")}
    rows = {r["id"]: r for r in emu.sigma_rows("charges")}
    assert rows.keys() == charges.keys()
    some = next(iter(charges.values()))
    assert rows[some["id"]]["amount"] == str(some["amount"]) and rows[some["id"]]["customer_id"] == some["customer"]
    # Payouts show in transfers, as on Stripe.
    payouts = {p["id"] for p in emu.objects("payouts")}
    assert payouts and payouts <= {r["id"] for r in emu.sigma_rows("transfers")}
    lines = emu.sigma_rows("invoice_line_items")
    assert len(lines) == emu.counts()["invoice_lines"] and all(r["invoice_id"] for r in lines)


def test_changes_land_with_a_new_batch_timestamp(sigma_emulator):
    emu = sigma_emulator
    client = live(emu)
    before = {r["id"]: r for r in emu.sigma_rows("customers")}
    changed, removed = sorted(before)[:2]
    emu.clock.freeze(emu.clock.now() + 3600)
    mark = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(emu.clock.time() - 1))
    added = client.v1.customers.create(params={"email": "new@example.com"})
    client.v1.customers.update(changed, params={"name": "Renamed"})
    client.v1.customers.delete(removed)

    fresh = query(emu, f"SELECT id, name, deleted, batch_timestamp FROM customers "
                       f"WHERE batch_timestamp > timestamp '{mark}' ORDER BY id")
    assert {r["id"] for r in fresh} == {added.id, changed, removed}
    by_id = {r["id"]: r for r in fresh}
    assert by_id[changed]["name"] == "Renamed" and by_id[removed]["deleted"] == "true"
    after = {r["id"]: r for r in emu.sigma_rows("customers")}
    untouched = set(before) - {changed, removed}
    assert all(after[i] == before[i] for i in untouched)
    # A row that changed once keeps its landing time until it changes again.
    emu.clock.advance(60)
    assert {r["id"]: r for r in emu.sigma_rows("customers")} == after

    # Canceling a subscription ends its items in the revenue table (rows read from two types).
    sub = next(s for s in emu.objects("subscriptions") if s["status"] == "active")
    client.v1.subscriptions.cancel(sub["id"])
    events = query(emu, f"SELECT subscription_item_id, event_type, mrr_change FROM subscription_item_change_events "
                        f"WHERE subscription_id = '{sub['id']}' ORDER BY event_timestamp, event_type")
    items = {i["id"] for i in sub["items"]["data"]}
    assert {e["subscription_item_id"] for e in events} == items
    ends = [e for e in events if e["event_type"] == "ACTIVE_END"]
    starts = {e["subscription_item_id"]: int(e["mrr_change"]) for e in events if e["event_type"] == "ACTIVE_START"}
    assert len(ends) == len(items) and all(int(e["mrr_change"]) == -starts[e["subscription_item_id"]] for e in ends)


def test_failing_and_invalid_queries_end_failed(stripe_emulator_factory):
    emu = stripe_emulator_factory(customers=20, sigma={"polls": 1, "failing_tables": {"invoices": "Query timed out"}})
    client = live(emu)
    run = create_run(client, "SELECT * FROM invoices LIMIT 10")
    assert run["status"] == "running"
    run = wait_run(client, run)
    assert run["status"] == "failed" and run["error"] == {"message": "Query timed out"} and run["result"] is None
    for sql in ("SELEC id FROM charges", "DELETE FROM customers", "SELECT * FROM charges; SELECT 1",
                "SELECT * FROM charges WHERE created > timestamp 'yesterday'"):
        failed = wait_run(client, create_run(client, sql))
        assert failed["status"] == "failed" and failed["error"]["message"], sql
    assert wait_run(client, create_run(client, "SELECT count(*) FROM charges"))["status"] == "succeeded"
    assert emu.sigma_count("customers") > 0  # the DELETE changed nothing


def test_inaccessible_tables_are_named(stripe_emulator_factory):
    emu = stripe_emulator_factory(customers=20, sigma={"polls": 0})
    client = live(emu)
    with pytest.raises(stripe.InvalidRequestError, match=r"do not exist or are inaccessible: \[no_such_table\]"):
        create_run(client, "SELECT * FROM no_such_table")
    # Set through the control API, as a test of another process would.
    settings = control(emu, "sigma", {"inaccessible_tables": ["disputes", "refunds"]})
    assert settings["inaccessible_tables"] == ["disputes", "refunds"]
    with pytest.raises(stripe.InvalidRequestError, match=r"inaccessible: \[disputes, refunds\]"):
        create_run(client, "SELECT d.id FROM disputes d JOIN refunds r ON r.charge_id = d.charge_id")
    assert create_run(client, "SELECT id FROM charges LIMIT 1")["status"] == "succeeded"
    # Or as the run's failure, the other way Stripe reports it.
    emu.set_sigma(inaccessible_error="run")
    run = create_run(client, "SELECT * FROM disputes")
    assert run["status"] == "failed" and "inaccessible: [disputes]" in run["error"]["message"]
    status, _, body = raw(emu, "POST", "/_emulator/sigma", key=None, body="inaccessible_tables=nope")
    assert status == 400 and "Unknown Sigma table: nope" in body["error"]["message"]


def test_test_mode_keys_are_refused(sigma_emulator):
    emu = sigma_emulator
    for method, path, body in (("POST", "/v1/sigma/query_runs", "sql=SELECT+1"),
                               ("GET", "/v1/sigma/query_runs/qry_x", None)):
        status, _, answer = raw(emu, method, path, body=body)
        assert status == 400 and answer["error"]["message"] == "This API surface is not enabled for testmode usage"
    run = create_run(live(emu), "SELECT 1 AS one")
    status, _, _ = raw(emu, "GET", f"/v1/files/{run['result']['file']}")
    assert status == 404  # a live file is not there for a test key
    with pytest.raises(urllib.error.HTTPError) as err:
        contents(f"{emu.api_base}/v1/files/{run['result']['file']}/contents", emu.secret_key)
    assert err.value.code == 404


def test_synthetic_rows_make_a_large_table(sigma_emulator):
    emu = sigma_emulator
    base = emu.sigma_count("balance_transactions")
    emu.set_sigma(synthetic_rows={"balance_transactions": 2500})
    assert emu.sigma_count("balance_transactions") == base + 2500
    got, pages = _keyset_pages(emu, "balance_transactions", 1000)
    assert len(got) == base + 2500 and len({r["id"] for r in got}) == len(got) and pages == 3
    synth = [r for r in got if "synth" in r["id"]]
    assert len(synth) == 2500 and all(r["currency"] == "usd" and r["created"] for r in synth)
    emu.set_sigma(synthetic_rows={})
    assert emu.sigma_count("balance_transactions") == base


def test_file_reads_share_the_files_api_limit(stripe_emulator_factory):
    emu = stripe_emulator_factory(customers=10, rate_limit="auto", sigma={"polls": 0})
    run = create_run(live(emu), "SELECT 1 AS one")
    fid = run["result"]["file"]
    codes = []
    t0 = time.monotonic()
    for i in range(45):
        path = f"/v1/files/{fid}/contents" if i % 2 else f"/v1/files/{fid}"
        req = urllib.request.Request(emu.api_base + path, headers={"Authorization": f"Bearer {emu.live_secret_key}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                codes.append(resp.status)
        except urllib.error.HTTPError as exc:
            codes.append(exc.code)
            if exc.code == 429:
                assert exc.headers["Stripe-Rate-Limited-Reason"] == "endpoint-rate"
    elapsed = time.monotonic() - t0
    assert 20 <= codes.count(200) <= 21 + 20 * elapsed and 429 in codes


def test_emulator_command_flags_set_sigma():
    parser = argparse.ArgumentParser()
    add_emulator_arguments(parser)
    args = parser.parse_args(["--port", "0", "--customers", "5", "--sigma-polls", "0",
                              "--sigma-rows", "balance_transactions=10", "--sigma-inaccessible", "disputes,refunds",
                              "--sigma-failing", "invoices"])
    settings = build_from_args(args).control.sigma()
    assert settings["polls"] == 0 and settings["synthetic_rows"] == {"balance_transactions": 10}
    assert settings["inaccessible_tables"] == ["disputes", "refunds"] and list(settings["failing_tables"]) == ["invoices"]
    for bad in (["--sigma-rows", "balance_transactions"], ["--sigma-inaccessible", "no_such_table"]):
        with pytest.raises(ValueError, match="sigma-rows takes TABLE=N|Unknown Sigma table: no_such_table"):
            build_from_args(parser.parse_args(["--port", "0", "--customers", "5", *bad]))
