"""Every object type the engine syncs, as the emulator serves it (lists with the engine's expansions,
retrieves, deleted objects, events), validated against Stripe's published schema at the emulator's
API version: `tests/data/stripe_schema.json`, derived by `scripts/derive_stripe_schema.py` from the npm
`stripe` package named in its `source`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from emulator_helpers import raw

from stripe_sync_core.listing import plan_listings
from stripe_sync_core.registry import REGISTRY, retrieve_expansions
from stripe_sync_emulator import DEFAULT_API_VERSION, StripeEmulator

SCHEMA = json.loads((Path(__file__).parents[1] / "data" / "stripe_schema.json").read_text())
TYPES: dict[str, Any] = SCHEMA["types"]

NEWER_THAN_SCHEMA: dict[str, set[str]] = {}
"""Fields documented by Stripe as newer than the schema source (none: the source is at the emulator's
version). A field listed here is excused, nothing else."""


def _interface(name: str) -> dict[str, Any]:
    decl = TYPES[name]
    while "union" in decl and len(decl["union"]) == 1:
        decl = TYPES[decl["union"][0]["ref"]]
    fields = dict(decl.get("object") or {})
    for parent in decl.get("extends") or []:
        if isinstance(parent, dict) and parent.get("ref") in TYPES:
            fields = {**_interface(parent["ref"])["object"], **fields}
    return {"object": fields, "index": decl.get("index")}


def validate(value: Any, t: Any, path: str, problems: list[str]) -> None:
    """Append to `problems` every way `value` does not fit the type expression `t`."""
    if t == "any":
        return
    if isinstance(t, str):
        ok = {"string": isinstance(value, str), "boolean": isinstance(value, bool), "null": value is None,
              "number": isinstance(value, (int, float)) and not isinstance(value, bool)}[t]
        if not ok:
            problems.append(f"{path}: {value!r:.60} is not {t}")
        return
    if "literal" in t:
        if value != t["literal"]:
            problems.append(f"{path}: {value!r:.60} is not {t['literal']!r}")
        return
    if "union" in t:
        best: list[str] | None = None
        for option in t["union"]:
            attempt: list[str] = []
            validate(value, option, path, attempt)
            if not attempt:
                return
            if best is None or len(attempt) < len(best):
                best = attempt
        problems.extend(best or [f"{path}: fits no option"])
        return
    if "array" in t:
        if not isinstance(value, list):
            problems.append(f"{path}: {value!r:.60} is not an array")
            return
        for k, item in enumerate(value):
            validate(item, t["array"], f"{path}[{k}]", problems)
        return
    if "list" in t:
        if not isinstance(value, dict) or value.get("object") != "list":
            problems.append(f"{path}: not a list object")
            return
        extra = set(value) - {"object", "data", "has_more", "url"}
        if extra or not isinstance(value.get("has_more"), bool) or not isinstance(value.get("url"), str):
            problems.append(f"{path}: list envelope {sorted(value)}")
        validate(value.get("data"), {"array": t["list"]}, f"{path}.data", problems)
        return
    if "ref" in t:
        name = t["ref"]
        decl = TYPES[name]
        if "object" not in decl:  # an alias: its type
            validate(value, decl, path, problems)
            return
        t = _interface(name)
    if not isinstance(value, dict):
        problems.append(f"{path}: {value!r:.60} is not an object")
        return
    fields, index = t["object"], t.get("index")
    for key, item in value.items():
        spec = fields.get(key)
        if spec is None:
            if index is not None:
                validate(item, index, f"{path}.{key}", problems)
            elif key not in NEWER_THAN_SCHEMA.get(path.split("[")[0], set()):
                problems.append(f"{path}.{key}: not in the schema")
            continue
        validate(item, spec["type"], f"{path}.{key}", problems)
    for key, spec in fields.items():
        if not spec["optional"] and key not in value:
            problems.append(f"{path}.{key}: missing")


def _check(obj: dict[str, Any], label: str, problems: list[str]) -> None:
    slot = SCHEMA["objects"].get(obj.get("object", ""))
    assert slot is not None, f"{label}: no schema for object {obj.get('object')!r}"
    name = slot["deleted"] if obj.get("deleted") else slot["object"]
    assert name is not None, f"{label}: no schema for deleted {obj.get('object')}"
    validate(obj, {"ref": name}, label, problems)


def _get(emu: StripeEmulator, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    query = urlencode({k: v for k, v in (params or {}).items() if k != "expand"}, doseq=True)
    expand = "&".join(urlencode({"expand[]": e}) for e in (params or {}).get("expand", []))
    sep = "?" if query or expand else ""
    status, _, body = raw(emu, "GET", path + sep + "&".join(p for p in (query, expand) if p))
    assert status == 200, (path, body)
    return body


@pytest.fixture(scope="module")
def emu():
    # Data up to today, so that /v1/events holds a history; a connected account for `account` fields.
    with StripeEmulator(seed=3, customers=120, connected_accounts=1) as emulator:
        yield emulator


def test_the_schema_is_at_the_emulators_version():
    assert SCHEMA["source"]["api_version"] == DEFAULT_API_VERSION
    assert SCHEMA["unresolved"] == []


def test_lists_with_the_engines_expansions_conform(emu):
    problems: list[str] = []
    seen: set[str] = set()
    for listing in plan_listings(REGISTRY):
        root = listing.root
        if root.list_path is None:
            continue
        params: dict[str, Any] = {"limit": 100, **dict(root.list_params), "expand": listing.expand}
        page = _get(emu, root.list_path, params)
        assert page["data"], f"{root.table}: nothing listed"
        first = page
        while True:  # every object of the data set, not a sample
            for obj in page["data"]:
                _check(obj, root.table, problems)
            if not page["has_more"]:
                break
            page = _get(emu, root.list_path, {**params, "starting_after": page["data"][-1]["id"]})
        page = first
        seen.add(root.table)
        for child in listing.per_parent:
            assert child.parent is not None
            parent_id = page["data"][0]["id"]
            path = child.parent.path.replace("{parent_id}", parent_id)
            params = {child.parent.parent_filter: parent_id} if child.parent.parent_filter else {}
            for obj in _get(emu, path, params)["data"]:
                _check(obj, child.table, problems)
            seen.add(child.table)
    assert problems == [], "\n".join(sorted(set(problems))[:40])
    assert seen >= {t for t, e in REGISTRY.items() if e.list_path} - {"accounts"}


def test_retrieves_with_the_engines_expansions_conform(emu):
    problems: list[str] = []
    for table, entry in REGISTRY.items():
        if entry.retrieve_path is None or entry.list_path is None or table == "accounts":
            continue
        first = _get(emu, entry.list_path, {"limit": 1, **dict(entry.list_params)})["data"][0]
        nested = [n.field for n in entry.nested_lists if n.field == "line_items"]
        obj = _get(emu, entry.retrieve_path.format(id=first["id"]),
                   {"expand": retrieve_expansions(entry, nested)})
        _check(obj, table, problems)
    account = _get(emu, "/v1/account")
    _check(account, "account", problems)
    for connected in _get(emu, "/v1/accounts")["data"]:
        _check(connected, "accounts", problems)
    assert problems == [], "\n".join(sorted(set(problems))[:40])


def test_deleted_objects_conform(emu):
    problems: list[str] = []
    fresh_product = raw(emu, "POST", "/v1/products", body="name=Short-lived")[2]  # no prices: deletable
    for path, name in (("/v1/customers", "customers"), ("/v1/products", "products"), ("/v1/coupons", "coupons"),
                       ("/v1/invoiceitems", "invoiceitems")):
        victim = fresh_product if name == "products" else emu.objects(name)[-1]
        status, _, body = raw(emu, "DELETE", f"{path}/{victim['id']}")
        assert status == 200, body
        _check(body, name, problems)
        _check(_get(emu, f"{path}/{victim['id']}"), name, problems)
    assert problems == [], "\n".join(problems)


def test_events_conform(emu):
    emu.clock.advance(1)
    emu.mutate_random(40)
    events = _get(emu, "/v1/events", {"limit": 100})["data"]
    assert len({e["type"] for e in events}) > 5
    problems: list[str] = []
    events += [e for e in emu.events() if e["id"] not in {x["id"] for x in events}]  # the whole history
    for ev in events:
        # `previous_attributes` holds whatever changed: any fields of the object, checked by no schema.
        envelope = {**ev, "data": {k: ({} if k == "object" else v) for k, v in ev["data"].items()
                                   if k != "previous_attributes"}}
        validate(envelope, {"ref": SCHEMA["objects"]["event"]["object"]}, "event", problems)
        obj = ev["data"]["object"]
        if obj.get("object") in SCHEMA["objects"]:
            _check(obj, f"event {ev['type']}", problems)
    assert problems == [], "\n".join(sorted(set(problems))[:40])


def test_the_validator_sees_the_differences_the_issue_found(emu):
    refund = _get(emu, "/v1/refunds", {"limit": 1})["data"][0]
    problems: list[str] = []
    _check({**refund, "livemode": False}, "refund", problems)
    assert problems == ["refund.livemode: not in the schema"]
    invoice = next(i for i in emu.objects("invoices")
                   if any(ln["parent"]["type"] == "invoice_item_details" for ln in i["lines"]["data"]))
    lines = [{**ln, "parent": {**ln["parent"], "invoice_item_details": {
        **(ln["parent"]["invoice_item_details"] or {}), "invoice_item": None}}} for ln in invoice["lines"]["data"]]
    problems = []
    _check({**invoice, "lines": {**invoice["lines"], "data": lines}}, "invoice", problems)
    assert any(p.endswith("invoice_item: None is not string") for p in problems)
