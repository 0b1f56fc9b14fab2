"""Changes without an event (`silent`): through the control API over HTTP and the Python methods, an
object created, changed or deleted that no event mentions; the same change without `silent` has its event."""

from __future__ import annotations

import pytest
from emulator_helpers import client_for, control

from stripe_sync_emulator import StripeEmulator


def _event_count(emu: StripeEmulator) -> int:
    return len(emu.events())


def test_silent_changes_leave_no_event_and_are_visible_through_the_api(stripe_emulator: StripeEmulator):
    emu = stripe_emulator
    client = client_for(emu)
    before = _event_count(emu)
    created = control(emu, "objects/customers", {"email": "quiet@example.com", "silent": "true"})
    renamed = control(emu, f"objects/customers/{created['id']}/update", {"name": "Quiet", "silent": "true"})
    assert renamed["name"] == "Quiet" and client.v1.customers.retrieve(created["id"]).name == "Quiet"
    other = emu.objects("customers")[-1]["id"]
    emu.action("customers", other, "delete", silent=True)
    assert client.v1.customers.retrieve(other).to_dict().get("deleted") is True
    assert _event_count(emu) == before  # no event of any of them

    emu.action("customers", created["id"], "update", {"name": "Loud"})
    assert [e["type"] for e in emu.events()[before:]] == ["customer.updated"]


def test_delete_is_only_an_action_where_the_api_deletes(stripe_emulator: StripeEmulator):
    charge = stripe_emulator.objects("charges")[0]["id"]
    with pytest.raises(Exception, match="Unknown action delete for charges"):
        stripe_emulator.action("charges", charge, "delete", silent=True)
