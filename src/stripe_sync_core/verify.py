"""Drift check and repair: compare the database with what Stripe returns now.

For each object type it finds ids Stripe lists that the database lacks (`missing`), rows whose object
Stripe no longer returns (`deleted`: confirmed by a retrieve), and rows whose stored object differs from
Stripe's current one (`changed`), comparing the whole object but the fields the registry calls
`volatile`. A difference confined to a type's `silent_fields` (which Stripe changes without an event
of the object's own: a charge's `disputed`, prices embedded in subscription items) is `stale`: no sync
fault, but still not the current state. Types are listed the way the backfill lists them (children
through their parents), so what is compared is what a backfill would have stored.

A row written after Stripe's answer (a webhook's later state) is not judged. `repair` stores Stripe's
state under the same no-lost-update rule as every write: a repaired object carries the time before it
was fetched, so a row a webhook writes meanwhile is kept.
Each type's outcome is kept in `stripe._verify_results` (its last verify), which the console shows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import InvalidInput
from .listing import Listing, complete_embedded, embedded_items, list_per_parent, plan_listings
from .registry import (
    REGISTRY,
    ObjectType,
    expand_only_lists,
    object_path,
    retrieve_expansions,
)
from .request_budget import in_lane
from .results import VerifyDifference, VerifyResult
from .stripe_api import ObjectNotFound

if TYPE_CHECKING:
    from .context import EngineContext
    from .database import Database

EXAMPLES = 20
"""Differences kept per type (with their fields) in a result; the counts are complete."""
MAX_PATH_DEPTH = 5
RETRIEVE_CONCURRENCY = 8
KINDS = ("missing", "deleted", "changed", "stale")
ACCOUNTS = "accounts"


class InvalidSample(InvalidInput, ValueError):
    """`sample` is not a positive number of objects."""


@dataclass
class _Seen:
    """Stripe's current state of one type's objects, as listed (or retrieved), each with when it was
    observed and its parent (for child tables with a parent column)."""

    objects: dict[str, dict] = field(default_factory=dict)
    parents: dict[str, str | None] = field(default_factory=dict)
    observed: dict[str, datetime] = field(default_factory=dict)

    def add(self, obj: dict, observed: datetime, parent: str | None = None) -> None:
        self.objects[obj["id"]] = obj
        self.parents[obj["id"]] = parent
        self.observed[obj["id"]] = observed


@in_lane("bulk")
async def verify(ctx: EngineContext, tables: Sequence[str], *, account_id: str | None = None,
                 since: int | None = None, sample: int | None = None, repair: bool = False) -> list[VerifyResult]:
    """Verify `tables` (registry tables) of `account_id` (default: the key's own account); see the module."""
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 1):
        raise InvalidSample(f"invalid sample {sample!r}: a number of objects per type, at least 1")
    account = account_id or await ctx.account.own_id()
    await ctx.account.own_id()  # the Stripe-Account header needs to know which account is ours
    header = ctx.account.header(account)
    wanted = list(tables)
    seen: dict[str, _Seen] = {table: _Seen() for table in wanted}
    parents_listed: dict[str, set[str]] = {}
    for listing in plan_listings(_with_nested_children([t for t in wanted if t != ACCOUNTS])):
        await _list(ctx, listing, header, since, sample, seen, parents_listed)
    if ACCOUNTS in seen:  # the account itself (`/v1/accounts` lists a platform's connected accounts)
        observed = ctx.now()
        path = "/v1/account" if header is None else object_path("/v1/accounts/{id}", id=account)
        seen[ACCOUNTS].add(await ctx.stripe.get(path), observed)
    results = []
    for table in wanted:
        entry = REGISTRY[table]
        result = await _verify_type(ctx, entry, account, header, seen[table], since, sample,
                                    parents_listed.get(entry.parent.parent_table if entry.parent else "", set()),
                                    repair)
        await _record(ctx, result)
        results.append(result)
    return results


def _with_nested_children(tables: list[str]) -> list[str]:
    """The tables plus the children nested in requested parents: a parent is then listed as a backfill
    of both stores it (truncated lists completed, `line_items` expanded)."""
    out = list(tables)
    for table in tables:
        for nested in REGISTRY[table].nested_lists:
            child = REGISTRY.get(nested.child_table or "")
            if child is not None and child.parent is not None and child.parent.parent_table == table:
                out.append(child.table)
    return out


async def _list(ctx: EngineContext, listing: Listing, header: str | None, since: int | None, sample: int | None,
                seen: dict[str, _Seen], parents_listed: dict[str, set[str]]) -> None:
    """List a root type (its newest `sample` only, when sampling) and the children it serves."""
    root = listing.root
    assert root.list_path is not None
    api = ctx.stripe
    cursor: str | None = None
    listed = 0
    while True:
        params = listing.page_params(since, None, cursor)
        if sample is not None:
            params["limit"] = min(params["limit"], sample - listed)
        observed = ctx.now()
        page = await api.get(root.list_path, params, account=header)
        roots = [o for o in page.get("data") or [] if isinstance(o, dict) and o.get("id")]
        listed += len(roots)
        for embedded in listing.embedded:
            await complete_embedded(api, roots, embedded, header)
            if embedded.child.table in seen:
                for parent in roots:
                    for item in embedded_items(parent, embedded.field):
                        seen[embedded.child.table].add(item, observed, parent["id"])
            if not embedded.nested:  # expanded only for us: the parent is stored as Stripe lists it
                roots = [{k: v for k, v in r.items() if k != embedded.field} for r in roots]
        for child in listing.per_parent:
            for parent_id, items in await list_per_parent(api, child, [r["id"] for r in roots], header):
                for item in items:
                    seen[child.table].add(item, observed, parent_id)
        if root.table in seen:
            for obj in roots:
                seen[root.table].add(obj, observed)
        parents_listed.setdefault(root.table, set()).update(r["id"] for r in roots)
        if not page.get("has_more") or not roots or (sample is not None and listed >= sample):
            return
        cursor = roots[-1]["id"]


async def _stored_rows(ctx: EngineContext, entry: ObjectType, account: str, seen: _Seen, since: int | None,
                       sample: int | None, parents: set[str]) -> dict[str, dict]:
    """The rows in scope: all of the account's, or (with `since` / `sample`) those Stripe listed, the
    children of listed parents, rows created since, and a random `sample` of the rest."""
    table = f"stripe.{entry.table}"
    select = f"SELECT id, _raw_data, _last_synced_at FROM {table} WHERE _account_id = %s"
    if entry.table == ACCOUNTS:  # the account's own row
        rows = await ctx.database.fetch_all(f"{select} AND id = %s", (account, account))
        return {r["id"]: r for r in rows}
    if since is None and sample is None:
        rows = await ctx.database.fetch_all(select, (account,))
        return {r["id"]: r for r in rows}
    rows = await ctx.database.fetch_all(f"{select} AND id = ANY(%s)", (account, list(seen.objects)))
    column = _parent_column(entry)
    if column is not None and parents:
        rows += await ctx.database.fetch_all(f'{select} AND "{column}" = ANY(%s)', (account, sorted(parents)))
    if sample is None and entry.parent is None and entry.listable_by_created:
        rows += await ctx.database.fetch_all(
            f"{select} AND (_raw_data->>'{entry.created_field}')::bigint >= %s", (account, since))
    if sample is not None:
        rows += await ctx.database.fetch_all(f"{select} AND NOT deleted ORDER BY random() LIMIT %s",
                                             (account, sample))
    return {r["id"]: r for r in rows}


def _parent_column(entry: ObjectType) -> str | None:
    """The column naming a child row's parent (`subscription` of a subscription item)."""
    if entry.parent is None:
        return None
    if entry.parent_column:
        return entry.parent_column
    parent = REGISTRY[entry.parent.parent_table]
    nested = next((n for n in parent.nested_lists if n.child_table == entry.table), None)
    return nested.parent_field if nested is not None and nested.parent_field else parent.stripe_object


async def _verify_type(ctx: EngineContext, entry: ObjectType, account: str, header: str | None, seen: _Seen,
                       since: int | None, sample: int | None, parents: set[str], repair: bool) -> VerifyResult:
    checked_at = ctx.now()
    stored = await _stored_rows(ctx, entry, account, seen, since, sample, parents)
    differences: list[VerifyDifference] = []
    gone: list[dict] = []
    gone_observed: list[datetime] = []
    for object_id, obj in seen.objects.items():
        row = stored.get(object_id)
        if row is None:
            differences.append(VerifyDifference(object_id, "missing", ()))
            continue
        if _newer(row, seen.observed[object_id]):  # written after Stripe's answer (a webhook): not judged
            continue
        difference = _compare(entry, object_id, _raw(row), obj)
        if difference is not None:
            differences.append(difference)
    unlisted = [r for object_id, r in stored.items() if object_id not in seen.objects and not _raw(r).get("deleted")]
    for row, current, observed in await _confirm(ctx, entry, header, unlisted):
        raw = _raw(row)
        if current is None:
            differences.append(VerifyDifference(row["id"], "deleted", ()))
            gone.append(raw)
            gone_observed.append(observed)
            continue
        seen.add(current, observed, None)
        if _newer(row, observed):
            continue
        difference = _compare(entry, row["id"], raw, current)
        if difference is not None:
            differences.append(difference)
    repaired = await _repair(ctx, entry, account, seen, differences, gone, gone_observed) if repair else 0
    counts = {kind: sum(1 for d in differences if d.kind == kind) for kind in KINDS}
    return VerifyResult(
        object=entry.table, account_id=account, checked=len(set(stored) | set(seen.objects)),
        stripe_objects=len(seen.objects), stored_rows=len(stored), missing=counts["missing"],
        deleted=counts["deleted"], changed=counts["changed"], stale=counts["stale"], repaired=repaired,
        repair=repair, sample=sample, since=since, checked_at=checked_at,
        differences=tuple(sorted(differences, key=lambda d: (KINDS.index(d.kind), d.id))[:EXAMPLES]))


def _newer(row: dict, observed: datetime) -> bool:
    """The row holds a state observed after Stripe's answer: comparing them would report the change that
    arrived meanwhile as drift, and a repair would not overwrite it anyway."""
    return row["_last_synced_at"] is not None and row["_last_synced_at"] > observed


def _raw(row: dict) -> dict:
    raw = row["_raw_data"]
    return raw if isinstance(raw, dict) else json.loads(raw)


async def _confirm(ctx: EngineContext, entry: ObjectType, header: str | None,
                   rows: list[dict]) -> list[tuple[dict, dict | None, datetime]]:
    """Stripe's current object of each row it did not list (None: no longer returned)."""
    if entry.retrieve_path is None:  # listed only through its parent, which was listed: gone
        return [(row, None, ctx.now()) for row in rows]
    expand = retrieve_expansions(entry, expand_only_lists(entry))
    gate = asyncio.Semaphore(RETRIEVE_CONCURRENCY)

    async def one(row: dict) -> tuple[dict, dict | None, datetime]:
        async with gate:
            observed = ctx.now()
            assert entry.retrieve_path is not None
            try:
                obj = await ctx.stripe.get(object_path(entry.retrieve_path, id=row["id"]),
                                           {"expand": expand} if expand else None, account=header)
            except ObjectNotFound:
                return row, None, observed
            if obj.get("deleted") or obj.get("id") != row["id"]:
                return row, None, observed
            return row, obj, observed

    return list(await asyncio.gather(*(one(row) for row in rows)))


async def _repair(ctx: EngineContext, entry: ObjectType, account: str, seen: _Seen,
                  differences: list[VerifyDifference], gone: list[dict], gone_observed: list[datetime]) -> int:
    """Store Stripe's state of every differing row, each as of the time before it was fetched."""
    written = 0
    by_time: dict[datetime, list[str]] = {}
    for difference in differences:
        if difference.kind != "deleted":
            by_time.setdefault(seen.observed[difference.id], []).append(difference.id)
    for observed, ids in by_time.items():
        result = await ctx.store.store(entry, [seen.objects[i] for i in ids], account, observed,
                                       parent_ids=[seen.parents[i] for i in ids])
        written += result.count
    for raw, observed in zip(gone, gone_observed, strict=True):
        written += len(await ctx.store.store_deleted(entry, [raw], account, observed))
    return written


# -- comparing ------------------------------------------------------------------------------------


def _compare(entry: ObjectType, object_id: str, stored: dict, current: dict) -> VerifyDifference | None:
    """The difference between a stored object and Stripe's, or None when they agree."""
    if stored.get("deleted") and not current.get("deleted"):
        return VerifyDifference(object_id, "changed", ("deleted",))
    left, right = _comparable(entry, stored, current)
    paths = sorted(set(_diff(left, right, "")))
    if not paths:
        return None
    silent = [f.path for f in entry.silent_fields]
    stale = all(any(p == s or p.startswith(s + ".") for s in silent) for p in paths)
    return VerifyDifference(object_id, "stale" if stale else "changed", tuple(paths))


def _comparable(entry: ObjectType, stored: dict, current: dict) -> tuple[dict, dict]:
    """Both objects without what may legitimately differ: volatile fields; the bookkeeping of embedded
    lists (`url`, `has_more`); items past a stored list's truncation; a list Stripe sends only when
    expanded that the stored copy never had."""
    left, right = dict(stored), dict(current)
    for path in entry.volatile:
        _drop(left, path)
        _drop(right, path)
    for nested in entry.nested_lists:
        name = nested.field
        if name not in left and name in right:
            right.pop(name)
            continue
        mine, theirs = left.get(name), right.get(name)
        if isinstance(mine, dict) and isinstance(theirs, dict):
            mine_data, theirs_data = list(mine.get("data") or []), list(theirs.get("data") or [])
            if mine.get("has_more"):
                theirs_data = theirs_data[:len(mine_data)]
            left[name], right[name] = {"data": mine_data}, {"data": theirs_data}
    return left, right


def _drop(obj: Any, path: str) -> None:
    head, _, rest = path.partition(".")
    if isinstance(obj, list):
        for item in obj:
            _drop(item, path)
    elif isinstance(obj, dict) and head in obj:
        if rest:
            obj[head] = _copy_container(obj[head])
            _drop(obj[head], rest)
        else:
            obj.pop(head)


def _copy_container(value: Any) -> Any:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return [_copy_container(v) for v in value]
    return value


def _diff(left: Any, right: Any, path: str) -> list[str]:
    """Dotted paths where two JSON values differ (list items share their list's path)."""
    if isinstance(left, dict) and isinstance(right, dict):
        if len(path.split(".")) >= MAX_PATH_DEPTH:
            return [] if left == right else [path]
        out = []
        for key in left.keys() | right.keys():
            if left.get(key, _ABSENT) != right.get(key, _ABSENT):
                out += _diff(left.get(key, _ABSENT), right.get(key, _ABSENT), f"{path}.{key}" if path else key)
        return out
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        return [p for a, b in zip(left, right, strict=True) for p in _diff(a, b, path)]
    return [] if left == right else [path]


_ABSENT = object()


# -- keeping the outcome --------------------------------------------------------------------------


async def _record(ctx: EngineContext, result: VerifyResult) -> None:
    """Keep a type's outcome as its last verify (one row per account and type)."""
    await ctx.database.execute(
        "INSERT INTO stripe._verify_results (account_id, object, checked_at, checked, missing, deleted, "
        "changed, stale, repaired, repair, sample, since, differences) "
        "VALUES (%(account_id)s, %(object)s, %(checked_at)s, %(checked)s, %(missing)s, %(deleted)s, %(changed)s, "
        "%(stale)s, %(repaired)s, %(repair)s, %(sample)s, %(since)s, %(differences)s::jsonb) "
        "ON CONFLICT (account_id, object) DO UPDATE SET checked_at = EXCLUDED.checked_at, "
        "checked = EXCLUDED.checked, missing = EXCLUDED.missing, deleted = EXCLUDED.deleted, "
        "changed = EXCLUDED.changed, stale = EXCLUDED.stale, repaired = EXCLUDED.repaired, "
        "repair = EXCLUDED.repair, sample = EXCLUDED.sample, since = EXCLUDED.since, "
        "differences = EXCLUDED.differences",
        {**{k: getattr(result, k) for k in ("account_id", "object", "checked_at", "checked", "missing", "deleted",
                                            "changed", "stale", "repaired", "repair", "sample", "since")},
         "differences": json.dumps([d.to_dict() for d in result.differences])})


async def last_results(database: Database, account_id: str | None = None) -> list[dict]:
    """The last verify of each type (of one account, or every account), by type: what the console shows."""
    where = "WHERE account_id = %s " if account_id else ""
    return await database.fetch_all(
        "SELECT account_id, object, checked_at, checked, missing, deleted, changed, stale, repaired, repair, "
        f"sample, since FROM stripe._verify_results {where}ORDER BY object, account_id",
        (account_id,) if account_id else None)
