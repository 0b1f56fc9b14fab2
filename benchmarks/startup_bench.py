"""Start-up of the command line: wall time of `--help`, `--headless --help` and `--headless status`
(on a freshly migrated database), from spawn to exit. Prints figures only.

    STRIPE_SYNC_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python benchmarks/startup_bench.py [--runs 30] [--src /another/checkout/src]

Like hyperfine: a few warm-up runs, then `--runs` rounds in which each command runs once (interleaved,
so a burst of load on a shared machine hits them all alike); median, min and p90 of the wall time and
the median CPU time (user + system: what load on a shared machine inflates least) per command, next to
the interpreter's own start (`python -c pass`), and the load average before and after. Bytecode is
cached, as in an installed copy (the warm-up writes it even where PYTHONDONTWRITEBYTECODE is set). `--src` measures
another checkout's code (e.g. the main branch's, for a before/after on the same machine in one go).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_database import fresh_database  # noqa: E402


def commands(database_url: str) -> dict[str, list[str]]:
    cli = [sys.executable, "-m", "stripe_sync_tui.cli"]
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "--help": [*cli, "--help"],
        "--headless --help": [*cli, "--headless", "--help"],
        "--headless status": [*cli, "--headless", "status", "--database-url", database_url],
    }


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run of `argv`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv[2:])} failed ({result.returncode}): {result.stderr[-500:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30, help="timed rounds (each runs every command once)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--database-url", default=os.environ.get("STRIPE_SYNC_BENCH_DATABASE_URL")
                        or os.environ.get("STRIPE_SYNC_TEST_DATABASE_URL"),
                        help="a PostgreSQL server (a database of its own is made and dropped)")
    parser.add_argument("--src", type=Path, default=HERE.parent / "src", help="the code to measure")
    args = parser.parse_args()
    if not args.database_url:
        parser.error("give --database-url (or STRIPE_SYNC_TEST_DATABASE_URL)")
    env = {**os.environ, "PYTHONPATH": str(args.src.resolve()), "STRIPE_SYNC_CONFIG": "/nonexistent"}
    env.pop("DATABASE_URL", None)
    # Measured as installed: bytecode cached (the warm-up writes it), whatever this shell says.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with fresh_database(args.database_url, "stripe_sync_startup_bench") as url:
        argvs = commands(url)
        for _ in range(args.warmup):
            for argv in argvs.values():
                timed(argv, env)
        load_before = os.getloadavg()
        times: dict[str, list[float]] = {name: [] for name in argvs}
        cpu: dict[str, list[float]] = {name: [] for name in argvs}
        for _ in range(args.runs):
            for name, argv in argvs.items():
                wall, used = timed(argv, env)
                times[name].append(wall)
                cpu[name].append(used)
        load_after = os.getloadavg()
    print(f"code: {args.src}  python: {sys.version.split()[0]}  runs: {args.runs}  cores: {os.cpu_count()}  "
          f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(f"{'command':<22}{'wall median':>12}{'min':>8}{'p90':>8}{'CPU median':>12}")
    for name, values in times.items():
        values.sort()
        p90 = values[min(len(values) - 1, round(0.9 * (len(values) - 1)))]
        print(f"{name:<22}{statistics.median(values) * 1000:>10.0f}ms{values[0] * 1000:>6.0f}ms{p90 * 1000:>6.0f}ms"
              f"{statistics.median(cpu[name]) * 1000:>10.0f}ms")


if __name__ == "__main__":
    main()
