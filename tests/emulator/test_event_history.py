"""/v1/events holds Stripe's 30 days of history for generated data, like any other event."""

from __future__ import annotations

from urllib.parse import urlencode

from emulator_helpers import raw

from stripe_sync_emulator import StripeEmulator

DAY = 86400


def _events(emu: StripeEmulator, **params: object) -> list[dict]:
    out: list[dict] = []
    query = {"limit": 100, **params}
    while True:
        status, _, body = raw(emu, "GET", "/v1/events?" + urlencode(query, doseq=True))
        assert status == 200, body
        out += body["data"]
        if not body["has_more"]:
            return out
        query["starting_after"] = body["data"][-1]["id"]


def test_history_of_the_last_30_days():
    with StripeEmulator(seed=5, customers=80) as emu:
        events = _events(emu)
        assert events, "data created up to today comes with its events"
        now = emu.clock.time()
        assert all(now - 30 * DAY <= e["created"] <= now for e in events)
        assert [e["created"] for e in events] == sorted((e["created"] for e in events), reverse=True)
        recent_customers = [c for c in emu.objects("customers") if c["created"] >= now - 30 * DAY]
        created = {e["data"]["object"]["id"] for e in events if e["type"] == "customer.created"}
        assert created == {c["id"] for c in recent_customers}
        older = [c["id"] for c in emu.objects("customers") if c["created"] < now - 31 * DAY]
        assert older and not created & set(older)
        paid = [e for e in events if e["type"] == "invoice.paid"]
        assert paid and all(e["data"]["object"]["status"] == "paid" for e in paid)
        assert all(e["created"] == e["data"]["object"]["status_transitions"]["paid_at"] for e in paid)
        # Filters, retrieval and the SDK-visible shape are those of any event.
        only = _events(emu, **{"types[]": ["invoice.*", "customer.created"]})
        assert only and {e["type"] for e in only} <= {e["type"] for e in events if e["type"].startswith("invoice.")} | {
            "customer.created"}
        assert len(only) == len([e for e in events if e["type"].startswith("invoice.") or e["type"] == "customer.created"])
        status, _, one = raw(emu, "GET", f"/v1/events/{events[3]['id']}")
        assert status == 200 and one == events[3]
        assert one["api_version"] == emu.core.config.api_version and one["pending_webhooks"] == 0
        # New events come after the history.
        emu.clock.advance(1)
        new = emu.mutate_random(1)
        assert _events(emu)[0]["created"] > events[0]["created"]
        assert [e["id"] for e in emu.events()] == [e["id"] for e in reversed(events)] + [e["id"] for e in new]


def test_no_history_for_data_older_than_30_days(stripe_emulator):
    assert _events(stripe_emulator) == []  # the fixture's data ends in 2024
