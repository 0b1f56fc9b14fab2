"""The core never loads the console or the emulator; the emulator never loads the core."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
for module in pkgutil.walk_packages(package.__path__, sys.argv[1] + "."):
    if ".migrations" not in module.name:
        importlib.import_module(module.name)
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def _loaded_by(package: str) -> set[str]:
    result = subprocess.run([sys.executable, "-c", PROBE, package], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def test_core_loads_neither_textual_nor_the_console_nor_the_emulator():
    loaded = _loaded_by("stripe_sync_core")
    assert not loaded & {"textual", "stripe_sync_tui", "stripe_sync_emulator", "rich"}


def test_emulator_does_not_load_the_core():
    loaded = _loaded_by("stripe_sync_emulator")
    assert not loaded & {"stripe_sync_core", "stripe_sync_tui", "textual"}
