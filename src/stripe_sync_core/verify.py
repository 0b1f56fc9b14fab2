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

Memory does not grow with the objects: each page Stripe lists is compared (and repaired) as it arrives,
while the next page is fetched, and what stays is each type's listed ids, its counts and its first
`EXAMPLES` differences. The stored rows Stripe did not list are then found in one streamed pass over
the table and retrieved to confirm.
"""

from __future__ import annotations

import asyncio
import heapq
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import InvalidInput
from .listing import Listing, complete_page, plan_listings
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


UNLISTED_PAGE = 1000
"""Stored rows read at a time when looking for those Stripe did not list."""


def _order(difference: VerifyDifference) -> tuple[int, str]:
    return KINDS.index(difference.kind), difference.id


@dataclass
class _Tally:
    """One type's verify as it goes. Each page Stripe lists is compared (and repaired) as it arrives, so
    what is kept is the ids listed (to find the stored rows Stripe did not list), the counts and the first
    differences: memory grows with the ids, not with the objects."""

    entry: ObjectType
    listed: set[str] = field(default_factory=set)
    stripe_objects: int = 0
    stored_rows: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    examples: list[VerifyDifference] = field(default_factory=list)
    repaired: int = 0

    def found(self, difference: VerifyDifference) -> None:
        self.counts[difference.kind] += 1
        self.examples.append(difference)
        if len(self.examples) >= 4 * EXAMPLES:
            self.examples = heapq.nsmallest(EXAMPLES, self.examples, key=_order)

    def result(self, account: str, checked_at: datetime, *, repair: bool, sample: int | None,
               since: int | None) -> VerifyResult:
        counts = self.counts
        return VerifyResult(
            object=self.entry.table, account_id=account, checked=self.stored_rows + counts["missing"],
            stripe_objects=self.stripe_objects, stored_rows=self.stored_rows, missing=counts["missing"],
            deleted=counts["deleted"], changed=counts["changed"], stale=counts["stale"], repaired=self.repaired,
            repair=repair, sample=sample, since=since, checked_at=checked_at,
            differences=tuple(heapq.nsmallest(EXAMPLES, self.examples, key=_order)))


@in_lane("bulk")
async def verify(ctx: EngineContext, tables: Sequence[str], *, account_id: str | None = None,
                 since: int | None = None, sample: int | None = None, repair: bool = False) -> list[VerifyResult]:
    """Verify `tables` (registry tables) of `account_id` (default: the key's own account); see the module."""
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 1):
        raise InvalidSample(f"invalid sample {sample!r}: a number of objects per type, at least 1")
    account = account_id or await ctx.account.own_id()
    await ctx.account.own_id()  # the Stripe-Account header needs to know which account is ours
    header = ctx.account.header(account)
    wanted = list(dict.fromkeys(tables))
    checked_at = ctx.now()
    tallies = {table: _Tally(REGISTRY[table]) for table in wanted}
    # The parents listed, whose stored children are in scope (only `since` and `sample` narrow the scope).
    parents_listed: dict[str, set[str]] | None = {} if since is not None or sample is not None else None
    for listing in plan_listings(_with_nested_children([t for t in wanted if t != ACCOUNTS])):
        await _list(ctx, listing, header, account, since, sample, tallies, parents_listed, repair)
    if ACCOUNTS in tallies:  # the account itself (`/v1/accounts` lists a platform's connected accounts)
        observed = ctx.now()
        path = "/v1/account" if header is None else object_path("/v1/accounts/{id}", id=account)
        await _check(ctx, tallies[ACCOUNTS], account, [(await ctx.stripe.get(path), None)], observed, repair)
    results = []
    for table in wanted:
        tally = tallies[table]
        entry = tally.entry
        parents = (parents_listed or {}).get(entry.parent.parent_table if entry.parent else "", set())
        async for rows in _unlisted_rows(ctx, tally, account, since, sample, parents):
            await _check_unlisted(ctx, tally, account, header, rows, repair)
        result = tally.result(account, checked_at, repair=repair, sample=sample, since=since)
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


async def _list(ctx: EngineContext, listing: Listing, header: str | None, account: str, since: int | None,
                sample: int | None, tallies: dict[str, _Tally], parents_listed: dict[str, set[str]] | None,
                repair: bool) -> None:
    """List a root type (its newest `sample` only, when sampling) and the children it serves, comparing
    each page with the database as it arrives, while the next page is fetched."""
    root = listing.root
    assert root.list_path is not None
    list_path = root.list_path
    api = ctx.stripe

    async def fetch(cursor: str | None, listed: int) -> tuple[datetime, dict]:
        params = listing.page_params(since, None, cursor)
        if sample is not None:
            params["limit"] = min(params["limit"], sample - listed)
        observed = ctx.now()
        return observed, await api.get(list_path, params, account=header)

    listed = 0
    next_page: asyncio.Future[tuple[datetime, dict]] | None = asyncio.ensure_future(fetch(None, listed))
    try:
        while next_page is not None:
            observed, page = await next_page
            next_page = None
            roots = [o for o in page.get("data") or [] if isinstance(o, dict) and o.get("id")]
            listed += len(roots)
            if page.get("has_more") and roots and (sample is None or listed < sample):
                next_page = asyncio.ensure_future(fetch(roots[-1]["id"], listed))
            roots, children = await complete_page(api, listing, roots, header)
            current: dict[str, list[tuple[dict, str | None]]] = {
                of_type.child.table: list(of_type.items) for of_type in children if of_type.child.table in tallies}
            if root.table in tallies:
                current[root.table] = [(obj, None) for obj in roots]
            for table, objects in current.items():
                await _check(ctx, tallies[table], account, objects, observed, repair)
            if parents_listed is not None:
                parents_listed.setdefault(root.table, set()).update(r["id"] for r in roots)
    finally:
        if next_page is not None:  # a failure on this page: the next one is not wanted
            next_page.cancel()
            await asyncio.gather(next_page, return_exceptions=True)


async def _check(ctx: EngineContext, tally: _Tally, account: str, objects: list[tuple[dict, str | None]],
                 observed: datetime, repair: bool) -> None:
    """Compare objects Stripe returned at `observed` (each with its parent) with their stored rows, and
    with `repair` store Stripe's state of those that differ. An object already compared is skipped."""
    fresh: dict[str, tuple[dict, str | None]] = {}
    for obj, parent in objects:
        if obj["id"] not in tally.listed and obj["id"] not in fresh:
            fresh[obj["id"]] = (obj, parent)
    if not fresh:
        return
    tally.listed.update(fresh)
    tally.stripe_objects += len(fresh)
    rows = await _rows_by_id(ctx, tally.entry, account, list(fresh))
    tally.stored_rows += len(rows)
    differing = []
    for object_id, (obj, parent) in fresh.items():
        row = rows.get(object_id)
        if row is None:
            difference: VerifyDifference | None = VerifyDifference(object_id, "missing", ())
        elif _newer(row, observed):  # written after Stripe's answer (a webhook): not judged
            continue
        else:
            difference = _compare(tally.entry, object_id, _raw(row), obj)
        if difference is not None:
            tally.found(difference)
            differing.append((obj, parent))
    if repair and differing:
        stored = await ctx.store.store(tally.entry, [obj for obj, _ in differing], account, observed,
                                       parent_ids=[parent for _, parent in differing])
        tally.repaired += stored.count


async def _rows_by_id(ctx: EngineContext, entry: ObjectType, account: str, ids: list[str]) -> dict[str, dict]:
    """The account's stored rows of `ids`. IS NOT DISTINCT FROM: no index serves it, so the primary key's
    alone finds the rows (with stale statistics the planner ANDed in the account's index, which reads
    every row of the account for each page)."""
    rows = await ctx.database.fetch_all(
        f"SELECT id, _raw_data, _last_synced_at FROM stripe.{entry.table} "
        "WHERE id = ANY(%s) AND _account_id IS NOT DISTINCT FROM %s", (ids, account))
    return {r["id"]: r for r in rows}


async def _unlisted_rows(ctx: EngineContext, tally: _Tally, account: str, since: int | None, sample: int | None,
                         parents: set[str]) -> AsyncIterator[list[dict]]:
    """The stored rows in scope that Stripe did not list and that are not flagged deleted, a batch at a
    time, each once; every row in scope that Stripe did not list counts in `stored_rows`. In scope: all
    of the account's rows, or (with `since` / `sample`) the children of listed parents, rows created
    since, and a random `sample` of the rest."""
    entry = tally.entry
    table = f"stripe.{entry.table}"
    if entry.table != ACCOUNTS and since is None and sample is None:  # every row of the account
        unlisted = await _unlisted_ids(ctx, tally, account)
        for start in range(0, len(unlisted), UNLISTED_PAGE):
            yield list((await _rows_by_id(ctx, entry, account, unlisted[start:start + UNLISTED_PAGE])).values())
        return
    select = f"SELECT id, _raw_data, _last_synced_at FROM {table} WHERE _account_id = %s"
    queries: list[tuple[str, tuple]] = []
    if entry.table == ACCOUNTS:  # the account's own row
        queries.append((f"{select} AND id = %s", (account, account)))
    else:
        column = _parent_column(entry)
        if column is not None and parents:
            queries.append((f'{select} AND "{column}" = ANY(%s)', (account, sorted(parents))))
        if sample is None and entry.parent is None and entry.listable_by_created:
            queries.append((f"{select} AND (_raw_data->>'{entry.created_field}')::bigint >= %s", (account, since)))
        if sample is not None:
            queries.append((f"{select} AND NOT deleted ORDER BY random() LIMIT %s", (account, sample)))
    taken: set[str] = set()
    for sql, params in queries:
        rows = [r for r in await ctx.database.fetch_all(sql, params)
                if r["id"] not in tally.listed and r["id"] not in taken]
        taken.update(r["id"] for r in rows)
        tally.stored_rows += len(rows)
        alive = [r for r in rows if not _raw(r).get("deleted")]
        if alive:
            yield alive


async def _unlisted_ids(ctx: EngineContext, tally: _Tally, account: str) -> list[str]:
    """The ids of the account's rows that Stripe did not list and that are not flagged deleted, in one
    pass over the table streamed (a page of rows at a time); counts every unlisted row in `stored_rows`."""
    unlisted: list[str] = []
    async with ctx.database.pool.connection() as conn:
        rows = conn.cursor().stream(f"SELECT id, deleted FROM stripe.{tally.entry.table} WHERE _account_id = %s",
                                    (account,), size=UNLISTED_PAGE)
        async for object_id, deleted in rows:
            if object_id not in tally.listed:
                tally.stored_rows += 1
                if not deleted:
                    unlisted.append(object_id)
    return unlisted


async def _check_unlisted(ctx: EngineContext, tally: _Tally, account: str, header: str | None, rows: list[dict],
                          repair: bool) -> None:
    """Rows Stripe did not list: retrieve each; gone is `deleted`, otherwise compared as listed."""
    entry = tally.entry
    gone: list[tuple[dict, datetime]] = []
    differing: dict[datetime, list[dict]] = {}
    for row, current, observed in await _confirm(ctx, entry, header, rows):
        if current is None:
            tally.found(VerifyDifference(row["id"], "deleted", ()))
            gone.append((_raw(row), observed))
            continue
        tally.stripe_objects += 1
        if _newer(row, observed):
            continue
        difference = _compare(entry, row["id"], _raw(row), current)
        if difference is not None:
            tally.found(difference)
            differing.setdefault(observed, []).append(current)
    if not repair:
        return
    for observed, objects in differing.items():
        tally.repaired += (await ctx.store.store(entry, objects, account, observed,
                                                 parent_ids=[None] * len(objects))).count
    for raw, observed in gone:
        tally.repaired += len(await ctx.store.store_deleted(entry, [raw], account, observed))


def _parent_column(entry: ObjectType) -> str | None:
    """The column naming a child row's parent (`subscription` of a subscription item)."""
    if entry.parent is None:
        return None
    if entry.parent_column:
        return entry.parent_column
    parent = REGISTRY[entry.parent.parent_table]
    nested = next((n for n in parent.nested_lists if n.child_table == entry.table), None)
    return nested.parent_field if nested is not None and nested.parent_field else parent.stripe_object


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
