"""Connect: connected accounts and the transfers the platform sends them."""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any

from ..errors import StripeError, invalid
from ..events import previous_attributes
from ..filters import field_filter
from ..forms import to_int
from ..generation import GenerationContext
from ..ids import b62_hash, h
from ..operations import check_params, insert, modify, set_fields
from ..registry import creates, generation_step, list_filters, renders, updates
from ..rendering import from_template, ref_or_none
from . import balance

if TYPE_CHECKING:  # pragma: no cover
    from ..account import AccountStore
    from ..core import Ctx


def transfer_amount(account: AccountStore, row: int) -> int:
    return 1_000 + h(account.tables["transfers"].ns, row, 1) % 500_000


@renders("transfers")
def render_transfer(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["transfers"]
    obj = from_template("transfer")
    row_hash = h(table.ns, row)
    tid = table.codec.encode(row)
    d = table.cols["destination"][row]
    dests = account.transfer_destinations
    dest = dests[d] if 0 <= d < len(dests) else f"acct_1{b62_hash(h(account.ns, 2, d), 15)}"
    obj.update({"id": tid, "created": table.created[row], "livemode": livemode, "amount": transfer_amount(account, row),
                "balance_transaction": ref_or_none(account, "balance_transactions", table.cols["bt"][row]), "currency": "usd",
                "destination": dest, "destination_payment": f"py_{b62_hash(row_hash, 24)}",
                "transfer_group": f"group_{row % 50}" if row_hash % 3 == 0 else None, "metadata": {}, "source_type": "card"})
    obj["reversals"] = {"object": "list", "data": [], "has_more": False, "url": f"/v1/transfers/{tid}/reversals"}
    return obj


@creates("transfers")
def create_transfer(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"amount", "currency", "destination", "description", "metadata", "transfer_group",
                          "source_transaction", "source_type"}, ("amount", "currency", "destination"))
    account = ctx.account
    dest = str(params["destination"])
    if not dest.startswith("acct_"):
        raise invalid(f"No such destination: '{dest}'", param="destination", code="resource_missing")
    amount = to_int(params["amount"], "amount")
    seq, obj = account.new_object("transfers", ctx.now())
    obj.update({"amount": amount, "amount_reversed": 0, "currency": str(params["currency"]).lower(), "destination": dest,
                "destination_payment": f"py_{b62_hash(h(account.ns, seq, 31), 24)}", "description": params.get("description"),
                "reversed": False, "source_transaction": params.get("source_transaction"),
                "source_type": params.get("source_type") or "card", "transfer_group": params.get("transfer_group")})
    obj["reversals"] = {"object": "list", "data": [], "has_more": False, "url": f"/v1/transfers/{obj['id']}/reversals"}
    set_fields(obj, params, {"metadata"})
    obj["balance_transaction"] = balance.new_balance_transaction(ctx, "transfer", obj["id"], -amount, 0, params.get("description"))
    return insert(ctx, "transfers", seq, obj, "transfer.created")


@updates("transfers")
def update_transfer(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"metadata", "description"})
    return modify(ctx, "transfers", seq, lambda o: set_fields(o, params, {"metadata", "description"}), "transfer.updated")[0]


ACCOUNT_UPDATE_FIELDS = frozenset({"metadata", "email", "business_profile", "settings", "business_type", "company",
                                   "individual", "tos_acceptance", "default_currency", "capabilities", "external_account"})


def update_account(ctx: Ctx, acct: AccountStore, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, ACCOUNT_UPDATE_FIELDS)
    core = ctx.core
    before = dict(acct.account_obj)
    new = dict(before)
    set_fields(new, params, {"metadata", "email", "business_profile", "settings", "business_type", "default_currency"})
    acct.account_obj = new
    if acct is not core.platform:
        table = core.platform.tables["accounts"]
        seq = table.seq_of(acct.id)
        if seq is not None:
            table.put(seq, new)
    prev = previous_attributes(before, new)
    if prev:
        # account.updated belongs to the connected account (Connect endpoints get it with ``account``).
        ctx.for_account(acct).emit("account.updated", new, prev)
    return new


@creates("accounts")
def create_account(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, ACCOUNT_UPDATE_FIELDS | {"type", "country", "controller", "account_token"})
    if ctx.account is not ctx.core.platform:
        raise StripeError(403, "Only platforms can create connected accounts.", type="invalid_request_error",
                          code="platform_account_required")
    acct = ctx.core.add_connected_account(ctx.now(), params)
    obj = dict(acct.account_obj)
    if params.get("type"):
        obj["type"] = params["type"]
    if params.get("country"):
        obj["country"] = params["country"]
    set_fields(obj, params, {"metadata", "email", "business_profile", "business_type", "default_currency"})
    acct.account_obj = obj
    table = ctx.core.platform.tables["accounts"]
    seq = table.seq_of(acct.id)
    if seq is not None:
        table.put(seq, obj)
    return obj


def delete_account(ctx: Ctx, acct_id: str) -> dict[str, Any]:
    core = ctx.core
    if acct_id not in core.accounts or acct_id == core.platform_id:
        raise StripeError(404, f"No such account: '{acct_id}'", code="resource_missing", param="account")
    table = core.platform.tables["accounts"]
    seq = table.seq_of(acct_id)
    if seq is not None:
        table.delete(seq)
    del core.accounts[acct_id]
    return {"id": acct_id, "object": "account", "deleted": True}


list_filters("transfers", {"destination": field_filter(("destination",)),
                           "transfer_group": field_filter(("transfer_group",))})
list_filters("accounts", {})


@generation_step(120)
def generate_transfers(gen: GenerationContext) -> None:
    """Transfers to the platform's connected accounts (or made-up ones when it has none)."""
    destinations = gen.transfer_destinations
    created = gen.timeline.sample(gen.sizes["transfers"], gen.rng, lo=gen.child_lo, bursts=False)
    gen.created["transfers"] = created
    gen.cols["transfers"] = {
        "bt": array("i", [-1]) * len(created),  # filled in by the balance step
        "destination": array("i", (int(gen.random() * destinations) if destinations else -1 for _ in created)),
    }
