"""The emulator's side of a large Sigma table: generating N synthetic rows, and serving them as keyset
pages over HTTP (query run created, finished at once, its CSV downloaded), as the engine reads them.

    .venv/bin/python benchmarks/sigma_emulator_bench.py [--rows 1000000] [--page-size 10000] [--runs 3]

Prints the generation time (median of ``--runs``), then for one full pass over the table: pages,
rows, the median and p95 page time and rows/s. The client parses each page with the csv module to
take its cursor, so the figure is what an engine could read at most from this emulator.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import io
import json
import statistics
import time
import urllib.parse

from stripe_sync_emulator import StripeEmulator, tune_gc

TABLE = "balance_transactions"


def request(conn: http.client.HTTPConnection, key: str, method: str, path: str, body: str | None = None) -> bytes:
    headers = {"Authorization": f"Bearer {key}"}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise SystemExit(f"{method} {path}: {resp.status} {data[:300]!r}")
    return data


def page(conn: http.client.HTTPConnection, key: str, cursor: str | None, size: int) -> list[list[str]]:
    where = f" WHERE (id > '{cursor}')" if cursor else ""
    sql = f"SELECT * FROM {TABLE}{where} ORDER BY id ASC LIMIT {size}"
    run = json.loads(request(conn, key, "POST", "/v1/sigma/query_runs", urllib.parse.urlencode({"sql": sql})))
    if run["status"] != "succeeded":
        raise SystemExit(f"run {run['id']}: {run['status']} {run['error']}")
    text = request(conn, key, "GET", f"/v1/files/{run['result']['file']}/contents").decode()
    return list(csv.reader(io.StringIO(text)))[1:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--page-size", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3, help="generations timed (median printed)")
    args = ap.parse_args()

    emu = StripeEmulator(seed=1, customers=10, sigma={"polls": 0}).start()
    tune_gc()
    try:
        emu.sigma_count(TABLE)  # the account's reporting tables built first: only the generation is timed
        gen = []
        for _ in range(max(1, args.runs)):
            emu.set_sigma(synthetic_rows={})
            t0 = time.perf_counter()
            emu.set_sigma(synthetic_rows={TABLE: args.rows})
            gen.append(time.perf_counter() - t0)
        total = emu.sigma_count(TABLE)
        print(f"generate {args.rows:,} rows in {TABLE}: median {statistics.median(gen):.2f} s "
              f"(runs: {', '.join(f'{g:.2f}' for g in gen)})")

        conn = http.client.HTTPConnection(emu.api_base.removeprefix("http://"), timeout=600)
        key = emu.live_secret_key
        times: list[float] = []
        rows = 0
        cursor = None
        t_all = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            got = page(conn, key, cursor, args.page_size)
            times.append(time.perf_counter() - t0)
            rows += len(got)
            if len(got) < args.page_size:
                break
            cursor = got[-1][[i for i, (c, _) in enumerate(_columns()) if c == "id"][0]]
        elapsed = time.perf_counter() - t_all
        if rows != total:
            raise SystemExit(f"read {rows} rows, the table holds {total}")
        times.sort()
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
        print(f"read {rows:,} rows in {len(times)} pages of {args.page_size:,}: {elapsed:.1f} s, "
              f"{rows / elapsed:,.0f} rows/s; page median {statistics.median(times) * 1000:.0f} ms, "
              f"p95 {p95 * 1000:.0f} ms")
    finally:
        emu.close()
    return 0


def _columns() -> tuple[tuple[str, str], ...]:
    from stripe_sync_emulator.sigma.schema import tables

    return tables()[TABLE].columns


if __name__ == "__main__":
    raise SystemExit(main())
