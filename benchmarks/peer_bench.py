"""Ours against two peers, side by side on this machine: whole commands, spawn to exit. Prints figures only.

    .venv/bin/python benchmarks/peer_bench.py --ts-engine /tmp/peers --dlt-python /tmp/peers/dlt/bin/python

One emulator process (`python -m stripe_sync_emulator --port 0 --customers N --rate-limit off`) serves every
run; each run gets a database of its own on the server --database-url names (created empty, dropped after).
Each comparison runs `--rounds` rounds; a round runs both sides once, alternating which goes first, so that
the machine's load falls on both alike. Reported per side: median and min seconds, rows stored (a sanity
check: both sides must store the same objects), the median of the per-round ratios (peer / ours, each
measured within one round), the load average before and after each comparison, and where each side's time
went: the CPU seconds of the command's processes, of the PostgreSQL backends serving its database, of the
emulator and of the whole machine (the rest being other work on it) while it ran.

The peers are not installed by this script; install them anywhere and give their locations:

    cd /tmp/peers && npm install stripe-experiment-sync@1.0.19
    python3 -m venv /tmp/peers/dlt && /tmp/peers/dlt/bin/pip install "dlt[postgres]"

  --ts-engine DIR    the TypeScript Stripe Sync Engine: a directory where
                     `npm install stripe-experiment-sync@1.0.19` ran. Its own CLI is timed,
                     `backfill customer --stripe-key ... --database-url ...` (migrations, then
                     `processUntilDone({object: 'customer'})`), against ours, `backfill customers`. Its
                     migrations run (`migrate`) before timing, as ours do. The engine has no API base
                     option: `benchmarks/peers/ts_api_base.mjs`, preloaded with `node --import`, gives the
                     Stripe node SDK's `host`/`port`/`protocol` options to every client it makes.
                     Version 1.0.19: the only other one the registry holds, 1.0.31 (the latest, marked
                     deprecated), builds its tables at migration time from Stripe's OpenAPI spec, which it
                     downloads from GitHub; without internet access its `migrate` fails ("fetch failed").
                     The engine has no client-side rate limit (it retries 429s): nothing to turn off.
                     It asks for the API version ours does (its CLI reads STRIPE_API_VERSION), as the
                     emulator answers only the versions it models.
  --dlt-python PATH  the python of a venv with `dlt[postgres]` (dlt and psycopg2-binary): it runs
                     `benchmarks/peers/dlt_pipeline.py` (dlt's `rest_api` source, Stripe's
                     `starting_after` pagination, 100 a page, bearer auth, resources extracted in
                     parallel; postgres destination) copying customers, invoices, subscriptions, charges,
                     products and prices, against ours, `backfill customers invoices subscriptions charges
                     products prices` (one command, one run). dlt creates its tables as it loads: that is
                     in its time.

A peer not given is skipped, saying so. Ours is this venv's `stripe-sync-tui`, its rate limit off
(`max_requests_per_second = 0` in a config file named by STRIPE_SYNC_CONFIG), migrated by
`stripe-sync-tui --headless migrate` before timing. Both sides print their progress to /dev/null.

    .venv/bin/python benchmarks/peer_bench.py --ts-engine /tmp/peers --rounds 3             # TS engine only
    .venv/bin/python benchmarks/peer_bench.py --dlt-python /tmp/peers/dlt/bin/python --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import psycopg
from bench_database import fresh_database
from bench_emulator import EmulatorProcess as Emulator
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

HERE = Path(__file__).resolve().parent
DEFAULT_SERVER = os.environ.get("STRIPE_SYNC_TEST_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
SIX_TYPES = ("customers", "invoices", "subscriptions", "charges", "products", "prices")
TIMEOUT = 1800
TS_PACKAGE = "stripe-experiment-sync"


@dataclass
class Side:
    """One side of a comparison: how to prepare a fresh database, the timed command, and its rows."""

    name: str
    prepare: Callable[[str], None]  # untimed, on the empty database: migrations
    command: Callable[[str, Path], tuple[list[str], dict[str, str]]]  # (argv, env) for a database, a scratch dir
    rows: Callable[[str], dict[str, int]]
    seconds: list[float] = field(default_factory=list)
    stored: list[dict[str, int]] = field(default_factory=list)
    cpu: list[dict[str, float]] = field(default_factory=list)


class CpuMeter:
    """CPU seconds spent while one command runs, by whom: the command (its processes, as reaped: `RUSAGE_CHILDREN`),
    the PostgreSQL backends serving the run's database (its clients' and autovacuum's, sampled every 0.1 s, so a
    backend's last tenth of a second may be missed), the server's WAL writer, checkpointer and background writer
    (shared by every database of the server: other work's too), the emulator, and the whole machine (every
    core; what these leave is other work on the shared machine)."""

    SHARED = ("walwriter", "checkpointer", "background writer")

    def __init__(self, server: str, database: str, emulator_pid: int) -> None:
        self.server, self.database = server, database
        self.emulator = psutil.Process(emulator_pid)
        self.backends: dict[int, float] = {}
        self.stopping = threading.Event()
        self.figures: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self.children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.emulator_cpu = self._seconds(self.emulator.cpu_times())
        self.machine = psutil.cpu_times()
        self.shared = self._shared_cpu()
        self.sampler = threading.Thread(target=self._sample_backends, daemon=True)
        self.sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.sampler.join()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        machine = psutil.cpu_times()
        shared = self._shared_cpu()
        busy = (sum(machine) - machine.idle - machine.iowait) - (sum(self.machine) - self.machine.idle - self.machine.iowait)
        self.figures = {
            "command": (children.ru_utime - self.children.ru_utime) + (children.ru_stime - self.children.ru_stime),
            "postgres": sum(self.backends.values()),
            "postgres_shared": sum(shared[pid] - self.shared[pid] for pid in shared.keys() & self.shared.keys()),
            "emulator": self._seconds(self.emulator.cpu_times()) - self.emulator_cpu,
            "machine": busy,
        }

    @staticmethod
    def _seconds(times: Any) -> float:
        return float(times.user + times.system)

    def _shared_cpu(self) -> dict[int, float]:
        with psycopg.connect(self.server, autocommit=True) as conn:
            pids = [row[0] for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = ANY(%s)", (list(self.SHARED),))]
        seconds = {}
        for pid in pids:
            try:
                seconds[pid] = self._seconds(psutil.Process(pid).cpu_times())
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return seconds

    def _sample_backends(self) -> None:
        with psycopg.connect(self.server, autocommit=True) as conn:
            while not self.stopping.wait(0.1):
                pids = [row[0] for row in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    (self.database,))]
                for pid in pids:
                    try:
                        self.backends[pid] = self._seconds(psutil.Process(pid).cpu_times())
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        pass


def run(argv: list[str], env: dict[str, str], what: str) -> float:
    """Spawn to exit, in seconds; its stdout to /dev/null (progress), its stderr kept for a failure."""
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          timeout=TIMEOUT, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def as_url(conninfo: str) -> str:
    """A postgresql:// URL for the same database: the peers' drivers (node-postgres, dlt) take only URLs,
    while the databases made here are named by libpq key=value strings."""
    params = conninfo_to_dict(conninfo)
    user = quote(str(params.get("user", "postgres")), safe="")
    password = f":{quote(str(params['password']), safe='')}" if params.get("password") else ""
    host = params.get("host", "127.0.0.1")
    host = f"[{host}]" if ":" in str(host) else host
    return f"postgresql://{user}{password}@{host}:{params.get('port', 5432)}/{quote(str(params['dbname']), safe='')}"


def count_rows(url: str, schema: str, tables: tuple[str, ...]) -> dict[str, int]:
    counts = {}
    with psycopg.connect(url) as conn:
        for table in tables:
            query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
            counts[table] = conn.execute(query).fetchone()[0]  # type: ignore[index]
    return counts


# -- the sides ---------------------------------------------------------------------------------------


def ours(emulator: Emulator, objects: tuple[str, ...], config_file: Path) -> Side:
    script = Path(sys.executable).with_name("stripe-sync-tui")
    cli = [str(script)] if script.exists() else [sys.executable, "-m", "stripe_sync_tui.cli"]
    env = {**os.environ, "STRIPE_SYNC_CONFIG": str(config_file)}
    for variable in ("DATABASE_URL", "STRIPE_API_KEY", "STRIPE_API_BASE", "STRIPE_SYNC_SETTINGS"):
        env.pop(variable, None)

    def prepare(url: str) -> None:
        run([*cli, "--headless", "migrate", "--database-url", url], env, "ours: migrate")

    def command(url: str, scratch: Path) -> tuple[list[str], dict[str, str]]:
        return ([*cli, "--headless", "backfill", *objects, "--database-url", url, "--stripe-key", emulator.key,
                 "--stripe-api-base", emulator.api_base], env)

    return Side("ours", prepare, command, lambda url: count_rows(url, "stripe", objects))


def ts_engine(emulator: Emulator, directory: Path, node: str) -> Side:
    cli = directory / "node_modules" / TS_PACKAGE / "dist" / "cli" / "index.js"
    env = {**os.environ, "STRIPE_API_BASE": emulator.api_base, "TS_ENGINE_DIR": str(directory),
           "STRIPE_API_VERSION": emulator_api_version(emulator)}

    def prepare(url: str) -> None:
        run([node, str(cli), "migrate", "--database-url", as_url(url)], env, "TS engine: migrate")

    def command(url: str, scratch: Path) -> tuple[list[str], dict[str, str]]:
        return ([node, "--import", str(HERE / "peers" / "ts_api_base.mjs"), str(cli), "backfill", "customer",
                 "--stripe-key", emulator.key, "--database-url", as_url(url)], env)

    return Side("TS engine", prepare, command, lambda url: count_rows(url, "stripe", ("customers",)))


def dlt_pipeline(emulator: Emulator, python: str, write_disposition: str) -> Side:
    env = dict(os.environ)

    def command(url: str, scratch: Path) -> tuple[list[str], dict[str, str]]:
        return ([python, str(HERE / "peers" / "dlt_pipeline.py"), "--api-base", emulator.api_base, "--key",
                 emulator.key, "--database-url", as_url(url), "--dataset", "stripe_dlt", "--pipelines-dir",
                 str(scratch / "dlt"), "--write-disposition", write_disposition], env)

    return Side("dlt", lambda url: None, command, lambda url: count_rows(url, "stripe_dlt", SIX_TYPES))


def emulator_api_version(emulator: Emulator) -> str:
    """The version ours asks for (the emulator's default): the TS engine is made to ask for the same."""
    with urllib.request.urlopen(f"{emulator.api_base}/_emulator/info", timeout=10) as answer:
        return str(json.load(answer)["api_version"])


# -- a comparison ------------------------------------------------------------------------------------


@contextmanager
def scratch_directory() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="peer_bench_"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def one_run(side: Side, server: str, emulator: Emulator) -> None:
    with fresh_database(server, "peer_bench", migrate=False) as url, scratch_directory() as scratch:
        side.prepare(url)
        argv, env = side.command(url, scratch)
        with CpuMeter(server, str(conninfo_to_dict(url)["dbname"]), emulator.process.pid) as meter:
            side.seconds.append(run(argv, env, f"{side.name}: {' '.join(argv[:4])} ..."))
        side.cpu.append(meter.figures)
        side.stored.append(side.rows(url))


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def compare(title: str, our_side: Side, peer: Side, rounds: int, server: str, emulator: Emulator) -> None:
    print(f"\n## {title}")
    print(f"load average before: {load()}")
    for index in range(rounds):
        order = (our_side, peer) if index % 2 == 0 else (peer, our_side)
        for side in order:
            one_run(side, server, emulator)
        ratio = peer.seconds[-1] / our_side.seconds[-1]
        print(f"round {index + 1} ({order[0].name} first): ours {our_side.seconds[-1]:.2f} s, "
              f"{peer.name} {peer.seconds[-1]:.2f} s, {peer.name} / ours {ratio:.2f}; load {load()}", flush=True)
    print(f"load average after: {load()}")
    ratios = [p / o for p, o in zip(peer.seconds, our_side.seconds, strict=True)]
    print("\n| side | median s | min s | rows stored (last run) |\n|---|---|---|---|")
    for side in (our_side, peer):
        rows = ", ".join(f"{table} {count:,}" for table, count in side.stored[-1].items())
        print(f"| {side.name} | {statistics.median(side.seconds):.2f} | {min(side.seconds):.2f} | {rows} |")
    print(f"\nCPU seconds while the command ran, medians (the whole machine: all {os.cpu_count()} cores, the rest "
          "being other work on it)\n\n| side | the command | its PostgreSQL backends | the server's WAL writer, "
          "checkpointer, bgwriter (all databases) | the emulator | the whole machine |\n|---|---|---|---|---|---|")
    for side in (our_side, peer):
        cpu = {key: statistics.median(run[key] for run in side.cpu) for key in side.cpu[0]}
        print(f"| {side.name} | {cpu['command']:.2f} | {cpu['postgres']:.2f} | {cpu['postgres_shared']:.2f} | "
              f"{cpu['emulator']:.2f} | {cpu['machine']:.2f} |")
    print(f"\n{peer.name} / ours, median of the per-round ratios: {statistics.median(ratios):.2f} "
          f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    shared = set(our_side.stored[-1]) & set(peer.stored[-1])
    differ = {t: (our_side.stored[-1][t], peer.stored[-1][t]) for t in sorted(shared)
              if our_side.stored[-1][t] != peer.stored[-1][t]}
    print("rows: the same on both sides" if not differ else f"rows DIFFER (ours, {peer.name}): {differ}")


def ts_version(directory: Path) -> str:
    package = directory / "node_modules" / TS_PACKAGE / "package.json"
    return str(json.loads(package.read_text())["version"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_SERVER,
                        help="server for the runs' databases (default: STRIPE_SYNC_TEST_DATABASE_URL, else %(default)s)")
    parser.add_argument("--customers", type=int, default=10000,
                        help="emulator size (default 10,000: 10,000 customers and about 73,000 objects of the six types)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per comparison (default 3); each runs both sides once")
    parser.add_argument("--ts-engine", type=Path, metavar="DIR", help="where `npm install stripe-experiment-sync@1.0.19` ran")
    parser.add_argument("--node", default="node", help="node executable for the TS engine (default: node)")
    parser.add_argument("--dlt-python", metavar="PATH", help="python of a venv with dlt[postgres]")
    parser.add_argument("--dlt-write-disposition", default="append", choices=("append", "merge"),
                        help="dlt's write disposition (default append, its cheapest for a first copy)")
    args = parser.parse_args()

    ts_ready = args.ts_engine is not None and (args.ts_engine / "node_modules" / TS_PACKAGE).is_dir()
    if args.ts_engine is None:
        print("TS engine: skipped (give --ts-engine DIR, where `npm install stripe-experiment-sync@1.0.19` ran)")
    elif not ts_ready:
        print(f"TS engine: skipped ({args.ts_engine}/node_modules/{TS_PACKAGE} does not exist)")
    if args.dlt_python is None:
        print("dlt: skipped (give --dlt-python PATH, the python of a venv with `pip install \"dlt[postgres]\"`)")
    if not ts_ready and args.dlt_python is None:
        return

    emulator = Emulator(args.customers)
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".toml", prefix="peer_bench_") as config_file:
            config_file.write("max_requests_per_second = 0\n")  # our engine's rate limit off, as the emulator's
            config_file.flush()
            config = Path(config_file.name)
            print(f"emulator: {args.customers:,} customers, {emulator.objects:,} objects, rate limit off; "
                  f"{os.cpu_count()} CPUs; PostgreSQL {args.database_url.rsplit('@', 1)[-1]}")
            if ts_ready:
                compare(f"TS engine {ts_version(args.ts_engine)} `backfill customer` vs ours `backfill customers`, "
                        f"{args.customers:,} customers, whole command",
                        ours(emulator, ("customers",), config), ts_engine(emulator, args.ts_engine, args.node),
                        args.rounds, args.database_url, emulator)
            if args.dlt_python is not None:
                version = subprocess.run([args.dlt_python, "-c", "import dlt; print(dlt.__version__)"],
                                         capture_output=True, text=True, check=True).stdout.strip()
                compare(f"dlt {version} rest_api pipeline ({args.dlt_write_disposition}) vs ours "
                        f"`backfill {' '.join(SIX_TYPES)}`, whole command",
                        ours(emulator, SIX_TYPES, config),
                        dlt_pipeline(emulator, args.dlt_python, args.dlt_write_disposition),
                        args.rounds, args.database_url, emulator)
    finally:
        emulator.close()


if __name__ == "__main__":
    main()
