"""Invoice items: pending charges a customer's next invoice picks up."""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any

from ..errors import invalid, missing_param
from ..filters import always, created_rows_only_filter, relation_filter
from ..generation import GenerationContext, pick_earlier
from ..ids import h
from ..objects import id_of
from ..operations import check_params, insert, int_param, live_seq, modify, remove, set_fields
from ..registry import creates, deletes, generation_step, list_filters, renders, updates
from ..rendering import from_template, ref_or_none
from ..store import Matcher, Table
from . import catalog, invoices

if TYPE_CHECKING:  # pragma: no cover
    from ..account import AccountStore
    from ..core import Ctx


@renders("invoiceitems")
def render_invoiceitem(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["invoiceitems"]
    obj = from_template("invoiceitem")
    row_hash = h(table.ns, row)
    created = table.created[row]
    price_row = table.cols["price"][row]
    qty = 1 + row_hash % 3
    unit = catalog.price_amount(account, price_row) if price_row >= 0 else 1000
    prices = account.tables["prices"]
    obj.update({"id": table.codec.encode(row), "livemode": livemode, "date": created, "amount": unit * qty, "net_amount": unit * qty,
                "customer": account.tables["customers"].codec.encode(table.cols["customer"][row]), "currency": "usd",
                "description": f"Pending item {row}", "quantity": qty, "quantity_decimal": str(qty),
                "period": {"start": created, "end": created}, "invoice": None, "metadata": {}})
    obj["pricing"] = {"type": "price_details", "unit_amount_decimal": str(unit),
                      "price_details": {"price": prices.codec.encode(price_row) if price_row >= 0 else None,
                                        "product": ref_or_none(account, "products", prices.cols["product"][price_row] if price_row >= 0 else -1)}}
    return obj


INVOICE_ITEM_FIELDS = frozenset({"description", "metadata", "period", "discountable", "tax_rates", "discounts"})


def invoice_item_amount(ctx: Ctx, params: dict[str, Any]) -> tuple[int, int, dict[str, Any] | None]:
    qty = int_param(params, "quantity", 1) or 1
    price_ident = params.get("price") or ((params.get("pricing") or {}).get("price") if isinstance(params.get("pricing"), dict) else None)
    if price_ident:
        price = ctx.render("prices", live_seq(ctx, "prices", price_ident, "price"))
        return (price.get("unit_amount") or 0) * qty, qty, price
    if isinstance(params.get("price_data"), dict):
        price_data = params["price_data"]
        return (int_param(price_data, "unit_amount", 0) or 0) * qty, qty, None
    if params.get("unit_amount") not in (None, ""):
        return (int_param(params, "unit_amount", 0) or 0) * qty, qty, None
    if params.get("amount") not in (None, ""):
        return int_param(params, "amount", 0) or 0, 1, None
    raise missing_param("amount")


@creates("invoiceitems")
def create_invoiceitem(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, INVOICE_ITEM_FIELDS | {"customer", "amount", "currency", "price", "pricing", "price_data", "quantity", "invoice",
                                                "subscription", "unit_amount", "unit_amount_decimal", "quantity_decimal"}, ("customer",))
    account = ctx.account
    customer_seq = live_seq(ctx, "customers", params["customer"], "customer")
    amount, qty, price = invoice_item_amount(ctx, params)
    inv_seq = None
    if params.get("invoice"):
        inv_seq = live_seq(ctx, "invoices", params["invoice"], "invoice")
        if ctx.render("invoices", inv_seq)["status"] != "draft":
            raise invalid("You can only add invoice items to draft invoices.", param="invoice",
                          code="invoice_not_editable")
    now = ctx.now()
    seq, obj = account.new_object("invoiceitems", now)
    obj.update({"amount": amount, "net_amount": amount, "currency": str(params.get("currency") or "usd").lower(),
                "customer": account.tables["customers"].id_of(customer_seq), "date": now, "description": params.get("description"),
                "discountable": True, "invoice": None, "period": {"start": now, "end": now}, "proration": False,
                "quantity": qty, "quantity_decimal": str(qty), "subscription": params.get("subscription") or None,
                "parent": None, "tax_rates": [], "discounts": []})
    obj["pricing"] = {"type": "price_details", "unit_amount_decimal": str(amount // max(1, qty)),
                      "price_details": {"price": price["id"] if price else None,
                                        "product": id_of(price.get("product")) if price else None}}
    set_fields(obj, params, INVOICE_ITEM_FIELDS - {"description"})
    out = insert(ctx, "invoiceitems", seq, obj, "invoiceitem.created")
    if inv_seq is not None:
        attach_item_to_invoice(ctx, seq, inv_seq, emit=True)
        out = ctx.render("invoiceitems", seq)
    return out


def attach_item_to_invoice(ctx: Ctx, invoice_item_seq: int, inv_seq: int, emit: bool) -> None:
    account = ctx.account
    item = ctx.render("invoiceitems", invoice_item_seq)
    inv = ctx.render("invoices", inv_seq)
    table = account.tables["invoiceitems"]
    table.put(invoice_item_seq, dict(account.stored("invoiceitems", invoice_item_seq), invoice=inv["id"]))
    price_id = ((item.get("pricing") or {}).get("price_details") or {}).get("price")
    price_seq = account.tables["prices"].seq_of(price_id) if price_id else None
    price = ctx.render("prices", price_seq) if price_seq is not None else None
    line_seq, line_obj = invoices.new_line_object(ctx, inv["id"], {"price": price, "quantity": item.get("quantity"), "amount": item["amount"],
                                                                   "invoice_item": item["id"], "description": item.get("description")},
                                                  ctx.now(), None)
    line_table = account.tables["invoice_lines"]
    line_table.put(line_seq, account.dehydrate("invoice_lines", line_obj))
    line_table.add_child(inv_seq, line_seq)
    account.ii_line[invoice_item_seq] = line_seq
    if emit:
        modify(ctx, "invoices", inv_seq, lambda o: invoices.recompute_totals(account, inv_seq, o), "invoice.updated")


@updates("invoiceitems")
def update_invoiceitem(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, INVOICE_ITEM_FIELDS | {"amount", "price", "pricing", "price_data", "quantity", "unit_amount", "unit_amount_decimal",
                                                "quantity_decimal"})
    account = ctx.account
    cur = ctx.render("invoiceitems", seq)
    inv_seq = account.tables["invoices"].seq_of(cur["invoice"]) if cur.get("invoice") else None
    if inv_seq is not None and ctx.render("invoices", inv_seq)["status"] != "draft":
        raise invalid("You can only edit invoice items on draft invoices.", code="invoice_not_editable")
    amount_keys = {"amount", "price", "pricing", "price_data", "quantity", "unit_amount"}

    def fn(o: dict[str, Any]) -> None:
        set_fields(o, params, INVOICE_ITEM_FIELDS)
        if amount_keys & set(params):
            merged = {k: params[k] for k in amount_keys if k in params}
            if "quantity" in params and not ({"amount", "price", "pricing", "price_data", "unit_amount"} & set(params)):
                unit = o["amount"] // max(1, o.get("quantity") or 1)
                merged = {"unit_amount": unit, "quantity": params["quantity"]}
            amount, qty, _ = invoice_item_amount(ctx, merged)
            o.update({"amount": amount, "net_amount": amount, "quantity": qty, "quantity_decimal": str(qty)})

    after, _ = modify(ctx, "invoiceitems", seq, fn, None)  # Stripe has no invoiceitem.updated event
    line = account.ii_line.get(seq)
    if inv_seq is not None and line is not None:
        line_table = account.tables["invoice_lines"]
        line_table.put(line, dict(account.stored("invoice_lines", line), amount=after["amount"], subtotal=after["amount"],
                                  quantity=after["quantity"], description=after.get("description")))
        modify(ctx, "invoices", inv_seq, lambda o: invoices.recompute_totals(account, inv_seq, o), "invoice.updated")
    return after


@deletes("invoiceitems")
def delete_invoiceitem(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    account = ctx.account
    cur = ctx.render("invoiceitems", seq)
    inv_seq = account.tables["invoices"].seq_of(cur["invoice"]) if cur.get("invoice") else None
    if inv_seq is not None and ctx.render("invoices", inv_seq)["status"] != "draft":
        raise invalid("You can only delete invoice items on draft invoices.", code="invoice_not_editable")
    out = remove(ctx, "invoiceitems", seq, "invoiceitem.deleted")
    line = account.ii_line.pop(seq, None)
    if inv_seq is not None and line is not None:
        account.tables["invoice_lines"].delete(line)
        modify(ctx, "invoices", inv_seq, lambda o: invoices.recompute_totals(account, inv_seq, o), "invoice.updated")
    return out


def pending_filter(account: AccountStore, t: Table, value: Any) -> Matcher:
    want = str(value) == "true"
    return Matcher(always if want else None, lambda s, o: (o.get("invoice") is None) == want)


list_filters("invoiceitems", {"customer": relation_filter("customer", "customers", ("customer",)),
                              "invoice": created_rows_only_filter(("invoice",)), "pending": pending_filter})


@generation_step(55)
def generate_invoice_items(gen: GenerationContext) -> None:
    random = gen.random
    price_count = len(gen.cols["prices"]["product"])
    created = gen.timeline.sample(gen.sizes["invoiceitems"], gen.rng, lo=gen.child_lo)
    gen.created["invoiceitems"] = created
    gen.cols["invoiceitems"] = {
        "customer": array("i", (pick_earlier(gen.created["customers"], t, random()) for t in created)),
        "price": array("i", (pick_earlier(gen.created["prices"], t, random()) if price_count else -1
                             for t in created)),
    }
