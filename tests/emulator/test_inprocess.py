"""Running inside an existing event loop, and the Python ground-truth API."""

from __future__ import annotations

import aiohttp

from stripe_sync_emulator import StripeEmulator
from stripe_sync_emulator.pytest_fixtures import DEFAULT_END, DEFAULT_START


async def test_start_async_inside_a_running_loop():
    emu = StripeEmulator(seed=4, customers=30, start=DEFAULT_START, end=DEFAULT_END, webhook_retry_base_delay=0.05)
    async with emu:
        assert emu.api_base.startswith("http://127.0.0.1:")
        headers = {"Authorization": f"Bearer {emu.secret_key}"}
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{emu.api_base}/v1/customers?limit=100", headers=headers) as resp:
                body = await resp.json()
                assert resp.status == 200 and resp.headers["Request-Id"].startswith("req_")
            assert [c["id"] for c in body["data"]] == [c["id"] for c in emu.objects("customers")]
            async with session.post(f"{emu.api_base}/v1/customers", data={"email": "async@example.com"},
                                    headers=headers) as resp:
                created = await resp.json()
        assert emu.get("customers", created["id"])["email"] == "async@example.com"
        events = emu.mutate_random(3)
        assert events and await emu.wait_for_deliveries_async(5)
    assert emu.counts()["customers"] >= 31


def test_ground_truth_helpers():
    emu = StripeEmulator(seed=5, customers=25, start=DEFAULT_START, end=DEFAULT_END)
    counts = emu.counts()
    assert counts["customers"] == 25 and emu.total_objects() == sum(counts.values())
    assert len(emu.objects("invoices")) == counts["invoices"]
    assert len(emu.objects("active_entitlements")) == counts["active_entitlements"]
    first = emu.objects("customers")[0]
    assert emu.get("customers", first["id"]) == first and emu.get("customers", "cus_missing") is None
    assert emu.events() == []
    emu.create("customers", {"email": "direct@example.com"})
    assert [e["type"] for e in emu.events()] == ["customer.created"]
