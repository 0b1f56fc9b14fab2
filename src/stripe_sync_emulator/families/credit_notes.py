"""Credit notes and their lines."""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any

from ..errors import invalid, missing_param
from ..filters import field_filter, relation_filter
from ..forms import as_list
from ..generation import DAY, GenerationContext, pick_earlier
from ..ids import h
from ..operations import check_params, int_param, live_seq, modify, set_fields
from ..registry import action, creates, generation_step, list_filters, renders, updates
from ..rendering import from_template
from . import invoices

if TYPE_CHECKING:  # pragma: no cover
    from ..account import AccountStore
    from ..core import Ctx


@renders("credit_notes")
def render_credit_note(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["credit_notes"]
    obj = from_template("credit_note")
    row_hash = h(table.ns, row)
    invoice_row = table.cols["invoice"][row]
    inv_t = account.tables["invoices"]
    offs = table.offsets["credit_note_lines"]
    lines = account.tables["credit_note_lines"].cols["line"]
    amount = sum(invoices.line_amount(account, lines[k]) for k in range(offs[row], offs[row + 1]))
    paid = inv_t.cols["status"][invoice_row] == 2
    void = row_hash % 15 == 0
    obj.update({
        "id": table.codec.encode(row), "created": table.created[row], "livemode": livemode, "amount": amount, "subtotal": amount,
        "subtotal_excluding_tax": amount, "total": amount, "total_excluding_tax": amount,
        "customer": account.tables["customers"].codec.encode(inv_t.cols["customer"][invoice_row]), "invoice": inv_t.codec.encode(invoice_row),
        "effective_at": table.created[row], "memo": "Service credit" if row_hash % 2 else None, "currency": "usd",
        "number": f"CN-{row + 1:06d}", "status": "void" if void else "issued",
        "voided_at": table.created[row] + DAY if void else None, "type": "post_payment" if paid else "pre_payment",
        "reason": (None, "duplicate", "order_change", "product_unsatisfactory")[row_hash % 4],
        "post_payment_amount": amount if paid else 0, "pre_payment_amount": 0 if paid else amount,
        "pdf": f"https://pay.stripe.com/credit_notes/acct_test/{table.codec.encode(row)}/pdf", "refunds": [],
        "total_taxes": [], "metadata": {},
    })
    return obj


@renders("credit_note_lines")
def render_credit_note_line(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["credit_note_lines"]
    obj = from_template("credit_note_line_item")
    line = table.cols["line"][row]
    amt = invoices.line_amount(account, line)
    qty = account.tables["invoice_lines"].cols["qty"][line]
    obj.update({"id": table.codec.encode(row), "livemode": livemode, "amount": amt, "quantity": qty,
                "invoice_line_item": account.tables["invoice_lines"].codec.encode(line), "type": "invoice_line_item",
                "description": f"Credit for line {line}", "unit_amount": amt // max(1, qty),
                "unit_amount_decimal": str(amt // max(1, qty)), "tax_rates": [], "metadata": {}})
    return obj


@creates("credit_notes")
def create_credit_note(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"invoice", "lines", "amount", "credit_amount", "refund_amount", "out_of_band_amount", "reason", "memo",
                          "metadata", "shipping_cost", "effective_at", "email_type", "refunds"}, ("invoice",))
    account = ctx.account
    inv_seq = live_seq(ctx, "invoices", params["invoice"], "invoice")
    inv = ctx.render("invoices", inv_seq)
    if inv["status"] not in ("open", "paid"):
        raise invalid("You can only create credit notes on open or paid invoices.", param="invoice",
                      code="invoice_not_editable")
    reason = params.get("reason") or None
    if reason not in (None, "duplicate", "fraudulent", "order_change", "product_unsatisfactory"):
        raise invalid("Invalid reason", param="reason")
    line_specs: list[dict[str, Any]] = []
    for k, ln in enumerate(as_list(params.get("lines"))):
        ln = ln if isinstance(ln, dict) else {}
        if ln.get("type") == "custom_line_item":
            amt = (int_param(ln, "unit_amount", 0) or 0) * (int_param(ln, "quantity", 1) or 1)
            line_specs.append({"type": "custom_line_item", "amount": amt, "description": ln.get("description"),
                               "quantity": int_param(ln, "quantity", 1), "invoice_line_item": None})
        else:
            li = account.seq_or_404("invoice_lines", str(ln.get("invoice_line_item") or ""), f"lines[{k}][invoice_line_item]")
            line = ctx.render("invoice_lines", li)
            amt = int_param(ln, "amount", line["amount"]) or 0
            line_specs.append({"type": "invoice_line_item", "amount": amt, "description": line.get("description"),
                               "quantity": line.get("quantity", 1), "invoice_line_item": line["id"]})
    if not line_specs:
        amt_or_none = int_param(params, "amount", None)
        if amt_or_none is not None:
            amt = amt_or_none
        else:
            amt = (int_param(params, "credit_amount", 0) or 0) + (int_param(params, "refund_amount", 0) or 0) + \
                (int_param(params, "out_of_band_amount", 0) or 0)
        if not amt:
            raise missing_param("lines")
        line_specs.append({"type": "custom_line_item", "amount": amt, "description": params.get("memo") or "Credit",
                           "quantity": 1, "invoice_line_item": None})
    total = sum(s["amount"] for s in line_specs)
    if total > inv["total"]:
        raise invalid(f"The sum of credit amount, refund amount and out of band amount (${total / 100:.2f}) must be less than "
                      "or equal to the invoice total.", param="amount")
    now = ctx.now()
    post = inv["status"] == "paid"
    seq, obj = account.new_object("credit_notes", now)
    obj.update({"invoice": inv["id"], "customer": inv["customer"], "amount": total, "subtotal": total,
                "subtotal_excluding_tax": total, "total": total, "total_excluding_tax": total, "currency": "usd",
                "memo": params.get("memo"), "reason": reason, "status": "issued", "effective_at": now,
                "type": "post_payment" if post else "pre_payment", "voided_at": None,
                "number": f"{inv.get('number') or 'CN'}-CN-{seq % 100:02d}", "refunds": [], "discount_amount": 0,
                "post_payment_amount": total if post else 0, "pre_payment_amount": 0 if post else total,
                "pdf": f"https://pay.stripe.com/credit_notes/{account.id}/{obj['id']}/pdf", "total_taxes": []})
    set_fields(obj, params, {"metadata"})
    account.tables["credit_notes"].put(seq, account.dehydrate("credit_notes", obj))
    line_table = account.tables["credit_note_lines"]
    for s in line_specs:
        line_seq, line_obj = account.new_object("credit_note_lines", now)
        q = s.get("quantity") or 1
        line_obj.update({"amount": s["amount"], "description": s["description"], "discount_amount": 0,
                         "discount_amounts": [], "invoice_line_item": s["invoice_line_item"], "quantity": q,
                         "tax_rates": [], "type": s["type"], "unit_amount": s["amount"] // max(1, q),
                         "unit_amount_decimal": str(s["amount"] // max(1, q)), "metadata": {}})
        if s["invoice_line_item"] is None:  # only lines crediting an invoice line name one
            line_obj.pop("invoice_line_item", None)
        if s["type"] == "invoice_line_item":
            line_obj["unit_amount"] = None
            line_obj["unit_amount_decimal"] = None
        line_table.put(line_seq, account.dehydrate("credit_note_lines", line_obj))
        line_table.add_child(seq, line_seq)
    out = ctx.render("credit_notes", seq)
    ctx.emit("credit_note.created", out)
    key = "post_payment_credit_notes_amount" if post else "pre_payment_credit_notes_amount"

    def fn(o: dict[str, Any]) -> None:
        o[key] = int(o.get(key) or 0) + total
        if not post:
            o["amount_remaining"] = max(0, int(o.get("amount_remaining") or 0) - total)

    modify(ctx, "invoices", inv_seq, fn, "invoice.updated")
    return out


@updates("credit_notes")
def update_credit_note(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"memo", "metadata"})
    return modify(ctx, "credit_notes", seq, lambda o: set_fields(o, params, {"memo", "metadata"}), "credit_note.updated")[0]


@action("credit_notes", "void")
def void_credit_note(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, set())
    cur = ctx.render("credit_notes", seq)
    if cur["status"] == "void":
        raise invalid("This credit note has already been voided.")

    def fn(o: dict[str, Any]) -> None:
        o.update({"status": "void", "voided_at": ctx.now()})

    after, prev = modify(ctx, "credit_notes", seq, fn, None)
    ctx.emit("credit_note.voided", after)
    ctx.emit("credit_note.updated", after, prev)
    return after


list_filters("credit_notes", {"customer": field_filter(("customer",)),
                              "invoice": relation_filter("invoice", "invoices", ("invoice",))})


@generation_step(60)
def generate_credit_notes(gen: GenerationContext) -> None:
    """1-2 lines each, crediting the first lines of a (preferably paid) invoice."""
    random = gen.random
    invoice_created = gen.created["invoices"]
    invoice_status = gen.cols["invoices"]["status"]
    lines_of_invoice = gen.offsets["invoices"]["invoice_lines"]
    created = gen.timeline.sample(gen.sizes["credit_notes"] if len(invoice_created) else 0, gen.rng,
                                  lo=gen.child_lo, bursts=False)
    invoice_of = array("i")
    lines_of = array("i", [0])
    line_invoice_line = array("i")
    line_created = array("q")
    for t in created:
        invoice = pick_earlier(invoice_created, t, random())
        for _ in range(4):
            if invoice_status[invoice] == 2:
                break
            invoice = pick_earlier(invoice_created, t, random())
        invoice_of.append(invoice)
        first, last = lines_of_invoice[invoice], lines_of_invoice[invoice + 1]
        for line in range(first, min(last, first + (1 if random() < 0.5 else 2))):
            line_invoice_line.append(line)
            line_created.append(t)
        lines_of.append(len(line_invoice_line))
    gen.created["credit_notes"] = created
    gen.created["credit_note_lines"] = line_created
    gen.cols["credit_notes"] = {"invoice": invoice_of}
    gen.cols["credit_note_lines"] = {"line": line_invoice_line}
    gen.offsets["credit_notes"] = {"credit_note_lines": lines_of}
