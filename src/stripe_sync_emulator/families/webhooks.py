"""Webhook endpoints, and the list filters of the events they deliver."""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any

from ..errors import invalid, missing_param
from ..filters import accepted_not_applied
from ..forms import as_list, to_bool
from ..ids import b62_hash, stable_hash
from ..operations import bool_param, check_params, modify, remove, set_fields
from ..registry import creates, deletes, list_filters, updates
from ..store import Matcher, Table
from .history import event_types_matching

if TYPE_CHECKING:  # pragma: no cover
    from ..account import AccountStore
    from ..core import Ctx


@creates("webhook_endpoints")
def create_webhook_endpoint(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"url", "enabled_events", "description", "metadata", "api_version", "connect"}, ("url",))
    events = [str(e) for e in as_list(params.get("enabled_events"))]
    if not events:
        raise missing_param("enabled_events")
    account = ctx.account
    seq, obj = account.new_object("webhook_endpoints", ctx.now())
    secret = "whsec_" + b62_hash(stable_hash(account.ns, "whsec", seq, ctx.core.config.seed), 32)
    obj.update({"url": str(params["url"]), "enabled_events": events, "description": params.get("description"),
                "api_version": params.get("api_version"), "application": None, "status": "enabled"})
    set_fields(obj, params, {"metadata"})
    account.tables["webhook_endpoints"].put(seq, obj)
    account.webhook_secrets[seq] = secret
    account.webhook_connect[seq] = bool_param(params, "connect")
    out = dict(ctx.render("webhook_endpoints", seq))
    out["secret"] = secret  # only ever shown here, as at Stripe
    return out


@updates("webhook_endpoints")
def update_webhook_endpoint(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"url", "enabled_events", "description", "metadata", "disabled"})

    def fn(o: dict[str, Any]) -> None:
        set_fields(o, params, {"url", "description", "metadata"})
        if "enabled_events" in params:
            o["enabled_events"] = [str(e) for e in as_list(params["enabled_events"])]
        if "disabled" in params:
            o["status"] = "disabled" if to_bool(params["disabled"], "disabled") else "enabled"

    return modify(ctx, "webhook_endpoints", seq, fn, None)[0]


@deletes("webhook_endpoints")
def delete_webhook_endpoint(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    ctx.account.webhook_secrets.pop(seq, None)
    return remove(ctx, "webhook_endpoints", seq, None)


def event_type_filter(account: AccountStore, t: Table, value: Any) -> Matcher:
    pats = [str(v) for v in as_list(value)]
    if len(pats) > 20:
        raise invalid("You may specify at most 20 types.", param="types")

    def matches(typ: str) -> bool:
        return any(fnmatch.fnmatchcase(typ, p) if "*" in p else typ == p for p in pats)

    def dyn(s: int, o: dict[str, Any]) -> bool:
        return matches(o.get("type", ""))

    codes = event_types_matching(matches)
    if not codes or not t.n_gen:
        return Matcher(None, dyn)
    type_col = t.cols["type"]
    return Matcher(lambda i: type_col[i] in codes, dyn)


list_filters("events", {"type": event_type_filter, "types": event_type_filter,
                        "delivery_success": accepted_not_applied})
list_filters("webhook_endpoints", {})
