"""One account's reporting tables in an in-memory SQLite database, kept current lazily.

Built on the first query; afterwards, before each query, the types whose tables changed since
(their version, row count or deletions moved) have their changed objects derived again. A row's
``batch_timestamp`` is when it landed here: its object's ``created`` for the first build, the
emulator's clock at the query that first saw a new version of it after that. So an incremental
reader can ask for ``batch_timestamp`` past its last run. Deleted objects leave their table, except
where the table keeps them flagged (``customers.deleted``)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import defaultdict
from functools import cache
from typing import TYPE_CHECKING, Any

from ..ids import stable_hash
from .reporting import DEPENDS, SOURCES, Row, Source
from .schema import SigmaTable, tables, timestamp_text, to_sql

if TYPE_CHECKING:  # pragma: no cover
    from ..account import AccountStore

DAY = 86400
_CURRENCIES = ("eur", "gbp", "jpy", "cad", "aud", "chf")


_TEMPLATE_LOCK = threading.Lock()


@cache
def _template() -> sqlite3.Connection:
    """The 187 empty tables and their indexes, created once per process."""
    conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    for t in tables().values():
        for stmt in t.ddl():
            conn.execute(stmt)
    return conn


class ReportingStore:
    """The 187 tables of one account (see the module's docstring)."""

    def __init__(self, account: AccountStore) -> None:
        self.account = account
        self.conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self.tables = tables()
        with _TEMPLATE_LOCK:
            _template().backup(self.conn)  # the empty tables, copied (creating them is 10x slower)
        self._by_type: dict[str, list[Source]] = defaultdict(list)
        for s in SOURCES:
            self._by_type[s.type_name].append(s)
        self._seen: dict[str, tuple[int, int, int]] = {}  # type -> its table's change marker at last sync
        self._rows: dict[str, dict[int, list[tuple[str, int]]]] = defaultdict(dict)  # type -> seq -> (table, rowid)
        self._dynamic: dict[str, set[int]] = defaultdict(set)  # seqs that were stored dicts or deleted at last sync
        self.synthetic: dict[str, int] = {}  # table -> synthetic rows it holds
        self._built = False

    # ---- sync -------------------------------------------------------------------------------
    def sync(self, now: float) -> None:
        """Bring every table up to date with the account's objects."""
        self.conn.execute("BEGIN")
        try:
            if not self._built:
                self._build()
            else:
                changed = {t for t in self._by_type if self._marker(t) != self._seen.get(t)}
                for type_name in self._by_type:
                    if type_name in changed:
                        self._resync(type_name, now)
                    elif changed.intersection(DEPENDS.get(type_name, ())):
                        self._resync(type_name, now, every=True)
                for type_name in changed:
                    self._seen[type_name] = self._marker(type_name)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def _marker(self, type_name: str) -> tuple[int, int, int]:
        t = self.account.tables[type_name]
        return (t.version, t.next_seq, len(t.deleted))

    def _render(self, type_name: str, seq: int) -> dict[str, Any] | None:
        obj = self.account.render(type_name, seq, True)
        return None if obj is None or obj.get("deleted") else obj

    def _build(self) -> None:
        account = self.account
        for type_name, sources in self._by_type.items():
            t = account.tables[type_name]
            self._seen[type_name] = self._marker(type_name)
            self._dynamic[type_name] = set(t.rows) | set(t.deleted)
            pending: dict[str, list[tuple[int, tuple[Any, ...]]]] = defaultdict(list)
            for seq in account.all_seqs(type_name):
                obj = self._render(type_name, seq)
                if obj is None:
                    continue
                landed = self._landed(type_name, seq, obj)
                for s in sources:
                    for row in s.derive(account, type_name, seq, obj):
                        pending[s.table].append((seq, self._values(self.tables[s.table], row, landed)))
            for table, items in pending.items():
                self._insert_many(type_name, table, items)
        self._exchange_rates()
        self._built = True

    def _landed(self, type_name: str, seq: int, obj: dict[str, Any]) -> int:
        """When a generated row first landed: its object's (or, for a line, its parent's) ``created``."""
        created = obj.get("created")
        if isinstance(created, int):
            return created
        t = self.account.tables[type_name]
        if t.rt.parent is not None:
            pt = self.account.tables[t.rt.parent]
            pseq = t.parent_of_generated(pt, seq) if seq < t.n_gen else t.parent_of.get(seq)
            if pseq is not None and pseq >= 0 and pt.rt.has_created:
                return pt.created_of(pseq)
        return self.account.gen_end

    def _insert_many(self, type_name: str, table: str, items: list[tuple[int, tuple[Any, ...]]]) -> None:
        sql = self._insert_sql(self.tables[table])
        seq_rows = self._rows[type_name]
        cur = self.conn.cursor()
        for seq, values in items:  # one by one: each row's rowid is remembered for later changes
            cur.execute(sql, values)
            seq_rows.setdefault(seq, []).append((table, int(cur.lastrowid or 0)))

    @staticmethod
    def _insert_sql(t: SigmaTable) -> str:
        return f'INSERT INTO "{t.name}" VALUES ({", ".join("?" * len(t.columns))})'

    @staticmethod
    def _values(t: SigmaTable, row: Row, landed: float | None) -> tuple[Any, ...]:
        landed_text = timestamp_text(landed) if landed is not None else None
        return tuple(landed_text if col == "batch_timestamp" else
                     (None if (v := row.get(col)) is None else to_sql(v, typ)) for col, typ in t.columns)

    def _resync(self, type_name: str, now: float, every: bool = False) -> None:
        """Derive again the objects of ``type_name`` that can have changed: stored, new or deleted
        (``every``: all of them, when a type their rows also read from changed)."""
        account = self.account
        t = account.tables[type_name]
        current = set(t.rows) | set(t.deleted)
        seqs = current | self._dynamic[type_name]
        if every:
            seqs |= set(account.all_seqs(type_name))
        self._dynamic[type_name] = current
        sources = self._by_type[type_name]
        seq_rows = self._rows[type_name]
        for seq in sorted(seqs):
            old = seq_rows.pop(seq, [])
            old_values = [(table, rowid, self._row(table, rowid)) for table, rowid in old]
            obj = self._render(type_name, seq) if t.exists(seq) else None
            new: list[tuple[str, tuple[Any, ...]]] = []
            if obj is not None:
                new = [(s.table, self._values(self.tables[s.table], row, now))
                       for s in sources for row in s.derive(account, type_name, seq, obj)]
            else:
                new = [(table, self._flag_deleted(table, values, now))
                       for table, _, values in old_values if values is not None and "deleted" in
                       self.tables[table].column_names]
            kept: list[tuple[str, int]] = []
            for table, values in new:
                st = self.tables[table]
                match = next((o for o in old_values if o[0] == table and o[2] is not None
                              and _same(st, o[2], values)), None)
                if match is not None:
                    old_values.remove(match)
                    kept.append((table, match[1]))
                    continue
                cur = self.conn.execute(self._insert_sql(st), values)
                kept.append((table, int(cur.lastrowid or 0)))
            for table, rowid, _ in old_values:
                self.conn.execute(f'DELETE FROM "{table}" WHERE rowid = ?', (rowid,))
            if kept:
                seq_rows[seq] = kept

    def _row(self, table: str, rowid: int) -> tuple[Any, ...] | None:
        got = self.conn.execute(f'SELECT * FROM "{table}" WHERE rowid = ?', (rowid,)).fetchone()
        return tuple(got) if got is not None else None

    def _flag_deleted(self, table: str, values: tuple[Any, ...], now: float) -> tuple[Any, ...]:
        """A deleted object's last row, flagged (tables with a ``deleted`` column keep deletions)."""
        names = self.tables[table].column_names
        row = dict(zip(names, values, strict=True))
        row["deleted"] = 1
        if "batch_timestamp" in row:
            row["batch_timestamp"] = timestamp_text(now)
        return tuple(row[n] for n in names)

    # ---- fixed and synthetic data ---------------------------------------------------------------
    def _exchange_rates(self) -> None:
        """One row a day over the generated range: USD against a few currencies (deterministic)."""
        account = self.account
        rows = []
        day = account.gen_start - account.gen_start % DAY
        while day <= account.gen_end:
            rates = {c: round(0.5 + (stable_hash("fx", c, day) % 10_000) / 10_000, 6) for c in _CURRENCIES}
            rates["jpy"] = round(rates["jpy"] * 150, 4)
            rows.append((timestamp_text(day), "usd", json.dumps(rates, separators=(",", ":"), sort_keys=True)))
            day += DAY
        self.conn.executemany('INSERT INTO "exchange_rates_from_usd" VALUES (?, ?, ?)', rows)

    def set_synthetic(self, table: str, n: int) -> None:
        """``n`` extra rows in ``table``, generated inside SQLite (a million takes seconds), with
        keys that sort after the derived ones' prefixes never collide: ``<prefix>synth_000000001``."""
        st = self.tables[table]
        old = self.synthetic.get(table, 0)
        if old == n:
            return
        self.conn.execute("BEGIN")
        try:
            if old:
                self.conn.execute(f'DELETE FROM "{table}" WHERE rowid IN (SELECT rowid FROM "{table}" '
                                  f'WHERE {_synthetic_marker(st)})')
            if n > 0:
                self.conn.execute(_synthetic_insert(st, self.account.gen_start, self.account.gen_end, n))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        if n > 0:
            self.synthetic[table] = n
        else:
            self.synthetic.pop(table, None)


def _same(st: SigmaTable, old: tuple[Any, ...], new: tuple[Any, ...]) -> bool:
    """Equal but for ``batch_timestamp``."""
    names = st.column_names
    return all(a == b for name, a, b in zip(names, old, new, strict=True) if name != "batch_timestamp")


SYNTH = "synth_"


def _synthetic_marker(st: SigmaTable) -> str:
    first, typ = next((c, t) for c, t in st.columns if c == st.primary_key[0])
    if typ == "varchar":
        return f"\"{first}\" LIKE '%{SYNTH}%'"
    if typ in ("bigint", "integer"):
        return f'"{first}" >= 1000000000000'
    raise ValueError(f"synthetic rows need a text or integer first key column; {st.name}.{first} is {typ}")


def _synthetic_insert(st: SigmaTable, start: int, end: int, n: int) -> str:
    _synthetic_marker(st)  # refuses tables it cannot mark
    step = max(1.0, (end - start) / n)
    prefix = st.name[:3] + "_"
    exprs = []
    for col, typ in st.columns:
        if col in st.primary_key and typ == "varchar":
            exprs.append(f"'{prefix}{SYNTH}' || printf('%09d', n)")
        elif col in st.primary_key and typ in ("bigint", "integer"):
            exprs.append("1000000000000 + n")
        elif typ == "timestamp":
            exprs.append("ts")
        elif typ in ("bigint", "integer"):
            exprs.append("(n * 7919) % 100000")
        elif typ == "boolean":
            exprs.append("n % 2")
        elif col == "currency":
            exprs.append("'usd'")
        else:
            exprs.append("NULL")
    # One formatted time per row, shared by every timestamp column (computed in the recursion, so once).
    def ts(n: str) -> str:
        return f"strftime('%Y-%m-%d %H:%M:%S', {start} + CAST({n} * {step} AS INTEGER), 'unixepoch') || '.000'"

    return (f"WITH RECURSIVE s(n, ts) AS (SELECT 1, {ts('1')} UNION ALL SELECT n + 1, {ts('(n + 1)')} FROM s "
            f'WHERE n < {int(n)}) INSERT INTO "{st.name}" SELECT {", ".join(exprs)} FROM s')
