"""List filters: the ``Matcher`` builders the families compose their list parameters from, and
the parsing of ``limit`` and ``created``.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import invalid
from .forms import as_list, to_int
from .objects import get_path, id_of, norm
from .store import Matcher, Table

if TYPE_CHECKING:  # pragma: no cover
    from .account import AccountStore


EMPTY_ROWS = array("i")


def always(_: int) -> bool:
    return True


FilterBuilder = Callable[["AccountStore", Table, Any], Matcher]


NOOP = Matcher(always, lambda s, o: True)


def accepted_not_applied(account: AccountStore, t: Table, value: Any) -> Matcher:
    """Accepted for compatibility but not applied (documented in the report)."""
    return NOOP


def relation_filter(col: str | None, target: str, path: tuple[str, ...]) -> FilterBuilder:
    """Equality on a relation (an id), using the inverted index of a generated column."""

    def build(account: AccountStore, t: Table, value: Any) -> Matcher:
        want = str(value)
        tt = account.tables[target]
        tseq = tt.seq_of(want) if want else None
        gen: Callable[[int], bool] | None = None
        cands = None
        if col is not None and col in t.cols and tseq is not None and tseq < tt.n_gen:
            gen = always
            cands = t.index(col).get(tseq, EMPTY_ROWS)
        return Matcher(gen, lambda s, o: id_of(get_path(o, path)) == want, cands)

    return build


def same_row_filter(target: str, path: tuple[str, ...]) -> FilterBuilder:
    """Charges' payment_intent: generated charges and intents share row numbers."""

    def build(account: AccountStore, t: Table, value: Any) -> Matcher:
        want = str(value)
        tseq = account.tables[target].seq_of(want)
        if tseq is None or tseq >= t.n_gen:
            return Matcher(None, lambda s, o: id_of(get_path(o, path)) == want)
        return Matcher(always, lambda s, o: id_of(get_path(o, path)) == want, array("i", [tseq]))

    return build


def field_filter(path: tuple[str, ...], multi: bool = False) -> FilterBuilder:
    """Equality on any field; generated rows are rendered to check_params (fine for small tables)."""

    def build(account: AccountStore, t: Table, value: Any) -> Matcher:
        wants = {str(v) for v in as_list(value)} if multi else {norm(value)}

        def dyn(s: int, o: dict[str, Any]) -> bool:
            return norm(get_path(o, path)) in wants

        def gen(i: int) -> bool:
            obj = account.render(t.name, i, False)
            return obj is not None and norm(get_path(obj, path)) in wants

        return Matcher(gen, dyn)

    return build


def created_rows_only_filter(path: tuple[str, ...]) -> FilterBuilder:
    """Equality on a field that generated rows always leave empty (only API-made rows can match)."""

    def build(account: AccountStore, t: Table, value: Any) -> Matcher:
        want = norm(value)
        gen: Callable[[int], bool] | None = always if want == "" else None
        return Matcher(gen, lambda s, o: norm(get_path(o, path)) == want)

    return build


def enum_filter(col: str, values: tuple[str, ...], path: tuple[str, ...], allowed: tuple[str, ...] | None = None) -> FilterBuilder:
    def build(account: AccountStore, t: Table, value: Any) -> Matcher:
        v = str(value)
        ok = allowed or values
        if v not in ok:
            raise invalid(f"Invalid {path[-1]}: must be one of {', '.join(ok)}", param=path[-1])
        arr = t.cols.get(col)
        gen: Callable[[int], bool] | None = None
        if v in values and arr is not None:
            code = values.index(v)
            gen = lambda i: arr[i] == code  # noqa: E731
        return Matcher(gen, lambda s, o: get_path(o, path) == v)

    return build


def ids_filter(account: AccountStore, t: Table, value: Any) -> Matcher:
    wanted = {str(v) for v in as_list(value)}
    seqs = sorted(s for s in (t.seq_of(w) for w in wanted) if s is not None and s < t.n_gen)
    return Matcher(always, lambda s, o: o.get("id") in wanted, array("i", seqs))


def parse_limit(params: dict[str, Any]) -> int:
    raw = params.get("limit")
    if raw is None or raw == "":
        return 10
    n = to_int(raw, "limit")
    if n < 1:
        raise invalid("This value must be greater than or equal to 1.", param="limit")
    if n > 100:
        raise invalid("This value must be less than or equal to 100.", param="limit")
    return n


def parse_created(value: Any, param: str = "created") -> tuple[int | None, int | None]:
    """``created=N`` or ``created[gt|gte|line_table|lte]=N`` -> inclusive (lo, hi)."""
    if value is None or value == "":
        return None, None
    if not isinstance(value, dict):
        n = to_int(value, param)
        return n, n
    lo: int | None = None
    hi: int | None = None
    for op, raw in value.items():
        n = to_int(raw, f"{param}[{op}]")
        if op == "gt":
            lo = n + 1 if lo is None else max(lo, n + 1)
        elif op == "gte":
            lo = n if lo is None else max(lo, n)
        elif op == "lt":
            hi = n - 1 if hi is None else min(hi, n - 1)
        elif op == "lte":
            hi = n if hi is None else min(hi, n)
        else:
            raise invalid(f"Received unknown parameter: {param}[{op}]", param=f"{param}[{op}]",
                          code="parameter_unknown")
    return lo, hi
