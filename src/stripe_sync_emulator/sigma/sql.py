"""Sigma's SQL (Trino) on SQLite: the small translation SQLite needs, and the guard that keeps a
query a read-only SELECT over the reporting tables.

Translated: ``timestamp '...'`` and ``date '...'`` literals (to the stored text form),
``current_timestamp`` / ``now()`` / ``localtimestamp`` (the emulator's clock), ``cast(x as
timestamp)`` (text). Everything else is passed to SQLite as written: SELECT with WHERE, ORDER BY,
LIMIT/OFFSET, GROUP BY, joins, WITH, ``count(*)`` and the like. A query is compiled once with
``EXPLAIN`` under an authorizer first: that names the tables it reads, refuses anything but reading,
and costs no execution."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field

from .schema import parse_timestamp_literal, timestamp_text

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<comment>--[^\n]*|/\*.*?\*/)
      | (?P<str>'(?:[^']|'')*')
      | (?P<qid>"(?:[^"]|"")*")
      | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
      | (?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)
      | (?P<op>\|\||<>|!=|<=|>=|.)""",
    re.S | re.X,
)


class SigmaSQLError(Exception):
    """A query Sigma would refuse; the message is what the run's ``error.message`` says."""


class InaccessibleTables(SigmaSQLError):
    def __init__(self, names: list[str]) -> None:
        self.names = names
        super().__init__("Your query references tables which do not exist or are inaccessible: "
                         f"[{', '.join(names)}]")


def translate(sql: str, now: float) -> str:
    """Trino text -> SQLite text (see the module's docstring for what changes)."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(sql):
        m = _TOKEN.match(sql, pos)
        if m is None or m.end() == pos:  # pragma: no cover - the last alternative matches any char
            raise SigmaSQLError(f"line 1:{pos + 1}: unexpected character")
        kind = m.lastgroup or "op"
        text = m.group()
        if kind == "op" and text == "'":
            raise SigmaSQLError(f"line 1:{pos + 1}: unterminated string literal")
        tokens.append((kind, text))
        pos = m.end()
    sig = [i for i, (k, _) in enumerate(tokens) if k not in ("ws", "comment")]
    out = [t for _, t in tokens]
    now_literal = f"'{timestamp_text(now)}'"
    for n, i in enumerate(sig):
        kind, text = tokens[i]
        if kind != "word":
            continue
        word = text.lower()
        nxt = sig[n + 1] if n + 1 < len(sig) else None
        prev = tokens[sig[n - 1]][1].lower() if n > 0 else ""
        if word in ("timestamp", "date") and nxt is not None and tokens[nxt][0] == "str":
            try:
                value = parse_timestamp_literal(tokens[nxt][1][1:-1].replace("''", "'"))
            except ValueError as exc:
                raise SigmaSQLError(str(exc)) from None
            out[i] = ""
            out[nxt] = f"'{value}'"
        elif word == "timestamp" and prev == "as":
            out[i] = "TEXT"
        elif word in ("current_timestamp", "localtimestamp"):
            out[i] = now_literal
        elif word == "now" and nxt is not None and tokens[nxt][1] == "(" and n + 2 < len(sig) \
                and tokens[sig[n + 2]][1] == ")":
            out[i] = now_literal
            out[nxt] = out[sig[n + 2]] = ""
    text = "".join(out).strip().rstrip(";").strip()
    if not text:
        raise SigmaSQLError("line 1:1: mismatched input '<EOF>'. Expecting: 'SELECT', 'WITH', 'VALUES'")
    return text


@dataclass
class Compiled:
    sql: str
    tables: list[str] = field(default_factory=list)  # tables read, in first-read order


_READ_ONLY = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION}
_RECURSIVE = getattr(sqlite3, "SQLITE_RECURSIVE", 33)


def compile_query(conn: sqlite3.Connection, sql: str, now: float) -> Compiled:
    """Translate and check ``sql`` without running it. Raises InaccessibleTables for tables that do
    not exist, SigmaSQLError for anything else Sigma would refuse."""
    text = translate(sql, now)
    out = Compiled(text)
    refused: list[str] = []

    def authorize(action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None) -> int:
        if action == sqlite3.SQLITE_READ and arg1:
            if arg1.startswith("sqlite_"):  # Sigma has no catalog tables (information_schema neither)
                refused.append(arg1)
                return sqlite3.SQLITE_DENY
            if arg1 not in out.tables:
                out.tables.append(arg1)
            return sqlite3.SQLITE_OK
        if action in _READ_ONLY or action == _RECURSIVE:
            return sqlite3.SQLITE_OK
        refused.append("")
        return sqlite3.SQLITE_DENY

    conn.set_authorizer(authorize)
    try:
        conn.execute("EXPLAIN " + text).fetchall()
    except sqlite3.Error as exc:
        message = str(exc)
        missing = re.match(r"no such table: (?:\w+\.)?(.+)$", message)
        if missing:
            raise InaccessibleTables([missing.group(1)]) from None
        if [r for r in refused if r]:
            raise InaccessibleTables(sorted({r for r in refused if r})) from None
        if refused:
            raise SigmaSQLError("Only SELECT queries can run in Sigma: the query must not change data") from None
        if "one statement at a time" in message:
            raise SigmaSQLError("Only one statement can run per query") from None
        raise SigmaSQLError(f"Query failed: {message}") from None
    finally:
        conn.set_authorizer(None)
    return out
