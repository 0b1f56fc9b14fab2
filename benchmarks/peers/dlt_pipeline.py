"""A dlt pipeline copying six Stripe types into PostgreSQL: the peer `peer_bench.py` times against ours.

Run by the python of a venv holding dlt (`pip install "dlt[postgres]"`), not the project's:

    /tmp/peers/dlt/bin/python benchmarks/peers/dlt_pipeline.py --api-base http://127.0.0.1:12111 \\
        --key sk_test_... --database-url postgresql://postgres@127.0.0.1:5432/dlt_copy --pipelines-dir /tmp/x

dlt's REST API source (`rest_api`) lists customers, invoices, subscriptions (`status=all`, as Stripe lists
only live ones without it), charges, products and prices, 100 a page, with Stripe's cursor pagination
(`starting_after` = the last id of the page while `has_more`), bearer auth with the key, the resources
extracted in parallel; dlt's postgres destination, dataset `--dataset`. dlt unnests nested lists into child
tables (`invoices__lines__data`, ...), as it does by default. Prints the rows loaded per table on the last line
(JSON), from dlt's own trace.
"""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dlt
from dlt.sources.helpers.rest_client.paginators import BasePaginator
from dlt.sources.rest_api import rest_api_source

TYPES = {"customers": {}, "invoices": {}, "subscriptions": {"status": "all"}, "charges": {}, "products": {},
         "prices": {}}


class StripeCursorPaginator(BasePaginator):
    """Stripe's list pagination: the next page starts after the last object's id, while `has_more`."""

    def __init__(self) -> None:
        super().__init__()
        self.last_id: str | None = None

    def update_state(self, response: Any, data: list[Any] | None = None) -> None:
        self._has_next_page = bool(data) and bool(response.json().get("has_more"))
        if self._has_next_page and data:
            self.last_id = data[-1]["id"]

    def update_request(self, request: Any) -> None:
        request.params = {**(request.params or {}), "starting_after": self.last_id}


def with_password(url: str) -> str:
    """dlt refuses credentials without a password, even for a server that trusts the user (as the test
    server does): give it one, which such a server ignores."""
    parts = urlsplit(url)
    if parts.password is not None or "@" not in parts.netloc:
        return url
    user, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{user}:unused@{host}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api-base", required=True, help="the Stripe API base (the emulator's address)")
    parser.add_argument("--key", required=True, help="the secret key, sent as a bearer token")
    parser.add_argument("--database-url", required=True, help="the destination database (postgresql://...)")
    parser.add_argument("--dataset", default="stripe_dlt", help="the schema dlt loads into")
    parser.add_argument("--pipelines-dir", required=True, help="dlt's local state: a fresh directory each run")
    parser.add_argument("--write-disposition", default="append", choices=("append", "merge", "replace"),
                        help="append (default, dlt's cheapest for a first copy) or merge on the primary key id")
    args = parser.parse_args()

    source = rest_api_source({
        "client": {
            "base_url": args.api_base.rstrip("/") + "/v1/",
            "auth": {"type": "bearer", "token": args.key},
            "paginator": StripeCursorPaginator(),
        },
        "resource_defaults": {
            "primary_key": "id",
            "write_disposition": args.write_disposition,
            "endpoint": {"data_selector": "data"},
        },
        "resources": [{"name": name, "endpoint": {"path": name, "params": {"limit": 100, **params}}}
                      for name, params in TYPES.items()],
    }, parallelized=True)
    pipeline = dlt.pipeline(pipeline_name="stripe_peer_bench", pipelines_dir=args.pipelines_dir,
                            destination=dlt.destinations.postgres(credentials=with_password(args.database_url)),
                            dataset_name=args.dataset, progress=None)
    pipeline.run(source)
    normalized = pipeline.last_trace.last_normalize_info
    rows = normalized.row_counts if normalized else {}
    print(json.dumps({table: count for table, count in rows.items() if not table.startswith("_dlt")}))


if __name__ == "__main__":
    main()
