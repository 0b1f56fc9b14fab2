"""Payouts and balance transactions: money leaving the account and the ledger of every movement."""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_right
from typing import TYPE_CHECKING, Any

from ..errors import invalid
from ..filters import accepted_not_applied, field_filter
from ..forms import to_int
from ..generation import DAY, GenerationContext
from ..ids import b62_hash, h
from ..operations import check_params, insert, modify, set_fields
from ..registry import action, creates, generation_step, list_filters, renders, updates
from ..rendering import from_template, ref_or_none
from ..store import Matcher, Table
from . import connect, payments

if TYPE_CHECKING:  # pragma: no cover
    from ..account import AccountStore
    from ..core import Ctx


BALANCE_TRANSACTION_KINDS = ("charge", "refund", "payout", "transfer")  # generated kind codes


def payout_amount(account: AccountStore, row: int) -> int:
    return 10_000 + h(account.tables["payouts"].ns, row, 1) % 5_000_000


@renders("payouts")
def render_payout(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["payouts"]
    obj = from_template("payout")
    row_hash = h(table.ns, row)
    created = table.created[row]
    age = account.gen_end - created
    status = "paid" if age > 3 * DAY else ("in_transit" if age > DAY else "pending")
    obj.update({"id": table.codec.encode(row), "created": created, "livemode": livemode, "amount": payout_amount(account, row),
                "arrival_date": created + 2 * DAY, "balance_transaction": ref_or_none(account, "balance_transactions", table.cols["bt"][row]),
                "currency": "usd", "destination": payout_bank_account_id(account), "status": status,
                "reconciliation_status": "completed" if status == "paid" else "not_applicable",
                "description": "STRIPE PAYOUT", "automatic": payout_is_automatic(account, row), "metadata": {}})
    obj["trace_id"] = {"status": "supported" if status == "paid" else "pending",
                       "value": f"TRACE{row_hash % 10**12:012d}" if status == "paid" else None}
    return obj


def payout_is_automatic(account: AccountStore, row: int) -> bool:
    return h(account.tables["payouts"].ns, row) % 5 != 0


def settled_window(account: AccountStore, row: int) -> tuple[int, int] | None:
    """Generated balance-transaction rows ``[lo, hi)`` an automatic generated payout paid out: those
    that became available (two days after creation) since the previous automatic payout."""
    if not payout_is_automatic(account, row):
        return None
    payouts = account.tables["payouts"]
    previous = next((r for r in range(row - 1, -1, -1) if payout_is_automatic(account, r)), None)
    bt_created = account.tables["balance_transactions"].created
    lo = 0 if previous is None else bisect_right(bt_created, payouts.created[previous] - 2 * DAY)
    hi = bisect_right(bt_created, payouts.created[row] - 2 * DAY)
    return lo, max(lo, hi)


def payout_filter(account: AccountStore, t: Table, value: Any) -> Matcher:
    """``payout=po_...``: for an automatic payout, the transactions it settled and its own; for a
    manual one (Stripe reconciles only automatic payouts), its own transaction."""
    want = str(value)
    payouts = account.tables["payouts"]
    row = payouts.seq_of(want)
    own = -1 if row is None or row >= payouts.n_gen else payouts.cols["bt"][row]
    window = settled_window(account, row) if row is not None and row < payouts.n_gen else None
    kinds = t.cols["kind"]

    def dyn(s: int, o: dict[str, Any]) -> bool:
        return o.get("source") == want

    if window is None:
        if own < 0:
            return Matcher(None, dyn)
        return Matcher(lambda i: i == own, dyn, array("i", [own]))
    lo, hi = window
    rows = array("i", sorted({i for i in range(lo, hi) if kinds[i] != 2} | ({own} if own >= 0 else set())))
    return Matcher(lambda i: True, dyn, rows)


def payout_bank_account_id(account: AccountStore) -> str:
    return f"ba_{b62_hash(h(account.ns, 1), 24)}"


def render_bank_account(account: AccountStore, ident: str) -> dict[str, Any] | None:
    """The account's payout bank account (an external account: only expanded, never listed here)."""
    if ident != payout_bank_account_id(account):
        return None
    return {"id": ident, "object": "bank_account", "account": account.id, "account_holder_name": None,
            "account_holder_type": None, "account_type": None, "available_payout_methods": ["standard", "instant"],
            "bank_name": "STRIPE TEST BANK", "country": "US", "currency": "usd", "default_for_currency": True,
            "fingerprint": b62_hash(h(account.ns, 2), 16), "future_requirements": None, "last4": "6789",
            "metadata": {}, "requirements": None, "routing_number": "110000000", "status": "new"}


@renders("balance_transactions")
def render_balance_transaction(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["balance_transactions"]
    obj = from_template("balance_transaction")
    kind = table.cols["kind"][row]
    src = table.cols["source"][row]
    created = table.created[row]
    if kind == 0:
        amount = payments.charge_amount(account, src)
        fee = amount * 29 // 1000 + 30
        source = account.tables["charges"].codec.encode(src)
        typ, cat, desc = "charge", "charge", f"Payment {src}"
        fee_details = [{"amount": fee, "application": None, "currency": "usd", "description": "Stripe processing fees",
                        "type": "stripe_fee"}]
    else:
        fee = 0
        fee_details = []
        if kind == 1:
            rch = account.tables["refunds"].cols["charge"][src]
            amount = -payments.refund_amounts(account, rch).get(src, 0)
            source = account.tables["refunds"].codec.encode(src)
            typ, cat, desc = "refund", "refund", "REFUND FOR CHARGE"
        elif kind == 2:
            amount = -payout_amount(account, src)
            source = account.tables["payouts"].codec.encode(src)
            typ, cat, desc = "payout", "payout", "STRIPE PAYOUT"
        else:
            amount = -connect.transfer_amount(account, src)
            source = account.tables["transfers"].codec.encode(src)
            typ, cat, desc = "transfer", "transfer", None
    available_on = created + 2 * DAY
    obj.update({"id": table.codec.encode(row), "created": created, "amount": amount, "fee": fee,
                "net": amount - fee, "fee_details": fee_details, "source": source, "type": typ,
                "reporting_category": cat, "description": desc, "currency": "usd", "available_on": available_on,
                "status": "available" if available_on <= account.gen_end else "pending"})
    return obj


def new_balance_transaction(ctx: Ctx, kind: str, source: str, amount: int, fee: int, description: str | None) -> str:
    seq, obj = ctx.account.new_object("balance_transactions", ctx.now())
    fee_details = [{"amount": fee, "application": None, "currency": "usd", "description": "Stripe processing fees",
                    "type": "stripe_fee"}] if fee else []
    obj.update({"amount": amount, "available_on": ctx.now() + 2 * DAY, "currency": "usd", "description": description,
                "exchange_rate": None, "fee": fee, "fee_details": fee_details, "net": amount - fee,
                "reporting_category": kind, "source": source, "status": "pending", "type": kind})
    insert(ctx, "balance_transactions", seq, obj, None)
    return obj["id"]


@creates("payouts")
def create_payout(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"amount", "currency", "description", "metadata", "method", "destination", "statement_descriptor",
                          "source_type", "payout_method"}, ("amount", "currency"))
    account = ctx.account
    amount = to_int(params["amount"], "amount")
    now = ctx.now()
    seq, obj = account.new_object("payouts", now)
    obj.update({"amount": amount, "currency": str(params["currency"]).lower(), "arrival_date": now + 2 * DAY,
                "automatic": False, "description": params.get("description"), "method": params.get("method") or "standard",
                "destination": params.get("destination") or payout_bank_account_id(account), "status": "pending",
                "reconciliation_status": "not_applicable", "failure_code": None, "failure_message": None,
                "source_type": params.get("source_type") or "card", "statement_descriptor": params.get("statement_descriptor"),
                "trace_id": {"status": "pending", "value": None}, "type": "bank_account"})
    set_fields(obj, params, {"metadata"})
    obj["balance_transaction"] = new_balance_transaction(ctx, "payout", obj["id"], -amount, 0, "STRIPE PAYOUT")
    return insert(ctx, "payouts", seq, obj, "payout.created")


@updates("payouts")
def update_payout(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"metadata"})
    return modify(ctx, "payouts", seq, lambda o: set_fields(o, params, {"metadata"}), "payout.updated")[0]


@action("payouts", "cancel")
def cancel_payout(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, set())
    cur = ctx.render("payouts", seq)
    if cur["status"] != "pending":
        raise invalid("Payouts can only be canceled while they are pending.")
    after, prev = modify(ctx, "payouts", seq, lambda o: o.update(status="canceled"), None)
    ctx.emit("payout.canceled", after)
    ctx.emit("payout.updated", after, prev)
    return after


@action("payouts", "pay", control_only=True)
def pay_payout(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    """Control-only: a pending payout arrives."""
    after, prev = modify(ctx, "payouts", seq, lambda o: o.update(status="paid", reconciliation_status="completed"), None)
    ctx.emit("payout.paid", after)
    ctx.emit("payout.updated", after, prev)
    return after


def balance_type_filter(account: AccountStore, t: Table, value: Any) -> Matcher:

    v = str(value)
    kinds = t.cols["kind"]
    gen = None
    if v in BALANCE_TRANSACTION_KINDS:
        code = BALANCE_TRANSACTION_KINDS.index(v)
        gen = lambda i: kinds[i] == code  # noqa: E731
    return Matcher(gen, lambda s, o: o.get("type") == v)


list_filters("payouts", {"status": field_filter(("status",)), "arrival_date": accepted_not_applied,
                         "destination": field_filter(("destination",))})
list_filters("balance_transactions", {"payout": payout_filter, "source": field_filter(("source",)),
                                      "type": balance_type_filter, "currency": field_filter(("currency",))})


@generation_step(110)
def generate_payouts(gen: GenerationContext) -> None:
    created = gen.timeline.sample(gen.sizes["payouts"], gen.rng, lo=gen.child_lo, bursts=False)
    gen.created["payouts"] = created
    gen.cols["payouts"] = {"bt": array("i", [-1]) * len(created)}  # filled in below


@generation_step(130)
def generate_balance_transactions(gen: GenerationContext) -> None:
    """One per succeeded charge, refund, payout and transfer, merged by time; each source row
    learns its transaction's row."""
    charge_status = gen.cols["charges"]["status"]
    sources = ("charges", "refunds", "payouts", "transfers")  # in BALANCE_TRANSACTION_KINDS order
    streams = [
        ((t, 0, i) for i, t in enumerate(gen.created["charges"]) if charge_status[i] == 0),
        ((t, 1, i) for i, t in enumerate(gen.created["refunds"])),
        ((t, 2, i) for i, t in enumerate(gen.created["payouts"])),
        ((t, 3, i) for i, t in enumerate(gen.created["transfers"])),
    ]
    created = array("q")
    kinds = array("b")
    source_rows = array("i")
    back_links = [gen.cols[name]["bt"] for name in sources]
    for t, kind, i in heapq.merge(*streams):
        back_links[kind][i] = len(created)
        created.append(t)
        kinds.append(kind)
        source_rows.append(i)
    gen.created["balance_transactions"] = created
    gen.cols["balance_transactions"] = {"kind": kinds, "source": source_rows}
