"""Where the fake ngrok agent lives, and which of its processes this test process started."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

FAKE_NGROK = Path(__file__).parent / "fake_ngrok" / "ngrok"


def fake_agent_pids() -> list[int]:
    """Running fake agents (``... fake_ngrok/ngrok start ...``) descended from this process, as ``ps`` sees them.

    Only this process's own: the suite runs in several xdist workers at once, and another worker's tunnel
    is not a leftover of this one's.
    """
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,stat=,args="], capture_output=True, text=True,
                         check=True).stdout
    parent_of: dict[int, int] = {}
    agents = []
    for line in out.splitlines():
        pid, ppid, stat, args = line.strip().split(None, 3)
        parent_of[int(pid)] = int(ppid)
        if str(FAKE_NGROK) in args and " start " in args and not stat.startswith("Z"):
            agents.append(int(pid))
    me = os.getpid()

    def descends_from_me(pid: int) -> bool:
        seen = set()
        while pid > 1 and pid not in seen:
            if pid == me:
                return True
            seen.add(pid)
            pid = parent_of.get(pid, 0)
        return False

    return [pid for pid in agents if descends_from_me(pid)]
