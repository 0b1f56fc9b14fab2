"""Event records (``/v1/events``) and which webhook endpoints get them."""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .account import AccountStore

RETENTION_SECONDS = 30 * 86400  # Stripe keeps events listable/retrievable for 30 days


def build_event(
    acc: AccountStore,
    seq: int,
    typ: str,
    obj: dict[str, Any],
    previous: dict[str, Any] | None,
    *,
    created: int,
    livemode: bool,
    api_version: str,
    request_id: str | None,
    idempotency_key: str | None,
    pending_webhooks: int,
) -> dict[str, Any]:
    """An event dict shaped like Stripe's (``account`` only for connected accounts)."""
    ev: dict[str, Any] = {"id": acc.tables["events"].id_of(seq), "object": "event"}
    if acc.platform_id is not None:
        ev["account"] = acc.id
    data: dict[str, Any] = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    ev.update({
        "api_version": api_version,
        "created": created,
        "data": data,
        "livemode": livemode,
        "pending_webhooks": pending_webhooks,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": typ,
    })
    return ev


def endpoint_wants(endpoint: dict[str, Any], typ: str) -> bool:
    if endpoint.get("status") != "enabled":
        return False
    for pat in endpoint.get("enabled_events") or ():
        if pat == "*" or pat == typ or ("*" in pat and fnmatch.fnmatchcase(typ, pat)):
            return True
    return False


def previous_attributes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Old values of the top-level fields that changed (``None`` for fields that were absent)."""
    prev: dict[str, Any] = {}
    for k, v in after.items():
        if k in ("livemode",):
            continue
        old = before.get(k)
        if old != v:
            prev[k] = old
    for k, v in before.items():
        if k not in after:
            prev[k] = v
    return prev
