"""Compact per-type storage and the list query engine.

A table holds *generated* rows as parallel ``array`` columns (``created`` ascending, relations as
row numbers into other tables) and renders them on demand; rows created or changed through the
API live in ``rows`` as plain dicts and shadow the generated ones. A row is identified by its
sequence number ``seq`` (generated rows: 0..n_gen-1, new rows after), and lists are ordered by
``(created, seq)`` descending, which equals ``(created, id)`` because ids encode ``seq`` in an
order-preserving way.
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .ids import IdCodec
from .resources import ResourceType

Key = tuple[int, int]
_INF = 1 << 62


class Matcher:
    """A compiled list filter: ``gen(i)`` for generated rows, ``dyn(seq, obj)`` for dict rows, and
    optionally ``candidates`` (ascending generated row numbers) when an index narrows the scan."""

    __slots__ = ("gen", "dyn", "candidates")

    def __init__(
        self,
        gen: Callable[[int], bool] | None,
        dyn: Callable[[int, dict[str, Any]], bool],
        candidates: Sequence[int] | None = None,
    ) -> None:
        # gen=None means "no generated row can match".
        self.gen = gen
        self.dyn = dyn
        self.candidates = candidates


class Table:
    """One resource type in one account."""

    def __init__(
        self,
        rt: ResourceType,
        codec: IdCodec,
        created: array | None = None,
        cols: dict[str, array] | None = None,
    ) -> None:
        self.rt = rt
        self.name = rt.name
        self.codec = codec
        self.ns = codec.ns
        self.created: array = created if created is not None else array("q")
        self.n_gen = len(self.created)
        self.cols: dict[str, array] = cols or {}
        # Child tables: offsets[child] has n_gen+1 entries; generated children of row i are
        # child rows offsets[i]..offsets[i+1]-1.
        self.offsets: dict[str, array] = {}
        self.rows: dict[int, dict[str, Any]] = {}
        self.keys: list[Key] = []  # sorted keys of dict rows
        self.dyn_created: dict[int, int] = {}
        self.deleted: set[int] = set()
        self.deleted_stub: dict[int, str] = {}  # seq -> id, for deleted rows with custom ids
        self.custom_ids: dict[str, int] = {}
        self.custom_id_of: dict[int, str] = {}
        self.next_seq = self.n_gen
        self.children: dict[int, list[int]] = {}  # parent seq -> dynamic child seqs (insertion order)
        self.parent_of: dict[int, int] = {}  # dynamic child seq -> parent seq
        self._index: dict[str, dict[int, array]] = {}
        self.version = 0
        self.cache: dict[tuple[int, bool], dict[str, Any]] | None = None

    # ---- identity ------------------------------------------------------------------------
    def id_of(self, seq: int) -> str:
        custom = self.custom_id_of.get(seq)
        return custom if custom is not None else self.codec.encode(seq)

    def seq_of(self, ident: str) -> int | None:
        """Row number for an id, live or deleted; None when the id never existed here."""
        seq = self.custom_ids.get(ident)
        if seq is not None:
            return seq
        seq = self.codec.decode(ident)
        if seq is None or seq >= self.next_seq or seq in self.custom_id_of:
            return None
        return seq

    def exists(self, seq: int) -> bool:
        return seq not in self.deleted and (seq in self.rows or seq < self.n_gen)

    def created_of(self, seq: int) -> int:
        if seq < self.n_gen:
            return self.created[seq]
        return self.dyn_created[seq]

    def key(self, seq: int) -> Key:
        return (self.created_of(seq), seq)

    def count(self) -> int:
        dyn_live = sum(1 for s in self.rows if s >= self.n_gen)
        gen_deleted = sum(1 for s in self.deleted if s < self.n_gen)
        return self.n_gen - gen_deleted + dyn_live

    def live_seqs(self) -> Iterator[int]:
        """All live rows, newest first."""
        yield from (k[1] for k in iterate(self, [], None, None, None, True))

    # ---- writes ----------------------------------------------------------------------------
    def new_seq(self, created: int, custom_id: str | None = None) -> int:
        seq = self.next_seq
        self.next_seq += 1
        self.dyn_created[seq] = created
        if custom_id is not None:
            self.custom_ids[custom_id] = seq
            self.custom_id_of[seq] = custom_id
        return seq

    def put(self, seq: int, obj: dict[str, Any]) -> None:
        """Store the (dehydrated) dict form of a row, shadowing any generated version."""
        if seq not in self.rows:
            insort(self.keys, self.key(seq))
        self.rows[seq] = obj
        self.deleted.discard(seq)
        self.version += 1
        if self.cache is not None:
            self.cache.clear()

    def delete(self, seq: int) -> None:
        if seq in self.rows:
            del self.rows[seq]
            k = self.key(seq)
            pos = bisect_left(self.keys, k)
            if pos < len(self.keys) and self.keys[pos] == k:
                del self.keys[pos]
        self.deleted.add(seq)
        self.version += 1
        if self.cache is not None:
            self.cache.clear()

    def add_child(self, parent_seq: int, child_seq: int) -> None:
        self.children.setdefault(parent_seq, []).append(child_seq)
        self.parent_of[child_seq] = parent_seq

    # ---- indexes ---------------------------------------------------------------------------
    def index(self, col: str) -> dict[int, array]:
        """Inverted index of a relation column: target row -> ascending generated rows.
        Built on first use; generated columns never change, so it never goes stale."""
        idx = self._index.get(col)
        if idx is None:
            tmp: dict[int, list[int]] = {}
            for i, v in enumerate(self.cols[col]):
                if v >= 0:
                    lst = tmp.get(v)
                    if lst is None:
                        tmp[v] = [i]
                    else:
                        lst.append(i)
            idx = {k: array("i", v) for k, v in tmp.items()}
            self._index[col] = idx
        return idx

    def parent_of_generated(self, parent: Table, child_seq: int) -> int:
        """Parent row of a generated child row (binary search on the parent's offsets)."""
        offs = parent.offsets[self.name]
        return bisect_right(offs, child_seq) - 1

    def child_seqs(self, parent: Table, parent_seq: int) -> list[int]:
        """Live children of a parent row, in creation order."""
        out: list[int] = []
        if parent_seq < parent.n_gen and self.name in parent.offsets:
            offs = parent.offsets[self.name]
            out.extend(range(offs[parent_seq], offs[parent_seq + 1]))
        out.extend(self.children.get(parent_seq, ()))
        deleted = self.deleted
        return [s for s in out if s not in deleted]


# ---- query engine ----------------------------------------------------------------------------


def _gen_range(table: Table, lo_c: int, hi_c: int, cursor: Key | None, desc: bool) -> tuple[int, int]:
    created = table.created
    lo = bisect_left(created, lo_c)
    hi = bisect_right(created, hi_c)
    if cursor is not None:
        c, s = cursor
        bl = bisect_left(created, c)
        br = bisect_right(created, c)
        if desc:
            hi = min(hi, max(bl, min(s, br)))
        else:
            lo = max(lo, max(bl, min(s + 1, br)))
    return lo, hi


def _iter_gen(table: Table, lo: int, hi: int, matchers: list[Matcher], desc: bool) -> Iterator[Key]:
    if lo >= hi:
        return
    created = table.created
    rows = table.rows
    deleted = table.deleted
    gens = [m.gen for m in matchers]
    if any(g is None for g in gens):
        return
    cands: Sequence[int] | None = None
    for m in matchers:
        if m.candidates is not None:
            if cands is None or len(m.candidates) < len(cands):
                cands = m.candidates
    if cands is None:
        seq_iter: Iterator[int] = iter(range(hi - 1, lo - 1, -1) if desc else range(lo, hi))
    else:
        a = bisect_left(cands, lo)
        b = bisect_left(cands, hi)
        seq_iter = (cands[k] for k in (range(b - 1, a - 1, -1) if desc else range(a, b)))
    skip = bool(rows) or bool(deleted)
    if not gens:
        if not skip:
            for i in seq_iter:
                yield (created[i], i)
        else:
            for i in seq_iter:
                if i not in rows and i not in deleted:
                    yield (created[i], i)
        return
    for i in seq_iter:
        if skip and (i in rows or i in deleted):
            continue
        ok = True
        for g in gens:
            if not g(i):  # type: ignore[misc]
                ok = False
                break
        if ok:
            yield (created[i], i)


def _iter_dyn(table: Table, lo_c: int, hi_c: int, cursor: Key | None, matchers: list[Matcher], desc: bool) -> Iterator[Key]:
    keys = table.keys
    if not keys:
        return
    a = bisect_left(keys, (lo_c, -1))
    b = bisect_right(keys, (hi_c, _INF))
    if cursor is not None:
        if desc:
            b = min(b, bisect_left(keys, cursor))
        else:
            a = max(a, bisect_right(keys, cursor))
    if a >= b:
        return
    # Pages are built synchronously under the core lock, so ``keys`` cannot shift meanwhile.
    rows = table.rows
    for idx in range(b - 1, a - 1, -1) if desc else range(a, b):
        k = keys[idx]
        obj = rows.get(k[1])
        if obj is None:
            continue
        if all(m.dyn(k[1], obj) for m in matchers):
            yield k


def iterate(
    table: Table,
    matchers: list[Matcher],
    created_lo: int | None,
    created_hi: int | None,
    cursor: Key | None,
    desc: bool,
) -> Iterator[Key]:
    """All matching live rows in list order (desc) or reverse order, strictly past ``cursor``."""
    lo_c = -_INF if created_lo is None else created_lo
    hi_c = _INF if created_hi is None else created_hi
    if lo_c > hi_c:
        return iter(())
    lo, hi = _gen_range(table, lo_c, hi_c, cursor, desc)
    g = _iter_gen(table, lo, hi, matchers, desc)
    d = _iter_dyn(table, lo_c, hi_c, cursor, matchers, desc)
    if not table.keys:
        return g
    return heapq.merge(g, d, reverse=desc)


def page(
    table: Table,
    matchers: list[Matcher],
    created_lo: int | None,
    created_hi: int | None,
    starting_after: Key | None,
    ending_before: Key | None,
    limit: int,
) -> tuple[list[int], bool]:
    """One list page: (row numbers newest first, has_more) with Stripe's cursor semantics."""
    if ending_before is not None:
        it = iterate(table, matchers, created_lo, created_hi, ending_before, desc=False)
        got = [k[1] for _, k in zip(range(limit + 1), it, strict=False)]
        has_more = len(got) > limit
        got = got[:limit]
        got.reverse()
        return got, has_more
    it = iterate(table, matchers, created_lo, created_hi, starting_after, desc=True)
    got = [k[1] for _, k in zip(range(limit + 1), it, strict=False)]
    has_more = len(got) > limit
    return got[:limit], has_more
