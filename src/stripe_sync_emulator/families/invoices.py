"""Invoices and their lines."""

from __future__ import annotations

from array import array
from bisect import bisect_right
from typing import TYPE_CHECKING, Any

from ..errors import StripeError, invalid
from ..filters import accepted_not_applied, enum_filter, field_filter, relation_filter
from ..forms import to_bool, to_int
from ..generation import DAY, MONTH, GenerationContext, pick_earlier
from ..ids import IdCodec, b62_hash, h, stable_hash
from ..objects import id_of
from ..operations import bool_param, check_params, live_seq, modify, remove, set_fields
from ..registry import action, creates, deletes, generation_step, list_filters, renders, updates
from ..rendering import from_template, ref_or_none
from . import catalog, customers, invoice_items, payments

if TYPE_CHECKING:  # pragma: no cover
    from ..account import AccountStore
    from ..core import Ctx


INVOICE_STATUSES = ("draft", "open", "paid", "uncollectible", "void")  # generated status codes


def line_amount(account: AccountStore, line: int) -> int:
    cols = account.tables["invoice_lines"].cols
    price_row = cols["price"][line]
    return (catalog.price_amount(account, price_row) if price_row >= 0 else 1000) * cols["qty"][line]


def invoice_total(account: AccountStore, v: int) -> int:
    offs = account.tables["invoices"].offsets["invoice_lines"]
    return sum(line_amount(account, ln) for ln in range(offs[v], offs[v + 1]))


_LINE_ITEM_CODECS: dict[int, IdCodec] = {}


def generated_line_invoice_item(account: AccountStore, line: int) -> str:
    """The id of the invoice item behind a generated one-off line (Stripe always names it). Those
    invoice items are consumed by their invoice and not generated as rows: the id is stable and
    well-formed but ``GET /v1/invoiceitems/{id}`` answers 404 (see the README)."""
    codec = _LINE_ITEM_CODECS.get(account.ns)
    if codec is None:
        codec = _LINE_ITEM_CODECS[account.ns] = IdCodec("ii_", "long", stable_hash(account.ns, "line invoice items"),
                                                        account.tag)
    return codec.encode(line)


@renders("invoices")
def render_invoice(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["invoices"]
    obj = from_template("invoice")
    row_hash = h(table.ns, row)
    cols = table.cols
    created = table.created[row]
    customer_seq = cols["customer"][row]
    sub = cols["subscription"][row]
    status = INVOICE_STATUSES[cols["status"][row]]
    total = invoice_total(account, row)
    name, email = customers.customer_identity(account, customer_seq)
    cus_id = account.tables["customers"].codec.encode(customer_seq)
    inv_id = table.codec.encode(row)
    obj["id"] = inv_id
    obj["created"] = created
    obj["livemode"] = livemode
    obj["customer"] = cus_id
    obj["customer_name"] = name
    obj["customer_email"] = email
    obj["currency"] = "usd"
    obj["status"] = status
    obj["subtotal"] = obj["subtotal_excluding_tax"] = obj["total"] = obj["total_excluding_tax"] = total
    obj["amount_due"] = total
    paid = status == "paid"
    obj["amount_paid"] = total if paid else 0
    obj["amount_remaining"] = 0 if paid or status in ("void", "uncollectible") else total
    obj["attempted"] = status != "draft"
    obj["attempt_count"] = 1 if status in ("paid", "open", "uncollectible") else 0
    obj["auto_advance"] = status in ("draft", "open")
    reason = cols["reason"][row]
    obj["period_start"] = created - MONTH if reason == 1 else created
    obj["period_end"] = created
    obj["billing_reason"] = ("subscription_create", "subscription_cycle", "manual")[reason]
    if sub >= 0:
        obj["parent"] = {"quote_details": None, "type": "subscription_details",
                         "subscription_details": {"metadata": {}, "subscription": account.tables["subscriptions"].codec.encode(sub)}}
    obj["collection_method"] = "charge_automatically" if row_hash % 8 else "send_invoice"
    if obj["collection_method"] == "send_invoice":
        obj["due_date"] = created + 30 * DAY
    finalized = None
    if status != "draft":
        finalized = created + 3600
        obj["number"] = f"{b62_hash(h(account.tables['customers'].ns, customer_seq), 8).upper()}-{1 + row % 9999:04d}"
        obj["hosted_invoice_url"] = f"https://invoice.stripe.com/i/acct_test/{inv_id}"
        obj["invoice_pdf"] = f"https://pay.stripe.com/invoice/acct_test/{inv_id}/pdf"
        obj["effective_at"] = finalized
        obj["webhooks_delivered_at"] = created
    obj["status_transitions"] = {
        "finalized_at": finalized, "marked_uncollectible_at": created + 20 * DAY if status == "uncollectible" else None,
        "paid_at": finalized if paid else None, "voided_at": created + 2 * DAY if status == "void" else None,
    }
    obj["ending_balance"] = 0 if status != "draft" else None
    obj["total_taxes"] = []
    obj["total_pretax_credit_amounts"] = []
    obj["total_discount_amounts"] = []
    return obj


@renders("invoice_lines")
def render_invoice_line(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["invoice_lines"]
    obj = from_template("line_item")
    cols = table.cols
    inv_t = account.tables["invoices"]
    v = table.parent_of_generated(inv_t, row)
    price_row = cols["price"][row]
    item_seq = cols["subscription_item"][row]
    amt = line_amount(account, row)
    c = inv_t.created[v]
    prices = account.tables["prices"]
    price_id = prices.codec.encode(price_row) if price_row >= 0 else None
    prod = prices.cols["product"][price_row] if price_row >= 0 else -1
    obj["id"] = table.codec.encode(row)
    obj["livemode"] = livemode
    obj["invoice"] = inv_t.codec.encode(v)
    obj["amount"] = amt
    obj["subtotal"] = amt
    obj["currency"] = "usd"
    obj["quantity"] = cols["qty"][row]
    obj["metadata"] = {}
    obj["pricing"] = {"type": "price_details", "unit_amount_decimal": str(amt // max(1, cols["qty"][row])),
                      "price_details": {"price": price_id, "product": ref_or_none(account, "products", prod)}}
    if item_seq >= 0:
        sub = account.tables["subscription_items"].cols["subscription"][item_seq]
        sub_id = account.tables["subscriptions"].codec.encode(sub)
        obj["description"] = f"{cols['qty'][row]} × product {prod} (at ${catalog.price_amount(account, price_row) / 100:.2f})"
        obj["period"] = {"start": c, "end": c + MONTH}
        obj["subscription"] = sub_id
        obj["parent"] = {"type": "subscription_item_details", "invoice_item_details": None,
                         "subscription_item_details": {"invoice_item": None, "proration": False,
                                                       "proration_details": {"credited_items": None},
                                                       "subscription": sub_id,
                                                       "subscription_item": account.tables["subscription_items"].codec.encode(item_seq)}}
    else:
        obj["description"] = f"One-off item {row}"
        obj["period"] = {"start": c, "end": c}
        obj["subscription"] = None
        obj["parent"] = {"type": "invoice_item_details", "subscription_item_details": None,
                         "invoice_item_details": {"invoice_item": generated_line_invoice_item(account, row),
                                                  "proration": False, "proration_details": {"credited_items": None},
                                                  "subscription": None}}
    return obj


INVOICE_UPDATE_FIELDS = frozenset({"metadata", "description", "footer", "auto_advance", "collection_method", "days_until_due",
                                   "due_date", "default_payment_method", "custom_fields", "statement_descriptor"})


INVOICE_IGNORED_PARAMS = frozenset({"pending_invoice_items_behavior", "currency", "automatic_tax", "discounts", "issuer",
                                    "on_behalf_of", "payment_settings", "rendering", "shipping_cost", "shipping_details",
                                    "transfer_data", "account_tax_ids", "default_tax_rates", "from_invoice",
                                    "number", "effective_at", "application_fee_amount", "default_source"})


def new_line_object(ctx: Ctx, inv_id: str, line: dict[str, Any], created: int, sub_id: str | None) -> tuple[int, dict[str, Any]]:
    account = ctx.account
    seq, obj = account.new_object("invoice_lines", created)
    price = line.get("price")
    qty = int(line.get("quantity") or 1)
    amount = int(line["amount"])
    item_seq = line.get("subscription_item")
    invoice_item_seq = line.get("invoice_item")
    obj.update({"invoice": inv_id, "amount": amount, "subtotal": amount, "currency": "usd", "quantity": qty,
                "description": line.get("description"), "period": {"start": created, "end": created},
                "subscription": sub_id, "metadata": {}, "discountable": True})
    obj["pricing"] = {"type": "price_details", "unit_amount_decimal": str(amount // max(1, qty)),
                      "price_details": {"price": price["id"] if price else None,
                                        "product": id_of(price.get("product")) if price else None}}
    if item_seq:
        obj["parent"] = {"type": "subscription_item_details", "invoice_item_details": None,
                         "subscription_item_details": {"invoice_item": None, "proration": False,
                                                       "proration_details": {"credited_items": None},
                                                       "subscription": sub_id, "subscription_item": item_seq}}
    else:
        obj["parent"] = {"type": "invoice_item_details", "subscription_item_details": None,
                         "invoice_item_details": {"invoice_item": invoice_item_seq, "proration": False,
                                                  "proration_details": {"credited_items": None},
                                                  "subscription": sub_id}}
    return seq, obj


def recompute_totals(account: AccountStore, inv_seq: int, o: dict[str, Any]) -> None:
    total = 0
    for line_seq in account.child_seqs("invoice_lines", "invoices", inv_seq):
        line = account.render("invoice_lines", line_seq, False) or {}
        total += int(line.get("amount") or 0)
    o.update({"subtotal": total, "subtotal_excluding_tax": total, "total": total, "total_excluding_tax": total,
              "amount_due": total, "amount_remaining": total - int(o.get("amount_paid") or 0)})


def build_invoice(ctx: Ctx, seq: int, obj: dict[str, Any], customer_seq: int, *, sub_id: str | None,
                  lines: list[dict[str, Any]], billing_reason: str, collection_method: str,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    account = ctx.account
    now = ctx.now()
    customer = ctx.render("customers", customer_seq)
    obj.update({
        "customer": customer["id"], "customer_name": customer.get("name"), "customer_email": customer.get("email"),
        "customer_address": customer.get("address"), "customer_phone": customer.get("phone"),
        "currency": "usd", "status": "draft", "amount_paid": 0, "attempted": False, "attempt_count": 0,
        "auto_advance": True, "billing_reason": billing_reason, "collection_method": collection_method,
        "period_start": now, "period_end": now, "number": None, "hosted_invoice_url": None, "invoice_pdf": None,
        "ending_balance": None, "starting_balance": 0, "total_taxes": [], "total_pretax_credit_amounts": [],
        "total_discount_amounts": [], "post_payment_credit_notes_amount": 0, "pre_payment_credit_notes_amount": 0,
        "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None, "paid_at": None,
                               "voided_at": None},
        "parent": {"quote_details": None, "type": "subscription_details",
                   "subscription_details": {"metadata": {}, "subscription": sub_id}} if sub_id else None,
        "due_date": now + 30 * DAY if collection_method == "send_invoice" else None,
        "default_payment_method": None, "description": None, "footer": None, "effective_at": None,
    })
    if extra:
        obj.update(extra)
    table = account.tables["invoices"]
    table.put(seq, account.dehydrate("invoices", obj))
    line_table = account.tables["invoice_lines"]
    for line in lines:
        line_seq, line_obj = new_line_object(ctx, obj["id"], line, now, sub_id)
        line_table.put(line_seq, account.dehydrate("invoice_lines", line_obj))
        line_table.add_child(seq, line_seq)
    stored = account.stored("invoices", seq)
    recompute_totals(account, seq, stored)
    table.put(seq, stored)
    out = ctx.render("invoices", seq)
    ctx.emit("invoice.created", out)
    return out


@creates("invoices")
def create_invoice(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, INVOICE_UPDATE_FIELDS | INVOICE_IGNORED_PARAMS | {"customer", "subscription"})
    account = ctx.account
    sub_id = None
    if params.get("subscription"):
        ss = live_seq(ctx, "subscriptions", params["subscription"], "subscription")
        sub = ctx.render("subscriptions", ss)
        sub_id = sub["id"]
        customer_seq = live_seq(ctx, "customers", sub["customer"], "subscription")
    else:
        customer_seq = live_seq(ctx, "customers", params.get("customer"), "customer")
    seq, obj = account.new_object("invoices", ctx.now())
    include = params.get("pending_invoice_items_behavior") == "include"
    extra: dict[str, Any] = {}
    for k in ("description", "footer", "default_payment_method", "custom_fields", "statement_descriptor"):
        if params.get(k) not in (None, ""):
            extra[k] = params[k]
    if "auto_advance" in params:
        extra["auto_advance"] = to_bool(params["auto_advance"], "auto_advance")
    if params.get("days_until_due") not in (None, ""):
        extra["due_date"] = ctx.now() + to_int(params["days_until_due"], "days_until_due") * DAY
    if params.get("due_date") not in (None, ""):
        extra["due_date"] = to_int(params["due_date"], "due_date")
    if params.get("metadata"):
        extra["metadata"] = {str(k): str(v) for k, v in params["metadata"].items() if v != ""}
    out = build_invoice(ctx, seq, obj, customer_seq, sub_id=sub_id, lines=[], billing_reason="manual",
                        collection_method=params.get("collection_method") or "charge_automatically", extra=extra)
    if include:
        cid = account.tables["customers"].id_of(customer_seq)
        ms = [account.build_filter("invoiceitems", "customer", cid), account.build_filter("invoiceitems", "pending", "true")]
        for invoice_item_seq in reversed(account.all_seqs("invoiceitems", ms)):
            invoice_items.attach_item_to_invoice(ctx, invoice_item_seq, seq, emit=False)
        out, _ = modify(ctx, "invoices", seq, lambda o: recompute_totals(account, seq, o), "invoice.updated")
    return out


@updates("invoices")
def update_invoice(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, INVOICE_UPDATE_FIELDS | INVOICE_IGNORED_PARAMS)
    cur = ctx.render("invoices", seq)
    if cur["status"] != "draft":
        for k in params:
            if k not in ("metadata", "description", "footer", "auto_advance", "custom_fields", "expand"):
                raise invalid(f"You can only modify {k} on draft invoices.", param=k)
    fields = INVOICE_UPDATE_FIELDS - {"days_until_due"}

    def fn(o: dict[str, Any]) -> None:
        set_fields(o, params, fields)
        if params.get("days_until_due") not in (None, ""):
            o["due_date"] = ctx.now() + to_int(params["days_until_due"], "days_until_due") * DAY

    return modify(ctx, "invoices", seq, fn, "invoice.updated")[0]


@deletes("invoices")
def delete_invoice(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    cur = ctx.render("invoices", seq)
    if cur["status"] != "draft":
        raise invalid("You can only delete draft invoices.", param="id")
    return remove(ctx, "invoices", seq, "invoice.deleted")


@action("invoices", "finalize")
def finalize_invoice(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"auto_advance"})
    account = ctx.account
    cur = ctx.render("invoices", seq)
    if cur["status"] != "draft":
        raise invalid("This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                      code="invoice_not_editable")
    now = ctx.now()
    customer_seq = ctx.render("customers", live_seq(ctx, "customers", cur["customer"], "customer"))

    def fn(o: dict[str, Any]) -> None:
        o["status"] = "open"
        o["number"] = f"{customer_seq.get('invoice_prefix') or 'EMU'}-{seq % 10000:04d}"
        o["hosted_invoice_url"] = f"https://invoice.stripe.com/i/{account.id}/{o['id']}"
        o["invoice_pdf"] = f"https://pay.stripe.com/invoice/{account.id}/{o['id']}/pdf"
        o["effective_at"] = now
        o["ending_balance"] = 0
        o["status_transitions"] = dict(o.get("status_transitions") or {}, finalized_at=now)
        if "auto_advance" in params:
            o["auto_advance"] = to_bool(params["auto_advance"], "auto_advance")
        if o["amount_due"] == 0:
            o["status"] = "paid"
            o["status_transitions"]["paid_at"] = now

    after, prev = modify(ctx, "invoices", seq, fn, None)
    ctx.emit("invoice.finalized", after)
    ctx.emit("invoice.updated", after, prev)
    if after["status"] == "paid":
        ctx.emit("invoice.paid", after)
        ctx.emit("invoice.payment_succeeded", after)
    return after


@action("invoices", "pay")
def pay_invoice(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"payment_method", "paid_out_of_band", "source", "off_session", "forgive", "mandate"})
    cur = ctx.render("invoices", seq)
    if cur["status"] == "draft":
        cur = finalize_invoice(ctx, seq, {})
    if cur["status"] == "paid":
        raise invalid("Invoice is already paid")
    if cur["status"] != "open":
        raise invalid(f"This invoice can't be paid because it has status {cur['status']}.",
                      code="invoice_not_editable")
    now = ctx.now()
    amount = cur["amount_remaining"]
    if amount > 0 and not bool_param(params, "paid_out_of_band"):
        pm = params.get("payment_method") or params.get("source") or cur.get("default_payment_method")
        if not pm:
            cus = ctx.render("customers", live_seq(ctx, "customers", cur["customer"], "customer"))
            pm = (cus.get("invoice_settings") or {}).get("default_payment_method")
        try:
            payments.pay_now(ctx, amount=amount, currency=cur["currency"], customer=cur["customer"], pm_ident=pm,
                             description=f"Payment for Invoice {cur.get('number')}")
        except StripeError as exc:
            if exc.status == 402:
                after, _ = modify(ctx, "invoices", seq, lambda o: o.update(attempted=True,
                                                                           attempt_count=o.get("attempt_count", 0) + 1),
                                  "invoice.updated")
                ctx.emit("invoice.payment_failed", after)
            raise

    def fn(o: dict[str, Any]) -> None:
        o.update({"status": "paid", "amount_paid": o["amount_due"], "amount_remaining": 0, "attempted": True,
                  "attempt_count": o.get("attempt_count", 0) + 1,
                  "status_transitions": dict(o.get("status_transitions") or {}, paid_at=now)})
        if bool_param(params, "paid_out_of_band"):
            o["paid_out_of_band"] = True

    after, prev = modify(ctx, "invoices", seq, fn, None)
    ctx.emit("invoice.paid", after)
    ctx.emit("invoice.payment_succeeded", after)
    ctx.emit("invoice.updated", after, prev)
    return after


def end_invoice(ctx: Ctx, seq: int, status: str, field: str, event: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    cur = ctx.render("invoices", seq)
    if cur["status"] not in allowed:
        raise invalid(f"You can only {event.split('.')[-1].replace('_', ' ')} invoices with status "
                      f"{' or '.join(allowed)}; this one is {cur['status']}.", code="invoice_not_editable")
    now = ctx.now()

    def fn(o: dict[str, Any]) -> None:
        o["status"] = status
        o["amount_remaining"] = 0 if status == "void" else o["amount_remaining"]
        o["status_transitions"] = dict(o.get("status_transitions") or {}, **{field: now})

    after, prev = modify(ctx, "invoices", seq, fn, None)
    ctx.emit(event, after)
    ctx.emit("invoice.updated", after, prev)
    return after


@action("invoices", "void")
def void_invoice(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, set())
    return end_invoice(ctx, seq, "void", "voided_at", "invoice.voided", ("open", "uncollectible"))


@action("invoices", "mark_uncollectible")
def mark_uncollectible_invoice(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, set())
    return end_invoice(ctx, seq, "uncollectible", "marked_uncollectible_at", "invoice.marked_uncollectible",
                       ("open",))


@action("invoices", "send")
def send_invoice(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, set())
    cur = ctx.render("invoices", seq)
    if cur["status"] != "open":
        raise invalid("You can only send open invoices.", code="invoice_not_editable")
    ctx.emit("invoice.sent", cur)
    return cur


list_filters("invoices", {"customer": relation_filter("customer", "customers", ("customer",)),
                          "status": enum_filter("status", INVOICE_STATUSES, ("status",)),
                          "subscription": relation_filter("subscription", "subscriptions",
                                                          ("parent", "subscription_details", "subscription")),
                          "collection_method": field_filter(("collection_method",)), "due_date": accepted_not_applied})


class _InvoiceColumns:
    """The invoice and invoice-line columns as the invoices step fills them."""

    def __init__(self) -> None:
        self.customer = array("i")
        self.subscription = array("i")
        self.status = array("b")
        self.reason = array("b")  # 0 subscription_create, 1 subscription_cycle, 2 manual
        self.lines_of = array("i", [0])
        self.line_price = array("i")
        self.line_quantity = array("H")
        self.line_item = array("i")
        self.line_created = array("q")

    def add_line(self, price: int, quantity: int, item: int, created: int) -> None:
        self.line_price.append(price)
        self.line_quantity.append(quantity)
        self.line_item.append(item)
        self.line_created.append(created)


def _bill_subscription(gen: GenerationContext, columns: _InvoiceColumns, invoice: int, created: int,
                       reason: int, sub: int) -> None:
    """A line per subscription item; the subscription's latest invoice becomes this one."""
    sub_cols = gen.cols["subscriptions"]
    item_cols = gen.cols["subscription_items"]
    items_of = gen.offsets["subscriptions"]["subscription_items"]
    columns.reason.append(reason)
    columns.subscription.append(sub)
    columns.customer.append(sub_cols["customer"][sub])
    sub_cols["latest_invoice"][sub] = invoice
    for item in range(items_of[sub], items_of[sub + 1]):
        columns.add_line(item_cols["price"][item], item_cols["qty"][item], item, created)


def _bill_one_off(gen: GenerationContext, columns: _InvoiceColumns, is_big: bool, created: int) -> None:
    random = gen.random
    price_count = len(gen.cols["prices"]["product"])
    columns.reason.append(2)
    columns.subscription.append(-1)
    columns.customer.append(pick_earlier(gen.created["customers"], created, random()))
    line_count = 11 + int(random() * 20) if (is_big or random() < 0.01) else 1 + int(random() * 3)
    available = bisect_right(gen.created["prices"], created) or 1
    for _ in range(line_count):
        columns.add_line(int(random() * available) if price_count else -1, 1 + int(random() * 3), -1, created)


@generation_step(50)
def generate_invoices(gen: GenerationContext) -> None:
    """Every subscription's creation invoice (as at Stripe), then 60% renewals (a line per item)
    and one-off invoices of 1-3 lines (1% have 11-30)."""
    random = gen.random
    sub_created = gen.created["subscriptions"]
    sub_count = len(sub_created)
    creation_count = min(sub_count, gen.sizes["invoices"])
    rest_created = gen.timeline.sample(gen.sizes["invoices"] - creation_count, gen.rng, lo=gen.child_lo)
    entries = sorted([(sub_created[s], 0, s) for s in range(creation_count)] + [(t, 1, -1) for t in rest_created])
    created = array("q", (entry[0] for entry in entries))
    columns = _InvoiceColumns()
    very_recent = gen.end - 2 * DAY
    big_invoice = len(created) // 3 if len(created) >= 3 else -1
    for invoice, (t, reason, sub) in enumerate(entries):
        if reason == 0 or (sub_count and random() < 0.6 and invoice != big_invoice):
            if reason == 1:
                sub = pick_earlier(sub_created, t, random())
            _bill_subscription(gen, columns, invoice, t, reason, sub)
        else:
            _bill_one_off(gen, columns, invoice == big_invoice, t)
        columns.lines_of.append(len(columns.line_price))
        draw = random()
        if t >= very_recent:
            columns.status.append(0 if draw < 0.4 else 1 if draw < 0.8 else 2)
        else:
            columns.status.append(4 if draw < 0.03 else 3 if draw < 0.05 else 1 if draw < 0.08 else 2)
    gen.created["invoices"] = created
    gen.created["invoice_lines"] = columns.line_created
    gen.cols["invoices"] = {"customer": columns.customer, "subscription": columns.subscription,
                            "status": columns.status, "reason": columns.reason}
    gen.cols["invoice_lines"] = {"price": columns.line_price, "qty": columns.line_quantity,
                                 "subscription_item": columns.line_item}
    gen.offsets["invoices"] = {"invoice_lines": columns.lines_of}
