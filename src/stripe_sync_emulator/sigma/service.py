"""Sigma's query runs: settings (the faults and knobs), running a query over an account's
reporting store, the result file, and the run object as Stripe renders it.

A run executes when it is created (so it sees the data as of that moment) but reports ``running``
for ``polls`` retrievals before it shows its outcome: ``succeeded`` (or ``completed``, Stripe's
other word for it) with ``result.file``, or ``failed`` with ``error.message``."""

from __future__ import annotations

import csv
import io
import secrets
import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import StripeError, invalid, missing
from .schema import csv_text, tables
from .sql import InaccessibleTables, SigmaSQLError, compile_query
from .store import ReportingStore

if TYPE_CHECKING:  # pragma: no cover
    from ..account import AccountStore
    from ..core import EmulatorCore

DEFAULT_FAILURE = "Query execution failed: an internal error occurred while running your query. Please try again."
SUCCESS_STATUSES = ("succeeded", "completed")
INACCESSIBLE_WHERE = ("request", "run")
MAX_RUNS = 10_000  # runs kept for retrieval (oldest forgotten first)


@dataclass
class SigmaSettings:
    """What can be dialled (constructor ``sigma={...}``, CLI ``--sigma-*``, ``POST /_emulator/sigma``)."""

    polls: int = 2  # retrievals answered ``running`` before the outcome shows (0: done at creation)
    success_status: str = "succeeded"  # or "completed"
    failing_tables: dict[str, str] = field(default_factory=dict)  # table -> the failed run's message
    inaccessible_tables: set[str] = field(default_factory=set)  # tables this account cannot read
    inaccessible_error: str = "request"  # "request": the POST answers 400; "run": the run fails
    synthetic_rows: dict[str, int] = field(default_factory=dict)  # table -> extra generated rows

    def as_dict(self) -> dict[str, Any]:
        return {"polls": self.polls, "success_status": self.success_status,
                "failing_tables": dict(self.failing_tables), "inaccessible_tables": sorted(self.inaccessible_tables),
                "inaccessible_error": self.inaccessible_error, "synthetic_rows": dict(self.synthetic_rows)}


@dataclass
class QueryRun:
    id: str
    account_id: str
    livemode: bool
    created: int
    sql: str
    polls_left: int
    file_id: str | None = None
    error: str | None = None
    finalized_at: int | None = None


def _names(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, dict):
        return [str(v) for v in value.values()]
    return [str(v) for v in value]


def _known(name: str) -> str:
    if name not in tables():
        raise invalid(f"Unknown Sigma table: {name}", param="table")
    return name


_PLAIN_TYPES = ("varchar", "bigint", "integer", "timestamp", "date")


def _as_text(records: list[Any], col_types: list[str | None]) -> list[Any]:
    """Rows with the values ``csv.writer`` would not write as Sigma does (booleans, doubles,
    computed columns) turned to text; text, integers and NULL (an empty field) pass as they are."""
    special = [(i, typ) for i, typ in enumerate(col_types) if typ not in _PLAIN_TYPES]
    if not special:
        return records
    out = []
    for r in records:
        if all(r[i] is None for i, _ in special):
            out.append(r)
            continue
        row = list(r)
        for i, typ in special:
            v = row[i]
            if v is not None:
                row[i] = csv_text(v, typ)
        out.append(row)
    return out


class Sigma:
    """All accounts' Sigma state on one emulator core."""

    def __init__(self, core: EmulatorCore) -> None:
        self.core = core
        self.settings = SigmaSettings()
        self.runs: dict[str, QueryRun] = {}
        self.stores: dict[str, ReportingStore] = {}

    # ---- settings ----------------------------------------------------------------------------
    def configure(self, **kw: Any) -> dict[str, Any]:
        """Change settings (None leaves one as it is); answers all of them."""
        s = self.settings
        for key, value in kw.items():
            if value is None:
                continue
            if key == "polls":
                if int(value) < 0:
                    raise invalid("polls must be 0 or more", param="polls")
                s.polls = int(value)
            elif key == "success_status":
                if value not in SUCCESS_STATUSES:
                    raise invalid(f"success_status is one of {', '.join(SUCCESS_STATUSES)}", param=key)
                s.success_status = str(value)
            elif key == "failing_tables":
                if isinstance(value, dict):
                    s.failing_tables = {_known(k): str(v) or DEFAULT_FAILURE for k, v in value.items()}
                else:
                    s.failing_tables = {_known(k): DEFAULT_FAILURE for k in _names(value)}
            elif key == "inaccessible_tables":
                s.inaccessible_tables = {_known(k) for k in _names(value)}
            elif key == "inaccessible_error":
                if value not in INACCESSIBLE_WHERE:
                    raise invalid(f"inaccessible_error is one of {', '.join(INACCESSIBLE_WHERE)}", param=key)
                s.inaccessible_error = str(value)
            elif key == "synthetic_rows":
                if not isinstance(value, dict):
                    raise invalid("synthetic_rows is a mapping of table to row count", param=key)
                wanted = {_known(k): int(v) for k, v in value.items()}
                if wanted and self.core.platform.id not in self.stores:
                    # Built now, so the generation is done when the setting answers, not in a first query.
                    self.store(self.core.platform)
                for table in set(s.synthetic_rows) | set(wanted):
                    n = wanted.get(table, 0)
                    for store in self.stores.values():
                        try:
                            store.set_synthetic(table, n)
                        except ValueError as exc:
                            raise invalid(str(exc), param=key) from None
                s.synthetic_rows = {k: v for k, v in wanted.items() if v > 0}
            else:
                raise invalid(f"Unknown Sigma setting: {key}", param=key)
        return s.as_dict()

    # ---- data ----------------------------------------------------------------------------------
    def store(self, account: AccountStore) -> ReportingStore:
        """The account's reporting tables, current as of now."""
        store = self.stores.get(account.id)
        if store is None:
            store = self.stores[account.id] = ReportingStore(account)
            for table, n in self.settings.synthetic_rows.items():
                store.set_synthetic(table, n)
        store.sync(self.core.clock.now())
        return store

    def rows(self, account: AccountStore, table: str) -> list[dict[str, str | None]]:
        """Every row of a table as a result file would carry it (text; None for an empty field)."""
        _known(table)
        header, records = self.execute(account, f'SELECT * FROM "{table}"')
        return [{h: (None if v is None or v == "" else str(v)) for h, v in zip(header, r, strict=True)}
                for r in records]

    def count(self, account: AccountStore, table: str) -> int:
        _known(table)
        return int(self.store(account).conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])

    def execute(self, account: AccountStore, sql: str) -> tuple[list[str], list[Any]]:
        """Run ``sql`` now; (header, rows ready for ``csv.writer``: text, numbers, None for NULL).
        Raises SigmaSQLError / InaccessibleTables."""
        store = self.store(account)
        conn = store.conn
        compiled = compile_query(conn, sql, self.core.clock.now())
        denied = sorted(t for t in compiled.tables if t in self.settings.inaccessible_tables)
        if denied:
            raise InaccessibleTables(denied)
        for t in compiled.tables:
            if t in self.settings.failing_tables:
                raise SigmaSQLError(self.settings.failing_tables[t])
        try:
            cur = conn.execute(compiled.sql)
            header = [d[0] for d in cur.description or ()]
            records = cur.fetchall()
        except sqlite3.Error as exc:
            raise SigmaSQLError(f"Query failed: {exc}") from None
        known = tables()
        types: dict[str, str] = {}
        for t in compiled.tables:
            for col, typ in known[t].columns if t in known else ():
                types.setdefault(col, typ)
        return header, _as_text(records, [types.get(h) for h in header])

    # ---- runs ------------------------------------------------------------------------------------
    def create_run(self, account: AccountStore, livemode: bool, sql: str) -> QueryRun:
        core = self.core
        now = core.clock.time()
        run = QueryRun("qry_1" + secrets.token_hex(12), account.id, livemode, now, sql, self.settings.polls)
        try:
            header, records = self.execute(account, sql)
        except InaccessibleTables as exc:
            if self.settings.inaccessible_error == "request":
                raise StripeError(400, str(exc)) from None
            run.error = str(exc)
        except SigmaSQLError as exc:
            run.error = str(exc)
        else:
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(records)
            f = core.files.add(account.id, livemode, now, f"{run.id}.csv", "sigma_scheduled_query", "csv",
                               buf.getvalue().encode())
            run.file_id = f.id
        self.runs[run.id] = run
        while len(self.runs) > MAX_RUNS:
            del self.runs[next(iter(self.runs))]
        if run.polls_left <= 0:
            run.finalized_at = now
        return run

    def poll(self, account: AccountStore, livemode: bool, run_id: str) -> QueryRun:
        run = self.runs.get(run_id)
        if run is None or run.account_id != account.id or run.livemode != livemode:
            raise missing("sigma.sigma_query_run", run_id)
        if run.finalized_at is None:
            run.polls_left -= 1
            if run.polls_left < 0:
                run.finalized_at = self.core.clock.time()
        return run

    def render(self, run: QueryRun, expand_file: bool = False) -> dict[str, Any]:
        done = run.finalized_at is not None
        if not done:
            status = "running"
        elif run.error is not None:
            status = "failed"
        else:
            status = self.settings.success_status
        result: dict[str, Any] | None = None
        if done and run.file_id is not None:
            file: Any = run.file_id
            if expand_file:
                files = self.core.files
                file = files.render(files.get(run.file_id, run.account_id, run.livemode))
            result = {"file": file}
        return {"id": run.id, "object": "sigma.sigma_query_run", "created": run.created,
                "error": {"message": run.error} if done and run.error is not None else None,
                "finalized_at": run.finalized_at, "livemode": run.livemode, "result": result, "sql": run.sql,
                "status": status}
