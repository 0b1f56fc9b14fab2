"""Where the fake ngrok agent lives, and which of its processes are running."""

from __future__ import annotations

import subprocess
from pathlib import Path

FAKE_NGROK = Path(__file__).parent / "fake_ngrok" / "ngrok"


def fake_agent_pids() -> list[int]:
    """Running fake agents (``... fake_ngrok/ngrok start ...``), as ``ps`` sees them."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,stat=,args="], capture_output=True, text=True, check=True).stdout
    pids = []
    for line in out.splitlines():
        pid, stat, args = line.strip().split(None, 2)
        if str(FAKE_NGROK) in args and " start " in args and not stat.startswith("Z"):
            pids.append(int(pid))
    return pids
