"""`verify`: the database compared with Stripe (the emulator over HTTP), each kind of drift found,
`repair` making the next verify clean without overwriting a later state, `sample` and `since`
limiting the work, and incremental runs refreshing the fields Stripe changes without an event."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from backfill_support import engine, list_requests, stored_rows

from stripe_sync_core import VerifyResult
from stripe_sync_core.verify import InvalidSample
from stripe_sync_emulator import StripeEmulator

DRIFT_TABLES = ["customers", "prices", "subscriptions", "subscription_items", "charges", "disputes"]


def _by_type(results: list[VerifyResult]) -> dict[str, VerifyResult]:
    return {r.object: r for r in results}


def _drifted(results: list[VerifyResult]) -> dict[str, dict[str, int]]:
    return {r.object: {k: getattr(r, k) for k in ("missing", "deleted", "changed", "stale") if getattr(r, k)}
            for r in results if r.drift}


def _subscribed_price(emu: StripeEmulator) -> str:
    """A price that some subscription item of the account embeds."""
    return emu.objects("subscriptions")[0]["items"]["data"][0]["price"]["id"]


@pytest.fixture(name="emu")
def emulator_fixture():
    with StripeEmulator(seed=81, customers=12, start="2024-01-01", end="2024-12-31") as emu:
        yield emu


async def test_a_fresh_backfill_verifies_clean_and_every_kind_of_drift_is_found_then_repaired(clean_db, emu):
    async with engine(clean_db, emu) as sync:
        await sync.process_until_done("all")
        clean = await sync.verify("all")
        assert _drifted(clean) == {}
        assert _by_type(clean)["customers"].checked == len(emu.objects("customers"))

        customers = emu.objects("customers")
        # Changes no event announces (a lost webhook, or Stripe's own silence):
        created = emu.create("customers", {"email": "silent@example.com"}, silent=True)
        emu.action("customers", customers[0]["id"], "delete", silent=True)
        emu.action("customers", customers[1]["id"], "update", {"name": "Renamed Quietly"}, silent=True)
        price = _subscribed_price(emu)
        emu.action("prices", price, "update", {"metadata": {"tier": "gold"}}, silent=True)
        charge = next(c for c in emu.objects("charges") if c["status"] == "succeeded" and not c["disputed"])
        dispute = emu.create("disputes", {"charge": charge["id"]}, silent=True)

        found = _by_type(await sync.verify(DRIFT_TABLES))
        assert [d.id for d in found["customers"].differences if d.kind == "missing"] == [created["id"]]
        assert [d.id for d in found["customers"].differences if d.kind == "deleted"] == [customers[0]["id"]]
        changed = [d for d in found["customers"].differences if d.kind == "changed"]
        assert [(d.id, d.fields) for d in changed] == [(customers[1]["id"], ("name",))]
        assert [(d.id, d.kind) for d in found["prices"].differences] == [(price, "changed")]
        # Embedded stale objects: the price inside subscription items, the charge's `disputed` flag.
        assert found["subscriptions"].stale >= 1 and found["subscriptions"].changed == 0
        assert {f for d in found["subscriptions"].differences for f in d.fields} <= {
            "items.data.price.metadata.tier", "items.data.plan.metadata.tier"}
        assert found["subscription_items"].stale >= 1 and found["subscription_items"].changed == 0
        assert [(d.id, d.kind, d.fields) for d in found["charges"].differences] == [
            (charge["id"], "stale", ("disputed",))]
        assert [(d.id, d.kind) for d in found["disputes"].differences] == [(dispute["id"], "missing")]

        repaired = await sync.verify(DRIFT_TABLES, repair=True)
        assert all(r.repaired == r.drift for r in repaired)
        assert _drifted(await sync.verify(DRIFT_TABLES)) == {}
        rows = stored_rows(clean_db, "customers")
        assert rows[customers[0]["id"]].get("deleted") is True  # flagged, its fields kept
        assert rows[customers[1]["id"]]["name"] == "Renamed Quietly"

        last = {r["object"]: r for r in await sync.last_verify_results()}
        assert last["customers"]["checked"] == len(customers) + 1 and last["customers"]["missing"] == 0


async def test_drift_over_many_pages_is_counted_whole_and_only_the_first_differences_are_kept(clean_db, emu,
                                                                                             monkeypatch):
    """Each page Stripe lists is compared as it arrives, and the stored rows it did not list are read a
    page at a time: the counts stay complete across pages, the differences kept are the first by kind
    and id, and a repair on the way leaves the next verify clean."""
    import stripe_sync_core.listing
    import stripe_sync_core.verify

    monkeypatch.setattr(stripe_sync_core.listing, "PAGE_SIZE", 4)  # 12 customers: several pages each way
    monkeypatch.setattr(stripe_sync_core.verify, "UNLISTED_PAGE", 2)
    monkeypatch.setattr(stripe_sync_core.verify, "EXAMPLES", 3)  # 12 differences: trimmed on the way
    async with engine(clean_db, emu) as sync:
        await sync.process_until_done("customers")
        customers = emu.objects("customers")
        assert len(customers) == 12
        for customer in customers[:5]:
            emu.action("customers", customer["id"], "delete", silent=True)
        for customer in customers[5:9]:
            emu.action("customers", customer["id"], "update", {"name": "Renamed Quietly"}, silent=True)
        created = [emu.create("customers", {"email": f"new{n}@example.com"}, silent=True)["id"] for n in range(3)]

        (found,) = await sync.verify("customers")
        assert (found.missing, found.deleted, found.changed, found.stale) == (3, 5, 4, 0)
        assert (found.stored_rows, found.stripe_objects, found.checked) == (12, 10, 15)
        every = sorted([("missing", i) for i in created] + [("deleted", c["id"]) for c in customers[:5]]
                       + [("changed", c["id"]) for c in customers[5:9]],
                       key=lambda d: (("missing", "deleted", "changed").index(d[0]), d[1]))
        assert [(d.kind, d.id) for d in found.differences] == every[:3]

        (repaired,) = await sync.verify("customers", repair=True)
        assert repaired.repaired == repaired.drift == 12
        (clean,) = await sync.verify("customers")
        assert clean.clean and (clean.stored_rows, clean.stripe_objects, clean.checked) == (15, 10, 15)
    rows = stored_rows(clean_db, "customers")
    assert all(rows[c["id"]].get("deleted") is True for c in customers[:5])
    assert all(rows[c["id"]]["name"] == "Renamed Quietly" for c in customers[5:9]) and set(created) <= set(rows)


async def test_a_row_written_after_stripes_answer_is_neither_judged_nor_overwritten(clean_db, emu):
    async with engine(clean_db, emu) as sync:
        await sync.process_until_done("customers")
        customer = emu.objects("customers")[0]
        emu.action("customers", customer["id"], "update", {"name": "From Stripe"}, silent=True)
        later = datetime.now(UTC) + timedelta(hours=1)  # a webhook's state of a later second, say
        with psycopg.connect(clean_db, autocommit=True) as conn:
            conn.execute("UPDATE stripe.customers SET _raw_data = _raw_data || '{\"name\": \"Later\"}', "
                         "_last_synced_at = %s WHERE id = %s", (later, customer["id"]))
        (result,) = await sync.verify("customers", repair=True)
        assert (result.checked, result.drift, result.repaired) == (len(emu.objects("customers")), 0, 0)
        assert stored_rows(clean_db, "customers")[customer["id"]]["name"] == "Later"


async def test_sample_and_since_limit_the_work(clean_db, emu):
    async with engine(clean_db, emu) as sync:
        await sync.process_until_done("customers")
        customers = emu.objects("customers")  # newest first
        emu.reset_stats()
        (sampled,) = await sync.verify("customers", sample=3)
        # The newest three (one page of three) and three random stored rows (one retrieve each, unless listed).
        assert 3 <= sampled.checked <= 6 and sampled.sample == 3 and sampled.clean
        assert list_requests(emu, "GET /v1/customers") == 1
        assert list_requests(emu, "GET /v1/customers/{id}") <= 3

        oldest = customers[-1]
        emu.action("customers", oldest["id"], "update", {"name": "Old Drift"}, silent=True)
        since = customers[2]["created"]
        (recent,) = await sync.verify("customers", since=since)
        assert recent.stripe_objects == recent.checked == sum(1 for c in customers if c["created"] >= since) < 12
        assert recent.clean  # the drift is older than `since`
        (everything,) = await sync.verify("customers")
        assert [d.id for d in everything.differences] == [oldest["id"]]

        with pytest.raises(InvalidSample):
            await sync.verify("customers", sample=0)


async def test_incremental_runs_refresh_fields_stripe_changes_without_an_event(clean_db, emu):
    async with engine(clean_db, emu) as sync:
        await sync.process_until_done("all")
        price = _subscribed_price(emu)
        charge = next(c for c in emu.objects("charges") if c["status"] == "succeeded" and not c["disputed"])
        await sync.stripe.post(f"/v1/prices/{price}", {"metadata": {"tier": "gold"}})  # price.updated
        emu.create("disputes", {"charge": charge["id"]})  # charge.dispute.created; the charge gets no event
        customer = emu.objects("customers")[0]["id"]
        item = await sync.stripe.post("/v1/invoiceitems", {"customer": customer, "amount": 500, "currency": "usd"})
        invoice = await sync.stripe.post("/v1/invoices", {"customer": customer,
                                                          "pending_invoice_items_behavior": "include"})
        await sync.process_until_done("all")  # incremental: the events since the first run
        assert stored_rows(clean_db, "charges")[charge["id"]]["disputed"] is True
        assert stored_rows(clean_db, "invoice_items")[item["id"]]["invoice"] == invoice["id"]
        items = [i for i in stored_rows(clean_db, "subscription_items").values() if i["price"]["id"] == price]
        assert items and all(i["price"]["metadata"] == {"tier": "gold"} for i in items)
        assert _drifted(await sync.verify(["charges", "subscriptions", "subscription_items", "prices",
                                           "invoice_items"])) == {}


async def test_a_page_of_price_updates_refreshes_the_items_embedding_any_of_those_prices(clean_db, emu):
    """After two `price.updated`, an incremental run refreshes the subscription items embedding either price
    (found by the price ids each row embeds, one lookup per page of events)."""
    async with engine(clean_db, emu) as sync:
        await sync.process_until_done("all")
        prices = list(dict.fromkeys(item["price"]["id"] for subscription in emu.objects("subscriptions")
                                    for item in subscription["items"]["data"]))[:2]
        assert len(prices) == 2
        for price in prices:
            await sync.stripe.post(f"/v1/prices/{price}", {"metadata": {"tier": "gold"}})
        # Incremental, the items alone (a run of their subscriptions too would store them with each one).
        await sync.process_until_done("subscription_items")
        items = [i for i in stored_rows(clean_db, "subscription_items").values() if i["price"]["id"] in prices]
        assert {i["price"]["id"] for i in items} == set(prices)
        assert all(i["price"]["metadata"] == {"tier": "gold"} for i in items)


async def test_a_changed_price_refreshes_the_checkout_line_items_listed_under_their_session(clean_db, emu):
    """Checkout line items have no retrieve of their own: when a price they embed changes without an event
    of theirs (`price.updated`), an incremental run lists them again under their session."""
    async with engine(clean_db, emu) as sync:
        await sync.process_until_done("all")
        items = stored_rows(clean_db, "checkout_session_line_items")
        price = next(item["price"]["id"] for item in items.values() if item.get("price"))
        await sync.stripe.post(f"/v1/prices/{price}", {"metadata": {"tier": "gold"}})  # price.updated
        # Incremental, the line items alone (a run of their sessions too would store them with each session).
        await sync.process_until_done("checkout_session_line_items")
        refreshed = [i for i in stored_rows(clean_db, "checkout_session_line_items").values()
                     if i["price"]["id"] == price]
        assert refreshed and all(i["price"]["metadata"] == {"tier": "gold"} for i in refreshed)
        assert _drifted(await sync.verify(["checkout_session_line_items"])) == {}


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    """The headless command line, in this process: exit code, stdout, stderr."""
    from stripe_sync_tui import headless
    from stripe_sync_tui.cli import build_parser

    capsys.readouterr()
    try:
        code = headless.run(build_parser().parse_args(["--headless", "--config", "/nonexistent", *args]))
    except SystemExit as exit_:  # argparse refusing an argument
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_prints_a_record_per_type_and_exits_3_while_drift_is_left(clean_db, emu, capsys):
    settings = ["--database-url", clean_db, "--stripe-key", emu.secret_key, "--stripe-api-base", emu.api_base]
    assert _cli(capsys, "backfill", "customers", *settings)[0] == 0
    emu.create("customers", {"email": "quiet@example.com"}, silent=True)
    code, out, err = _cli(capsys, "--json", "verify", "customers", *settings)
    assert code == 3, err
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert (record["kind"], record["object"], record["missing"], record["drift"]) == ("verify", "customers", 1, 1)
    assert record["differences"] == [{"id": record["differences"][0]["id"], "kind": "missing", "fields": []}]
    code, out, err = _cli(capsys, "verify", "customers", "--repair", *settings)
    assert code == 0, err
    assert "MISSING" in out and "1 repaired" in err
    assert _cli(capsys, "verify", "customers", "--sample", "5", *settings)[0] == 0


@pytest.mark.parametrize(("args", "message"), [
    (["verify", "widgets"], "unknown object type 'widgets'"),
    (["verify", "customers", "--since", "yesterday"], "invalid date 'yesterday'"),
    (["verify", "customers", "--sample", "0"], "invalid --sample '0'"),
    (["verify", "--account", "cus_123"], "invalid --account 'cus_123'"),
])
def test_bad_input_is_a_clear_error_before_any_connection(args, message, capsys):
    code, _, err = _cli(capsys, *args, "--database-url", "postgresql://nobody@127.0.0.1:1/none",
                        "--stripe-key", "sk_test_x")
    assert code == 2
    assert message in err


async def test_a_connected_account_is_verified_under_its_own_header_and_rows(clean_db):
    with StripeEmulator(seed=82, customers=4, connected_accounts=1, connected_customers=3,
                        start="2024-01-01", end="2024-12-31") as emu:
        (connected,) = emu.connected_account_ids
        async with engine(clean_db, emu) as sync:
            await sync.process_until_done("customers")
            await sync.process_until_done("customers", account_id=connected)
            quiet = emu.create("customers", {"email": "quiet@example.com"}, account=connected, silent=True)
            verified = _by_type(await sync.verify(["customers", "accounts"], account_id=connected))
            theirs, account = verified["customers"], verified["accounts"]
            (ours,) = await sync.verify("customers")
        assert (theirs.account_id, theirs.checked, [d.id for d in theirs.differences]) == (
            connected, len(emu.objects("customers", account=connected)), [quiet["id"]])
        assert ours.clean and ours.checked == len(emu.objects("customers"))
        assert account.clean and account.checked == 1  # the account's own object, as its backfill stored it
