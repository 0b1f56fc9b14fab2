"""How a backfill lists one object type, and how it reaches the types Stripe lists only under a parent.

A *listing* is one root list call (`/v1/customers`) plus the children it serves: children the list
embeds by itself (`items` of a subscription), children it embeds when asked to expand them
(`expand[]=data.tax_ids` on customers, `expand[]=data.line_items` on checkout sessions), and, where
Stripe offers no expansion, children listed per parent (payment methods, active entitlements).
Embedded lists are truncated by Stripe; a truncated one is completed from the position it stopped at.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from .registry import REGISTRY, ObjectType, checked_expansions, includable_expansions, object_path
from .stripe_api import ObjectNotFound, StripeApi

PAGE_SIZE = 100
PER_PARENT_CONCURRENCY = 16


@dataclass(frozen=True)
class EmbeddedChildren:
    """Children that arrive inside their parent's list entry, under `field`."""

    child: ObjectType
    field: str
    path: str
    """The children's full list endpoint, `{id}` standing for the parent's id (may carry a query)."""
    nested: bool
    """A nested list of the parent in the registry: the store writes these children with the parent."""
    expanded: bool
    """Present only because the list call asks `expand[]=data.<field>`."""


@dataclass(frozen=True)
class Listing:
    """One root list call and the child types it serves."""

    root: ObjectType
    embedded: tuple[EmbeddedChildren, ...] = ()
    per_parent: tuple[ObjectType, ...] = ()

    @property
    def expand(self) -> list[str]:
        """The root's includable fields, the children embedded only when expanded and their includable fields."""
        out = includable_expansions(self.root, "data.")
        for e in self.embedded:
            if e.expanded:
                out += [f"data.{e.field}", *includable_expansions(e.child, f"data.{e.field}.data.")]
        return checked_expansions(out)

    @property
    def child_tables(self) -> list[str]:
        return [e.child.table for e in self.embedded] + [c.table for c in self.per_parent]

    def page_params(self, gte: int | None, lte: int | None, starting_after: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": PAGE_SIZE, **dict(self.root.list_params)}
        if self.root.listable_by_created and (gte is not None or lte is not None):
            params["created"] = {k: v for k, v in (("gte", gte), ("lte", lte)) if v is not None}
        if self.expand:
            params["expand"] = self.expand
        if starting_after:
            params["starting_after"] = starting_after
        return params


def plan_listings(tables: Iterable[str]) -> list[Listing]:
    """The root listings that together fetch every requested table, in registry order."""
    wanted = set(tables)
    roots: dict[str, dict[str, list]] = {}
    for table in REGISTRY:
        if table not in wanted:
            continue
        entry = REGISTRY[table]
        if entry.parent is None:
            roots.setdefault(table, {"embedded": [], "per_parent": []})
            continue
        parent = REGISTRY[entry.parent.parent_table]
        slot = roots.setdefault(parent.table, {"embedded": [], "per_parent": []})
        nested = next((n for n in parent.nested_lists if n.child_table == table), None)
        expand_field = entry.parent.expand_on_parent
        if nested is not None:
            slot["embedded"].append(EmbeddedChildren(entry, nested.field, nested.path, True,
                                                     expanded=expand_field == nested.field))
        elif expand_field:
            path = entry.parent.path.replace("{parent_id}", "{id}")
            slot["embedded"].append(EmbeddedChildren(entry, expand_field, path, False, expanded=True))
        else:
            slot["per_parent"].append(entry)
    return [Listing(REGISTRY[t], tuple(roots[t]["embedded"]), tuple(roots[t]["per_parent"]))
            for t in REGISTRY if t in roots]


async def children_that_cannot_exist(api: StripeApi, listings: Iterable[Listing], account: str | None) -> list[str]:
    """Per-parent child tables whose source is empty (`ParentListing.only_with`): one request each
    instead of one per parent (an account without entitlement features has no active entitlements,
    and a backfill of its customers then asks nothing of that endpoint)."""
    empty: list[str] = []
    for listing in listings:
        for child in listing.per_parent:
            source = child.parent.only_with if child.parent is not None else None
            if source and not (await api.get(source, {"limit": 1}, account=account)).get("data"):
                empty.append(child.table)
    return empty


def without_children(listing: Listing, tables: Iterable[str]) -> Listing:
    """`listing` without the per-parent children of `tables` (found not to exist)."""
    skipped = set(tables)
    return replace(listing, per_parent=tuple(c for c in listing.per_parent if c.table not in skipped))


def split_path(path: str) -> tuple[str, dict[str, str]]:
    """`/v1/x?a=1` -> (`/v1/x`, {"a": "1"})."""
    path, _, query = path.partition("?")
    return path, dict(part.split("=", 1) for part in query.split("&")) if query else {}


async def list_all(api: StripeApi, path: str, params: dict[str, Any] | None = None, *,
                   account: str | None = None, starting_after: str | None = None) -> list[dict]:
    items: list[dict] = []
    async for page in api.iterate(path, {"limit": PAGE_SIZE, **(params or {})}, account=account,
                                  starting_after=starting_after):
        items.extend(page.get("data") or [])
    return items


async def complete_embedded(api: StripeApi, parents: Sequence[dict], embedded: EmbeddedChildren,
                            account: str | None) -> None:
    """Replace each truncated embedded list (`has_more`) by the complete one, in place."""
    async def complete(parent: dict) -> None:
        listed = parent.get(embedded.field)
        if not isinstance(listed, dict) or not listed.get("has_more") or not listed.get("data"):
            return
        path, params = child_list_call(embedded.child, object_path(embedded.path, id=parent["id"]))
        try:
            rest = await list_all(api, path, params, account=account, starting_after=listed["data"][-1]["id"])
        except ObjectNotFound:  # the parent was deleted since it was listed: keep what came with it
            return
        parent[embedded.field] = {**listed, "data": [*listed["data"], *rest], "has_more": False}

    await _bounded(partial(complete, p) for p in parents)


def child_list_call(child: ObjectType | None, path: str) -> tuple[str, dict[str, Any]]:
    """A list endpoint of children (with its query) split into path and params, asking for the
    children's includable fields."""
    path, params = split_path(path)
    expand = includable_expansions(child, "data.") if child is not None else []
    return path, {**params, "expand": expand} if expand else params


def embedded_items(parent: dict, field: str) -> list[dict]:
    listed = parent.get(field)
    if not isinstance(listed, dict):
        return []
    return [item for item in listed.get("data") or [] if isinstance(item, dict) and item.get("id")]


@dataclass(frozen=True)
class ListedChildren:
    """The children of one type that a page of a listing brings, each with its parent's id."""

    child: ObjectType
    items: list[tuple[dict, str]]
    stored_with_parent: bool
    """Embedded in a nested list of the parent (`EmbeddedChildren.nested`): storing the parent stores them."""


async def complete_page(api: StripeApi, listing: Listing, roots: list[dict],
                        account: str | None) -> tuple[list[dict], list[ListedChildren]]:
    """Complete the children a page of `listing` serves: its truncated embedded lists (in place), then the
    lists per parent, each child type side by side (each has an endpoint and a Stripe rate limit of its
    own). Returns the roots as Stripe lists them (without the fields expanded only for us) and the children,
    in the listing's order. The backfill stores what this returns; verify compares it with what is stored."""
    children: list[ListedChildren] = []
    stored_roots = roots
    for embedded in listing.embedded:
        await complete_embedded(api, roots, embedded, account)
        items = [(item, parent["id"]) for parent in roots for item in embedded_items(parent, embedded.field)]
        children.append(ListedChildren(embedded.child, items, stored_with_parent=embedded.nested))
        if not embedded.nested:  # expanded only for us: the parent is stored as Stripe lists it
            stored_roots = [{k: v for k, v in r.items() if k != embedded.field} for r in stored_roots]
    parent_ids = [r["id"] for r in roots]
    listed = await gather_or_cancel([list_per_parent(api, child, parent_ids, account)
                                     for child in listing.per_parent])
    for child, lists in zip(listing.per_parent, listed, strict=True):
        children.append(ListedChildren(child, [(item, parent_id) for parent_id, items in lists for item in items],
                                       stored_with_parent=False))
    return stored_roots, children


async def list_per_parent(api: StripeApi, child: ObjectType, parent_ids: Sequence[str],
                          account: str | None) -> list[tuple[str, list[dict]]]:
    """Every child of each parent, one list per parent (Stripe has no expansion for these)."""
    assert child.parent is not None
    listing = child.parent

    async def one(parent_id: str) -> tuple[str, list[dict]]:
        path, params = child_list_call(child, object_path(listing.path, parent_id=parent_id))
        if listing.parent_filter:
            params[listing.parent_filter] = parent_id
        try:
            return parent_id, await list_all(api, path, params, account=account)
        except ObjectNotFound:  # the parent was deleted since it was listed: no children to store
            return parent_id, []

    return await _bounded(partial(one, pid) for pid in parent_ids)


async def _bounded(calls: Iterable[Callable[[], Awaitable[Any]]]) -> list:
    """Run calls concurrently, at most PER_PARENT_CONCURRENCY at once (the request budget paces them)."""
    gate = asyncio.Semaphore(PER_PARENT_CONCURRENCY)

    async def gated(call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await call()

    return await gather_or_cancel([gated(call) for call in calls])


async def gather_or_cancel(coroutines: Sequence[Any]) -> list:
    """Await coroutines together; the first failure cancels the others (and waits for them) and is raised."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
