"""The standalone server: ``python -m stripe_sync_emulator`` prints where it listens and exits 0 on Ctrl-C."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import urllib.request

from stripe_sync_emulator import add_emulator_arguments


def test_arguments_parse():
    parser = argparse.ArgumentParser()
    add_emulator_arguments(parser)
    args = parser.parse_args(["--port", "0", "--seed", "3", "--customers", "10", "--start", "2024-01-01",
                              "--end", "2024-02-01", "--connected-accounts", "1", "--rate-limit", "live",
                              "--error-rate", "0.1", "--latency-ms", "5"])
    assert (args.port, args.seed, args.customers, args.rate_limit, args.error_rate) == (0, 3, 10, "live", 0.1)


def test_module_runs_serves_and_stops_on_ctrl_c():
    proc = subprocess.Popen(
        [sys.executable, "-m", "stripe_sync_emulator", "--port", "0", "--seed", "3", "--customers", "20",
         "--start", "2024-01-01", "--end", "2024-06-01", "--rate-limit", "off"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        second = proc.stdout.readline().strip()
        assert first.startswith("Stripe API emulator listening on http://127.0.0.1:"), first
        assert second.startswith("API key: sk_test_"), second
        assert proc.stdout.readline().startswith("Live key (Sigma answers live keys only): sk_live_")
        base = first.rsplit(" ", 1)[1]
        key = second.split(": ", 1)[1]
        req = urllib.request.Request(base + "/v1/customers?limit=100", headers={"Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert len(json.loads(resp.read())["data"]) == 20
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
