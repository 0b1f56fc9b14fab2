"""``POST /v1/sigma/query_runs`` and ``GET /v1/sigma/query_runs/{id}``. Sigma has no test-mode
data: a test key is answered as Stripe does (400, "not enabled for testmode usage")."""

from __future__ import annotations

from typing import Any

from ..api import Request, add_route
from ..errors import StripeError, invalid, missing_param, unknown_param

TESTMODE_MESSAGE = "This API surface is not enabled for testmode usage"


def _live_only(rq: Request) -> None:
    if not rq.lm:
        raise StripeError(400, TESTMODE_MESSAGE)


def _expand_file(rq: Request) -> bool:
    paths = set(rq.expand)
    unknown = paths - {"result.file"}
    if unknown:
        raise invalid(f"This property cannot be expanded ({sorted(unknown)[0]}).", param="expand")
    return bool(paths)


def create_query_run(rq: Request) -> Any:
    _live_only(rq)
    p = rq.params
    for k in p:
        if k not in ("sql", "from_saved_query", "expand"):
            raise unknown_param(k)
    if p.get("from_saved_query"):
        if p.get("sql"):
            raise invalid("You may only specify one of these parameters: from_saved_query, sql.", param="sql")
        raise StripeError(404, f"No such saved query: '{p['from_saved_query']}'", code="resource_missing",
                          param="from_saved_query")
    sql = p.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise missing_param("sql")
    sigma = rq.ctx.core.sigma
    run = sigma.create_run(rq.account, rq.lm, sql)
    return sigma.render(run, _expand_file(rq))


def retrieve_query_run(rq: Request, id: str) -> Any:
    _live_only(rq)
    for k in rq.params:
        if k != "expand":
            raise unknown_param(k)
    sigma = rq.ctx.core.sigma
    return sigma.render(sigma.poll(rq.account, rq.lm, id), _expand_file(rq))


add_route("POST", "/v1/sigma/query_runs", create_query_run)
add_route("GET", "/v1/sigma/query_runs/{id}", retrieve_query_run)
