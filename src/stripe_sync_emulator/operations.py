"""What every operation is built from: parameter checking and coercion, and inserting,
modifying and removing rows with the events Stripe sends for them.

Stored rows are replaced, never modified in place (``modify`` works on a copy), so rendered objects
and event payloads already handed out stay valid snapshots.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import invalid, missing_param, unknown_param
from .events import previous_attributes
from .forms import to_bool, to_float, to_int
from .ids import b62_hash, stable_hash
from .objects import id_of

if TYPE_CHECKING:  # pragma: no cover
    from .core import Ctx


INT_FIELDS = {
    "amount", "amount_off", "unit_amount", "quantity", "duration_in_months", "max_redemptions", "redeem_by",
    "expires_at", "trial_period_days", "days_until_due", "trial_end", "cancel_at", "application_fee_amount",
    "billing_cycle_anchor", "due_date", "interval_count", "exp_month", "exp_year", "start_date", "end_date",
    "iterations", "minimum_amount", "balance", "next_invoice_sequence", "arrival_date", "amount_captured",
    "credit_amount", "refund_amount", "out_of_band_amount", "amount_to_capture",
}


FLOAT_FIELDS = {"percent_off", "percentage", "application_fee_percent", "amount_percent"}


BOOL_FIELDS = {
    "active", "cancel_at_period_end", "auto_advance", "inclusive", "discountable", "proration", "shippable",
    "captured", "confirm", "off_session", "enabled", "first_time_transaction", "disabled", "connect", "submit",
    "attach_to_self", "paid_out_of_band", "deleted", "capture", "actionable", "clear_usage", "single_use",
}


def check_params(params: dict[str, Any], allowed: set[str] | frozenset[str], required: tuple[str, ...] = ()) -> None:
    for k in params:
        if k not in allowed and k != "expand":
            raise unknown_param(k)
    for r in required:
        if params.get(r) in (None, ""):
            raise missing_param(r)


def coerce(key: str, v: Any) -> Any:
    if isinstance(v, dict):
        return {k: coerce(k, x) for k, x in v.items()}
    if isinstance(v, list):
        return [coerce(key, x) for x in v]
    if v == "" or v is None:
        return None
    if key in INT_FIELDS:
        return to_int(v, key)
    if key in FLOAT_FIELDS:
        return to_float(v, key)
    if key in BOOL_FIELDS:
        return to_bool(v, key)
    return v


def merge_hashes(dst: Any, src: dict[str, Any]) -> dict[str, Any]:
    out = dict(dst) if isinstance(dst, dict) else {}
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "metadata":
            out[k] = merge_hashes(out[k], v)
        else:
            out[k] = v
    return out


def set_metadata(obj: dict[str, Any], value: Any) -> None:
    """Stripe semantics: keys merge, ``""`` unsets a key, ``metadata=""`` clears everything."""
    if value in ("", None):
        obj["metadata"] = {}
        return
    if not isinstance(value, dict):
        raise invalid("Invalid object", param="metadata")
    md = dict(obj.get("metadata") or {})
    for k, v in value.items():
        if len(md) >= 50 and k not in md and v != "":
            raise invalid("Metadata can have at most 50 keys.", param="metadata")
        if v == "" or v is None:
            md.pop(k, None)
        else:
            md[str(k)] = str(v)
    obj["metadata"] = md


def set_fields(obj: dict[str, Any], params: dict[str, Any], fields: set[str] | frozenset[str]) -> None:
    for k in fields:
        if k not in params:
            continue
        if k == "metadata":
            set_metadata(obj, params[k])
            continue
        v = coerce(k, params[k])
        if isinstance(v, dict) and isinstance(obj.get(k), dict):
            obj[k] = merge_hashes(obj[k], v)
        else:
            obj[k] = v


def hash_param(v: Any) -> dict[str, Any]:
    """A hash-typed param, or an empty one."""
    return v if isinstance(v, dict) else {}


def int_param(params: dict[str, Any], key: str, default: int | None = None) -> int | None:
    v = params.get(key)
    if v in (None, ""):
        return default
    return to_int(v, key)


def bool_param(params: dict[str, Any], key: str, default: bool = False) -> bool:
    v = params.get(key)
    if v in (None, ""):
        return default
    return to_bool(v, key)


def insert(ctx: Ctx, name: str, seq: int, obj: dict[str, Any], event: str | None = None,
           parent: int | None = None) -> dict[str, Any]:
    table = ctx.account.tables[name]
    table.put(seq, ctx.account.dehydrate(name, obj))
    if parent is not None:
        table.add_child(parent, seq)
    out = ctx.render(name, seq)
    if event:
        ctx.emit(event, out)
    return out


def modify(ctx: Ctx, name: str, seq: int, fn: Callable[[dict[str, Any]], None],
           event: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Apply ``fn`` to a copy of the stored row; emit ``event`` with previous_attributes if anything changed."""
    account = ctx.account
    before = ctx.render(name, seq)
    obj = account.stored(name, seq)
    fn(obj)
    account.tables[name].put(seq, obj)
    after = ctx.render(name, seq)
    prev = previous_attributes(before, after)
    if event and prev:
        ctx.emit(event, after, prev)
    return after, prev


def remove(ctx: Ctx, name: str, seq: int, event: str | None = None) -> dict[str, Any]:
    table = ctx.account.tables[name]
    before = ctx.render(name, seq)
    table.delete(seq)
    if event:
        final = dict(before)
        ctx.emit(event, final)
    return {"id": table.id_of(seq), "object": table.rt.object, "deleted": True}


def live_seq(ctx: Ctx, name: str, ident: Any, param: str) -> int:
    if ident in (None, ""):
        raise missing_param(param)
    if isinstance(ident, dict):
        ident = ident.get("id")
    return ctx.account.live_seq_or_404(name, str(ident), param)


def secret_suffix(ctx: Ctx, n: int = 24) -> str:
    return b62_hash(stable_hash(ctx.account.ns, "secret", ctx.account.tables["events"].next_seq, ctx.now()), n)


class EntitlementWatch:
    """Snapshot customers' entitlements before a change; emit summary events for those that changed."""

    def __init__(self, ctx: Ctx, customers: set[int]) -> None:
        self.ctx = ctx
        self.before = {c: ctx.account.entitlement_features(c) for c in customers}

    def add(self, c: int) -> None:
        if c not in self.before:
            self.before[c] = self.ctx.account.entitlement_features(c)

    def done(self) -> None:
        account = self.ctx.account
        for c, before in self.before.items():
            if account.entitlement_features(c) != before:
                self.ctx.emit("entitlements.active_entitlement_summary.updated",
                              account.entitlement_summary(c, self.ctx.livemode))


def customer_seq_of(ctx: Ctx, ident: Any) -> int | None:
    if not ident:
        return None
    return ctx.account.tables["customers"].seq_of(str(id_of(ident)))
