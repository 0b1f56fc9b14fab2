"""The Stripe emulator in a process of its own for a benchmark: its address, key and size read from its stdout.

A process of its own, so that serving the benchmark does not count as the measured program's CPU and
does not share its interpreter lock.
"""

from __future__ import annotations

import subprocess
import sys


class EmulatorProcess:
    """`python -m stripe_sync_emulator --port 0 --customers N --rate-limit off`, until `close()`."""

    def __init__(self, customers: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stripe_sync_emulator", "--port", "0", "--customers", str(customers),
             "--rate-limit", "off"], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        said: dict[str, str] = {}
        for line in self.process.stdout:
            if line.startswith("Stripe API emulator listening on "):
                said["api_base"] = line.split()[-1]
            elif line.startswith("API key: "):
                said["key"] = line.split(": ", 1)[1].strip()
            elif line.startswith("Objects: "):
                said["objects"] = line.split()[1]
                break
        self.api_base, self.key, self.objects = said["api_base"], said["key"], int(said["objects"])

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)
